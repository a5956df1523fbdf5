// The command line on a new user's mistakes: what --force may replace, checks that compare nothing, file-system
// failures, odd texts and arguments. Each must end in one `error:` line (exit 2) with nothing lost.

import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { ModernBertError } from '../src/errors.js';
import { fsError } from '../src/io/fs-errors.js';
import { writeSafetensors, type TensorToWrite } from '../src/io/safetensors-writer.js';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import { cleanupTempDirs, copyFixture, FX, tempDir, writeTinySynthConfig } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const TINY = join(FX, 'tiny-mlm');
const FAST = ['--seq-len', '16', '--no-fidelity'];

/** Runs `f` with the working directory at `dir`. */
async function inDir<T>(dir: string, f: () => Promise<T>): Promise<T> {
  const before = process.cwd();
  process.chdir(dir);
  try {
    return await f();
  } finally {
    process.chdir(before);
  }
}

describe('convert --force replaces only a package', () => {
  it("refuses a folder of the user's files, keeping them", async () => {
    const d = tempDir();
    const mine = join(d, 'photos.mlpackage');
    mkdirSync(mine);
    writeFileSync(join(mine, 'holiday.jpg'), 'precious');
    expectOneLineError(
      await cli('convert', TINY, '--out', mine, '--force', ...FAST),
      /will not replace .*photos\.mlpackage: it is not a Core ML package/,
    );
    expect(readFileSync(join(mine, 'holiday.jpg'), 'utf8')).toBe('precious');
    // Without --force the error does not suggest a --force that would be refused.
    const r = await cli('convert', TINY, '--out', mine, ...FAST);
    expectOneLineError(r, /photos\.mlpackage already exists; it is not a Core ML package .*, so choose another path/);
    expect(r.stderr).not.toMatch(/--force/);
  });

  it('refuses a plain file', async () => {
    const d = tempDir();
    writeFileSync(join(d, 'notes.txt'), 'keep');
    expectOneLineError(
      await cli('convert', TINY, '--out', join(d, 'notes.txt'), '--force', ...FAST),
      /not a Core ML package/,
    );
    expect(readFileSync(join(d, 'notes.txt'), 'utf8')).toBe('keep');
  });

  it('refuses the input checkpoint, and a folder holding it, even through a symbolic link', async () => {
    // The checkpoint one level down in a folder of its own: its parent must not also be a folder above the
    // working directory (a clone under /tmp), which --force refuses first for another reason.
    const ckpt = join(tempDir(), 'ckpt');
    renameSync(copyFixture('tiny-mlm'), ckpt);
    const link = join(tempDir(), 'link.mlpackage');
    symlinkSync(ckpt, link);
    const files = readdirSync(ckpt).sort();
    for (const out of [ckpt, link, join(ckpt, '..')]) {
      expectOneLineError(
        await cli('convert', ckpt, '--out', out, '--force', ...FAST),
        /will not replace .*: it is or holds the input/,
      );
    }
    expect(readdirSync(ckpt).sort()).toEqual(files);
    expect(files).toContain('model.safetensors');
  });

  it('refuses ".", "" and a folder above the working directory', async () => {
    const d = tempDir();
    const work = join(d, 'work');
    mkdirSync(work);
    writeFileSync(join(work, 'Manifest.json'), '{}');
    writeFileSync(join(work, 'mine.txt'), 'keep');
    await inDir(work, async () => {
      expectOneLineError(
        await cli('convert', TINY, '--out', '.', '--force', ...FAST),
        /will not replace \.: it is the working directory/,
      );
      expectOneLineError(await cli('convert', TINY, '--out', '', '--force', ...FAST), /output path is empty/);
      expectOneLineError(await cli('convert', TINY, '--out', '..', '--force', ...FAST), /a folder above it/);
    });
    expect(readFileSync(join(work, 'mine.txt'), 'utf8')).toBe('keep');
  });

  it('replaces an earlier package', async () => {
    const pkg = join(tempDir(), 'm.mlpackage');
    expect((await cli('convert', TINY, '--out', pkg, ...FAST)).code).toBe(0);
    const r = await cli('convert', TINY, '--out', pkg, '--force', '--seq-len', '32', '--no-fidelity');
    expect(r.code, r.stderr).toBe(0);
    expect(readMLPackage(pkg).description.metadata.userDefined!.sequence_lengths).toBe('32');
  });
});

describe('verify and diff fail when they compare nothing', () => {
  const ids = (B: number, S: number): TensorToWrite => ({
    name: 'c.input_ids',
    dtype: 'I32',
    shape: [B, S],
    data: () => new Int32Array(B * S).fill(5),
  });
  const logits = (B: number, S: number): TensorToWrite => ({
    name: 'c.logits',
    dtype: 'F32',
    shape: [B, S, 1024],
    data: () => new Float32Array(B * S * 1024),
  });
  const golden = async (tensors: TensorToWrite[]): Promise<string> => {
    const path = join(tempDir(), 'g.safetensors');
    await writeSafetensors(path, tensors);
    return path;
  };

  it.each([
    ['an empty golden file', () => golden([]), /no cases|nothing to compare|no tensors|empty/],
    ['one with only input_ids', () => golden([ids(1, 8)]), /golden case "c" compares nothing/],
    [
      'an all-zero attention_mask',
      () =>
        golden([
          ids(2, 8),
          { name: 'c.attention_mask', dtype: 'I32', shape: [2, 8], data: () => new Int32Array(16) },
          logits(2, 8),
        ]),
      /compares nothing/,
    ],
    ['batch 0', () => golden([ids(0, 8), logits(0, 8)]), /compares nothing|batch|empty/],
  ])('%s: one error line, exit 2, never "passed"', async (_what, make, pattern) => {
    const path = await make();
    for (const extra of [[], ['--json']]) {
      const r = await cli('verify', TINY, '--golden', path, ...extra);
      expectOneLineError(r, pattern);
      expect(r.stdout).not.toContain('passed');
    }
    // diff on the same inputs compared 0 tokens and exited 0
    if (_what !== 'one with only input_ids')
      expectOneLineError(
        await cli('diff', TINY, TINY, '--golden', path),
        /holds no row with a real token|no cases|empty|no tensors/,
      );
  });
});

describe('file-system failures are one line naming the path', () => {
  it.each([
    [
      'a file where a folder should be',
      (d: string) => {
        writeFileSync(join(d, 'file.txt'), '');
        return join(d, 'file.txt', 'a.mlpackage');
      },
      /file\.txt is a file, not a folder/,
    ],
    [
      'a dangling symbolic link',
      (d: string) => {
        symlinkSync(join(d, 'nowhere'), join(d, 'dangling.mlpackage'));
        return join(d, 'dangling.mlpackage');
      },
      /dangling\.mlpackage is a symbolic link to nothing/,
    ],
    [
      'a name too long for the file system',
      (d: string) => join(d, `${'a'.repeat(300)}.mlpackage`),
      /cannot write .*: the name is too long \(ENAMETOOLONG\)/,
    ],
    [
      'a folder that cannot be made (under /proc: fails at once, no spinning)',
      () => '/proc/a.mlpackage',
      /cannot write \/proc\/a\.mlpackage: no such file or folder \(ENOENT\)/,
    ],
  ])('convert --out: %s', async (_what, out, pattern) => {
    const d = tempDir();
    const t0 = performance.now();
    expectOneLineError(await cli('convert', TINY, '--out', out(d), ...FAST), pattern);
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(readdirSync(d).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('synth --out where no folder can be made fails at once (no spinning under /proc)', async () => {
    const d = tempDir();
    writeTinySynthConfig(d);
    const t0 = performance.now();
    expectOneLineError(
      await cli('synth', join(d, 'c.json'), '--out', '/proc/x/y'),
      /cannot write \/proc\/x\/y: no such file or folder \(ENOENT\)/,
    );
    expect(performance.now() - t0).toBeLessThan(10_000);
  });

  it('convert --out in a read-only folder', async () => {
    // As root a chmod does not stop writing; /sys refuses even root.
    const ro = process.getuid?.() === 0 ? '/sys' : tempDir();
    if (ro !== '/sys') chmodSync(ro, 0o555);
    expectOneLineError(
      await cli('convert', TINY, '--out', join(ro, 'a.mlpackage'), ...FAST),
      /cannot write .*a\.mlpackage: (permission denied|operation not permitted|the file system is read-only)/,
    );
    expect(existsSync(join(ro, 'a.mlpackage'))).toBe(false);
  });

  it("a name of just under the limit still works (the temporary name is shortened, not the package's)", async () => {
    for (const name of [`${'b'.repeat(240)}.mlpackage`, `${'é'.repeat(118)}.mlpackage`]) {
      // 250 and 246 bytes
      const out = join(tempDir(), name);
      const r = await cli('convert', TINY, '--out', out, ...FAST);
      expect(r.code, r.stderr).toBe(0);
      expect(existsSync(join(out, 'Manifest.json'))).toBe(true);
    }
  });

  it('every errno a writer meets maps to a named reason, with the path', () => {
    const cases: Record<string, RegExp> = {
      EACCES: /permission denied/,
      EROFS: /read-only/,
      ENOSPC: /no space left/,
      ENOTDIR: /is a file, not a folder/,
      EISDIR: /is a folder, not a file/,
      ENAMETOOLONG: /too long/,
      ELOOP: /symbolic links/,
      ENOENT: /no such file/,
    };
    for (const [code, reason] of Object.entries(cases)) {
      const errno = Object.assign(new Error(`${code}: raw`), { code, syscall: 'write', path: '/x' });
      const e = fsError(errno, 'out.mlpackage', 'write') as ModernBertError;
      expect(e).toBeInstanceOf(ModernBertError);
      expect(e.code).toBe(code === 'ENOENT' ? 'FILE_NOT_FOUND' : 'FILE_SYSTEM');
      expect(e.message).toMatch(new RegExp(`^cannot write out\\.mlpackage: .*\\(${code}\\)$`));
      expect(e.message).toMatch(reason);
    }
    const plain = new Error('not a file-system error');
    expect(fsError(plain, 'x', 'write')).toBe(plain);
  });

  it('--calibration or --plot naming a folder or a missing file', async () => {
    const d = tempDir();
    const out = join(d, 'x.mlpackage');
    expectOneLineError(
      await cli('convert', TINY, '--out', out, '--calibration', d, '--seq-len', '16'),
      /--calibration .* is a folder, not a file/,
    );
    expectOneLineError(
      await cli('convert', TINY, '--out', out, '--calibration', join(d, 'nope.txt'), '--seq-len', '16'),
      /cannot read .*nope\.txt: no such file/,
    );
    expectOneLineError(await cli('outliers', TINY, 'a [MASK]', '--plot', d), /--plot .* is a folder, not a file/);
    expectOneLineError(
      await cli('outliers', TINY, 'a [MASK]', '--plot', join(d, 'no', 'x.svg')),
      /--plot .*x\.svg: the folder .* does not exist/,
    );
    expect(existsSync(out)).toBe(false);
  });
});

describe('a megabyte of text', () => {
  // Tokenizing it once overflowed the stack (ids pushed as spread arguments): now it is a length error.
  const text = 'She opened the [MASK] and walked in. '.repeat(28_000); // ~1 MB
  it('predict and predict --embed: a one-line length error', async () => {
    expectOneLineError(
      await cli('predict', TINY, text),
      /the text is more than 512 tokens long but the model allows at most 512/,
    );
    expectOneLineError(
      await cli('predict', '--embed', join(FX, 'tiny-cls-mean'), text),
      /is more than \d+ tokens long but the model allows at most/,
    );
  }, 30_000);

  it('convert --calibration with a long line', async () => {
    const d = tempDir();
    writeFileSync(join(d, 'cal.txt'), `short line\n${text}\n`);
    expectOneLineError(
      await cli(
        'convert',
        TINY,
        '--out',
        join(d, 'x.mlpackage'),
        '--calibration',
        join(d, 'cal.txt'),
        '--seq-len',
        '16',
      ),
      /is more than 512 tokens long but the model allows at most 512/,
    );
    expect(readdirSync(d)).toEqual(['cal.txt']);
  }, 30_000);
});

describe('the converted package names its source, not a path of this machine', () => {
  it("source_model is the folder's name, or a Hub id from _name_or_path", async () => {
    const d = tempDir();
    const plain = copyFixture('tiny-mlm');
    const hub = copyFixture('tiny-mlm', (c) => ({ ...c, _name_or_path: 'answerdotai/ModernBERT-base' }));
    const local = copyFixture('tiny-mlm', (c) => ({ ...c, _name_or_path: '/home/someone/models/x' }));
    for (const [ckpt, expected] of [
      [plain, basename(plain)],
      [hub, 'answerdotai/ModernBERT-base'],
      [local, basename(local)],
    ] as const) {
      const out = join(d, `${basename(ckpt)}-${expected.length}.mlpackage`);
      expect((await cli('convert', ckpt, '--out', out, ...FAST)).code).toBe(0);
      const source = readMLPackage(out).description.metadata.userDefined!.source_model;
      expect(source).toBe(expected);
      expect(source).not.toContain(d.split('/')[1]!);
    }
  });
});

describe('usage', () => {
  it('no command (or --debug alone), or help for a command that does not exist: one error line naming the commands, exit 2', async () => {
    for (const argv of [[], ['--debug'], ['help', 'bogus'], ['--debug', 'help', 'bogus']]) {
      const r = await cli(...argv);
      expectOneLineError(
        r,
        argv.includes('bogus')
          ? /^error: unknown command 'bogus': modernbert-ane <command> /
          : /^error: no command given: modernbert-ane <command> /,
      );
      expect(r.stderr).toMatch(/predict, verify, inspect, synth, outliers, convert, diff/);
      expect(r.stdout).toBe('');
    }
    // help for a real command still prints it
    const ok = await cli('help', 'predict');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/Usage: modernbert-ane predict/);
  });

  it('a text that starts with "-" goes after --, and the error says so', async () => {
    expectOneLineError(
      await cli('predict', '-x [MASK]'),
      /unknown option '-x \[MASK\]' \(a text that starts with '-' goes after --, e.g\. predict -- "-x \[MASK\]"\)/,
    );
    const r = await cli('predict', '--json', '--', '-x [MASK]');
    expect(r.code, r.stderr).toBe(0);
    expect((json(r) as { mask: number }[]).every((t) => t.mask === 0)).toBe(true);
  });

  it('--fidelity-precision fp32 is a one-line error naming the valid choices', async () => {
    expectOneLineError(
      await cli('convert', TINY, '--out', join(tempDir(), 'x.mlpackage'), '--fidelity-precision', 'fp32'),
      /fp16, fp16-fused, fp16-acc16, not fp32/,
    );
  });

  it('a bad MODERNBERT_ANE_THREADS is a one-line usage error naming the variable and its valid values', async () => {
    const before = process.env['MODERNBERT_ANE_THREADS'];
    try {
      for (const v of ['abc', '0', '2.5', '-1', '100000']) {
        process.env['MODERNBERT_ANE_THREADS'] = v;
        expectOneLineError(
          await cli('inspect', TINY),
          new RegExp(`MODERNBERT_ANE_THREADS must be a whole number from 1 to 1024 .*got '${v.replace('.', '\\.')}'`),
        );
      }
      expect((await cli('--help')).code).toBe(0); // help needs no threads
      process.env['MODERNBERT_ANE_THREADS'] = '1';
      expect((await cli('inspect', TINY)).code).toBe(0);
    } finally {
      if (before === undefined) delete process.env['MODERNBERT_ANE_THREADS'];
      else process.env['MODERNBERT_ANE_THREADS'] = before;
    }
  });
});
