// The hostile or careless user's reproducers (never lose a user's file, never hang, never print a wrong
// number), those not already in test/output-matrix.test.ts (writes) and test/temp-files.test.ts (temporary
// files): unbounded reads, long lines, crafted tokenizer patterns, non-finite results, head names, reports
// that describe what was shipped, and the smaller ones. Each says what it reproduces.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlobReader } from '../src/coreml/milblob.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { DEVICE_WAIT_SECONDS, READ_LIMITS } from '../src/io/limits.js';
import type { Tensor } from '../src/io/weights.js';
import { cli, expectOneLineError, json, type Run } from './helpers/cli.js';
import { cleanupTempDirs, copyFixture, FX, ROOT, tempDir, writeCheckpoint } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const TINY = join(FX, 'tiny-mlm');
const bin = join(ROOT, 'bin', 'modernbert-ane.js');

/** A copy of tiny-mlm with `edit` applied to every weight (in place). */
async function editedCheckpoint(edit: (name: string, t: Tensor) => void): Promise<string> {
  const ckpt = loadCheckpoint(TINY);
  const tensors = new Map<string, Tensor>();
  for (const name of ckpt.weights.names()) {
    if (name === 'decoder.weight' && ckpt.weights.storedName?.(name) !== name) continue; // tied: not stored
    const t = ckpt.weights.get(name);
    const copy = { shape: t.shape, data: Float32Array.from(t.data) };
    edit(name, copy);
    tensors.set(name, copy);
  }
  ckpt.close();
  const dir = tempDir('mbane-edited-');
  await writeCheckpoint(dir, {
    config: JSON.parse(readFileSync(join(TINY, 'config.json'), 'utf8')),
    tensors,
    tokenizerFrom: TINY,
  });
  return dir;
}

/** Exit 1, one `error:` line, nothing on stdout: a result that would have been wrong. */
function nonFinite(r: Run, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(/^error: /);
  expect(r.stderr).toMatch(pattern);
}

/** Runs the built executable (for what needs its own process: memory limits, FIFOs, the real stdout). */
function run(
  args: string[],
  o: { node?: string[]; timeout?: number; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [...(o.node ?? []), bin, ...args], {
      cwd: o.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeout ?? 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

describe('2. /dev/stdout is written in place, never replaced', () => {
  it('through a pipe, and through a shell redirect to a file; the summary goes to stderr', async () => {
    const d = tempDir();
    writeFileSync(join(d, 't.txt'), 'hello there\n');
    const piped = await run(['embed', TINY, '--input', join(d, 't.txt'), '--out', '/dev/stdout']);
    expect(piped.code, piped.stderr).toBe(0);
    expect(JSON.parse(piped.stdout.trim())).toMatchObject({ index: 0 });
    expect(piped.stderr).toMatch(/wrote \/dev\/stdout/);
    const file = join(d, 'redirected.jsonl');
    execFileSync('sh', [
      '-c',
      `"${process.execPath}" "${bin}" embed "${TINY}" --input "${join(d, 't.txt')}" --out /dev/stdout > "${file}" 2>/dev/null`,
    ]);
    expect(JSON.parse(readFileSync(file, 'utf8').trim())).toMatchObject({ index: 0 });
  });
});

describe('5. reads are bounded and never block for good', () => {
  it('/dev/zero as --input or --calibration: one line naming the cap, at once', async () => {
    const d = tempDir();
    const cap = /\/dev\/zero holds more than the 64 MiB a --input file may have/;
    for (const args of [
      ['embed', TINY, '--input', '/dev/zero', '--out', join(d, 'e.jsonl')],
      ['predict', TINY, '--input', '/dev/zero'],
    ]) {
      const r = await run(args, { node: ['--max-old-space-size=512'] });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(cap);
      expect(r.ms).toBeLessThan(20_000);
    }
    for (const args of [
      ['convert', TINY, '--out', join(d, 'x.mlpackage'), '--calibration', '/dev/zero'],
      [
        'export-onnx',
        TINY,
        '--out',
        join(d, 'x.onnx'),
        '--fold',
        '--rotation',
        'learned',
        '--calibration',
        '/dev/zero',
      ],
    ]) {
      const r = await run(args, { node: ['--max-old-space-size=512'] });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/\/dev\/zero holds more than the 16 MiB a --calibration file may have/);
    }
    expect(readdirSync(d)).toEqual([]);
    expect(READ_LIMITS.texts).toBe(64 * 1024 * 1024);
  }, 90_000);

  it('a FIFO nobody writes, as --input or --calibration: fails after the wait, saying what it waited for', async () => {
    const d = tempDir();
    const fifo = join(d, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const [a, b] = await Promise.all([
      run(['embed', TINY, '--input', fifo, '--out', join(d, 'e.jsonl')]),
      run(['convert', TINY, '--out', join(d, 'x.mlpackage'), '--calibration', fifo]),
    ]);
    for (const [r, what] of [
      [a, '--input'],
      [b, '--calibration'],
    ] as const) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(
        new RegExp(`${what} .*fifo is a FIFO and nothing was written to it for ${DEVICE_WAIT_SECONDS} s`),
      );
      expect(r.ms).toBeLessThan((DEVICE_WAIT_SECONDS + 15) * 1000);
    }
  }, 60_000);

  it('a FIFO that is written: read whole, as a pipe from another program', async () => {
    const d = tempDir();
    const fifo = join(d, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const writer = spawn('sh', ['-c', `sleep 1; printf 'the sky is [MASK]\\nthe sea is [MASK]\\n' > "${fifo}"`], {
      stdio: 'ignore',
    });
    const r = await run(['predict', TINY, '--input', fifo]);
    writer.kill();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(2);
  }, 30_000);

  it('--truncate cuts a 50 MB line before tokenizing: fast, in little memory', async () => {
    const d = tempDir();
    const input = join(d, 'big.txt');
    writeFileSync(input, `${'hello world, '.repeat(4_000_000)}\nshort\n`);
    const out = join(d, 'e.jsonl');
    // 256 MB of heap: tokenizing the whole line (13 M tokens) would not fit.
    const r = await run(['embed', TINY, '--input', input, '--out', out, '--truncate'], {
      node: ['--max-old-space-size=256'],
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.ms).toBeLessThan(30_000);
    expect(readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(2);
    // Without --truncate: a length error naming the line, as quickly.
    const e = await run(['embed', TINY, '--input', input, '--out', join(d, 'e2.jsonl')], {
      node: ['--max-old-space-size=256'],
    });
    expect(e.code).toBe(2);
    expect(e.stderr).toMatch(
      /^error: line 1: the text is more than 512 tokens long but the model allows at most 512 \(give --truncate/,
    );
  }, 90_000);
});

describe('6. a five-million-character word', () => {
  it('--truncate embeds it (no stack overflow, no exit 3); without, one length error', async () => {
    const d = tempDir();
    const input = join(d, 'c.txt');
    writeFileSync(input, `${'中'.repeat(5e6)}\n`);
    const ok = await cli('embed', TINY, '--input', input, '--out', join(d, 'o.jsonl'), '--truncate');
    expect(ok.code, ok.stderr).toBe(0);
    expectOneLineError(
      await cli('embed', TINY, '--input', input, '--out', join(d, 'o2.jsonl')),
      /line 1: the text is more than 512 tokens long/,
    );
  }, 60_000);
});

describe('7. a crafted tokenizer.json pattern cannot hang the process', () => {
  it('(a+)+$ in a Split pre-tokenizer: one line naming the pattern, within seconds', async () => {
    const model = copyFixture('tiny-mlm');
    const tok = JSON.parse(readFileSync(join(model, 'tokenizer.json'), 'utf8'));
    tok.pre_tokenizer = {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false },
        tok.pre_tokenizer,
      ],
    };
    writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(tok));
    const t0 = performance.now();
    expectOneLineError(
      await cli('predict', model, `${'a'.repeat(40)}! [MASK]`),
      /tokenizer\.json: its pattern "\(a\+\)\+\$" took more than 2\.0 s on a text of \d+ characters/,
    );
    expect(performance.now() - t0).toBeLessThan(10_000);
    // Texts it handles quickly still work, through the same guarded pattern.
    const r = await cli('predict', model, 'the sky is [MASK]', '--json');
    expect(r.code, r.stderr).toBe(0);
  }, 30_000);
});

describe('8. NaN or infinity is never printed: exit 1 naming where it appeared', () => {
  it('a finite 3e38 final norm weight: predict (every runtime), embed, predict --input, diff, convert', async () => {
    const m = await editedCheckpoint((name, t) => name === 'model.final_norm.weight' && t.data.fill(3e38));
    const d = tempDir();
    writeFileSync(join(d, 't.txt'), 'the sky is [MASK]\n');
    for (const extra of [['--json'], ['--runtime', 'engine'], ['--runtime', 'ort'], ['--precision', 'fp16']]) {
      nonFinite(
        await cli('predict', m, 'the sky is [MASK]', ...extra),
        /the model's "logits" output holds (NaN|-?Infinity) at /,
      );
    }
    nonFinite(
      await cli('embed', m, '--input', join(d, 't.txt'), '--out', join(d, 'e.jsonl')),
      /line 1: the model's "embedding" output holds/,
    );
    nonFinite(
      await cli('predict', m, '--input', join(d, 't.txt'), '--out', join(d, 'p.jsonl')),
      /line 1: the model's "logits" output holds .* at \[MASK\] \d+, channel \d+/,
    );
    nonFinite(
      await cli('diff', m, TINY, 'the sky is [MASK]'),
      /^error: A \(.*\) on input "the sky is \[MASK\]": its "logits" output holds/,
    );
    nonFinite(
      await cli('convert', m, '--out', join(d, 'a.mlpackage'), '--seq-len', '32'),
      /the float32 checkpoint's "logits" output .* holds/,
    );
    nonFinite(
      await cli('convert', m, '--out', join(d, 'b.mlpackage'), '--seq-len', '32', '--no-fidelity'),
      /weight "[^"]+" holds 3\.0+\d*e\+38 at element 0: float16 holds at most 65504.*nothing was written/,
    );
    expect(readdirSync(d)).toEqual(['t.txt']);
  }, 60_000);

  it('a package whose float16 weights are all 65504: predict --precision fp16 fails instead of printing null', async () => {
    const pkg = join(tempDir(), 'p.mlpackage');
    expect((await cli('convert', TINY, '--out', pkg, '--seq-len', '32', '--no-fidelity', '--tokenizer')).code).toBe(0);
    // Every float16 value of the weight file set to 65504, the largest float16 (finite).
    const file = join(pkg, 'Data', 'com.apple.CoreML', 'weights', 'weight.bin');
    const reader = BlobReader.open(file);
    const blobs = reader.list();
    reader.close();
    const bytes = readFileSync(file);
    for (const b of blobs.filter((x) => x.dataType === 'fp16'))
      for (let i = 0; i < b.sizeInBytes; i += 2) bytes.writeUInt16LE(0x7bff, b.dataOffset + i);
    writeFileSync(file, bytes);
    for (const extra of [['--json'], []])
      nonFinite(
        await cli('predict', pkg, 'the sky is [MASK]', '--precision', 'fp16', ...extra),
        /the model's "logits" output holds (NaN|-?Infinity)/,
      );
  }, 60_000);
});

describe('10. head names are identifiers, never a property every object has', () => {
  it('--add-head __proto__=DIR and other odd names are refused before any work', async () => {
    const out = join(tempDir(), 'a.mlpackage');
    for (const name of ['__proto__', 'constructor', 'toString', 'bad-name', '1x', 'a'.repeat(65)]) {
      expectOneLineError(
        await cli('convert', TINY, '--add-head', `${name}=${TINY}`, '--target', 'iOS18', '--out', out),
        /head name .* (is reserved|must be an identifier)/,
      );
    }
    expect(existsSync(out)).toBe(false);
  });
});

describe('11. the smaller ones', () => {
  it('--compress int8 --keep "*" says nothing was compressed (no "NaNx")', async () => {
    const r = await cli(
      'convert',
      TINY,
      '--out',
      join(tempDir(), 'k.mlpackage'),
      '--compress',
      'int8',
      '--keep',
      '*',
      '--seq-len',
      '16',
      '--no-fidelity',
      '--target',
      'iOS18',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/compression: int8: no tensor compressed \(--keep matched every one\)/);
    expect(r.stdout).not.toMatch(/NaN/);
  });

  it('embed --out . is one line saying it is a folder', async () => {
    const d = tempDir();
    writeFileSync(join(d, 't.txt'), 'hi\n');
    expectOneLineError(
      await cli('embed', TINY, '--input', join(d, 't.txt'), '--out', d),
      /--out .* is a folder, not a file/,
    );
    const r = await run(['embed', TINY, '--input', 't.txt', '--out', '.'], { cwd: d });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('error: --out . is a folder, not a file\n');
  });

  it('embed on a multifunction package runs its embedding function (or the one --function names)', async () => {
    const d = tempDir();
    const pkg = join(d, 'mf.mlpackage');
    expect(
      (
        await cli(
          'convert',
          TINY,
          '--out',
          pkg,
          '--functions',
          'mlm,embedding',
          '--target',
          'iOS18',
          '--seq-len',
          '32',
          '--no-fidelity',
          '--tokenizer',
        )
      ).code,
    ).toBe(0);
    writeFileSync(join(d, 't.txt'), 'the sky is blue\n');
    const r = await cli('embed', pkg, '--input', join(d, 't.txt'), '--out', join(d, 'e.jsonl'));
    expect(r.code, r.stderr).toBe(0);
    const ref = await cli('predict', pkg, '--function', 'embedding', '--embed', 'the sky is blue', '--json');
    const got = JSON.parse(readFileSync(join(d, 'e.jsonl'), 'utf8')).embedding as number[];
    const want = json(ref) as number[];
    expect(got).toHaveLength(want.length);
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 5));
    expect(
      (await cli('embed', pkg, '--input', join(d, 't.txt'), '--out', join(d, 'e2.jsonl'), '--function', 'embedding'))
        .code,
    ).toBe(0);
  });

  it('npm run bench -- --help prints usage; an unknown option is one error line', () => {
    const help = spawnSync(process.execPath, [join(ROOT, 'bench', 'run.mjs'), '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: npm run bench/);
    expect(help.stderr).toBe('');
    const bad = spawnSync(process.execPath, [join(ROOT, 'bench', 'run.mjs'), '--bogus'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^error: Unknown option '--bogus'/);
  });
});

describe('12. reports describe what was shipped and what happened', () => {
  it('convert --head embedding --pack 8 reports the fidelity of the packed embedding it ships', async () => {
    const d = tempDir();
    const mlm = json(await cli('convert', TINY, '--out', join(d, 'mlm.mlpackage'), '--seq-len', '64', '--json')) as {
      fidelity: { head: string; kl: number };
    };
    const r = await cli(
      'convert',
      TINY,
      '--out',
      join(d, 'emb.mlpackage'),
      '--seq-len',
      '64',
      '--head',
      'embedding',
      '--pack',
      '8',
      '--json',
    );
    expect(r.code, r.stderr).toBe(0);
    const f = (
      json(r) as {
        fidelity: { head: string; pack: number; kl: number; tokens: number; cosine: { mean: number; min: number } };
      }
    ).fidelity;
    expect(mlm.fidelity.head).toBe('mlm');
    expect(f.head).toBe('embedding');
    expect(f.pack).toBe(8);
    expect(f.cosine.min).toBeGreaterThan(0.99);
    expect(f.cosine.mean).toBeLessThanOrEqual(1 + 1e-9);
    expect(f.kl).not.toBe(mlm.fidelity.kl);
    // Calibration texts longer than the package's window are cut to it, as the package takes them.
    const short = await cli(
      'convert',
      TINY,
      '--out',
      join(d, 'short.mlpackage'),
      '--seq-len',
      '16',
      '--head',
      'embedding',
      '--pack',
      '3',
      '--json',
    );
    expect(short.code, short.stderr).toBe(0);
    expect((json(short) as { fidelity: { pack: number } }).fidelity.pack).toBe(3);
    const human = await cli(
      'convert',
      TINY,
      '--out',
      join(d, 'emb2.mlpackage'),
      '--seq-len',
      '64',
      '--head',
      'embedding',
      '--pack',
      '8',
    );
    expect(human.stdout).toMatch(
      /fidelity of the embedding output, 8 texts per window \(fp16 emulation vs float32, \d+ texts of built-in sentences\): cosine similarity mean 0\.9\d+, min 0\.9\d+/,
    );
  }, 60_000);

  it('--rotation learned: the time line counts the learning, and the package is the variant the note chose', async () => {
    const d = tempDir();
    const r = await cli(
      'convert',
      TINY,
      '--out',
      join(d, 'l.mlpackage'),
      '--seq-len',
      '32',
      '--rotation',
      'learned',
      '--learn-seconds',
      '1',
    );
    expect(r.code, r.stderr).toBe(0);
    const note = /rotation learning: learned rotation (kept|discarded .*: using (folded|hadamard))/.exec(r.stdout);
    expect(note, r.stdout).not.toBeNull();
    const variant = note![1] === 'kept' ? 'learned' : note![2]!;
    expect(r.stdout).toMatch(new RegExp(`wrote .*l\\.mlpackage: ${variant}, `));
    const time = /time: learn rotation ([\d.]+) s, .* total ([\d.]+) s/.exec(r.stdout);
    expect(time, r.stdout).not.toBeNull();
    expect(Number(time![1])).toBeGreaterThan(0);
    expect(Number(time![2])).toBeGreaterThanOrEqual(Number(time![1]));
  }, 120_000);

  it('convert --rotation learned and outliers --plot to an unwritable folder fail before any work', async () => {
    const ro =
      process.getuid?.() === 0
        ? '/sys'
        : (() => {
            const d = tempDir();
            execFileSync('chmod', ['555', d]);
            return d;
          })();
    const t0 = performance.now();
    expectOneLineError(
      await cli('convert', TINY, '--out', join(ro, 'x.mlpackage'), '--rotation', 'learned', '--learn-seconds', '30'),
      /cannot write .*x\.mlpackage/,
    );
    expectOneLineError(
      await cli('outliers', TINY, 'the sky is [MASK]', '--plot', join(ro, 'o.svg')),
      /cannot write .*o\.svg/,
    );
    expect(performance.now() - t0).toBeLessThan(5_000);
  });
});

describe("the hooks' probes", () => {
  it('embed --input X --out X, embed over an existing --out, convert --force on a folder holding a directory named Manifest.json', async () => {
    const d = tempDir();
    const input = join(d, 'in.txt');
    writeFileSync(input, 'the sky is blue\n');
    expectOneLineError(await cli('embed', TINY, '--input', input, '--out', input), /it is the input/);
    expect(readFileSync(input, 'utf8')).toBe('the sky is blue\n');
    writeFileSync(join(d, 'old.jsonl'), 'keep\n');
    expectOneLineError(await cli('embed', TINY, '--input', input, '--out', join(d, 'old.jsonl')), /already exists/);
    expect(readFileSync(join(d, 'old.jsonl'), 'utf8')).toBe('keep\n');
    mkdirSync(join(d, 'p', 'Manifest.json'), { recursive: true });
    writeFileSync(join(d, 'p', 'mine.txt'), 'keep');
    expectOneLineError(
      await cli('convert', TINY, '--out', join(d, 'p'), '--force', '--seq-len', '32', '--no-fidelity'),
      /will not replace .*p: it is not a Core ML package/,
    );
    expect(readFileSync(join(d, 'p', 'mine.txt'), 'utf8')).toBe('keep');
  });
});

describe('no input grows memory past a stated bound', () => {
  it('embeddings above MAX_RESULT_BYTES (limits.ts) are refused at the first one, before the rest of the work', async () => {
    const { embeddingStore } = await import('../src/tasks/batch.js');
    const { MAX_RESULT_BYTES } = await import('../src/io/limits.js');
    const most = Math.floor(MAX_RESULT_BYTES / (768 * 4));
    expect(embeddingStore(768, 1000)).toHaveLength(768_000);
    expect(() => embeddingStore(768, most + 1)).toThrow(
      /349526 texts of 768 values each would hold 1024 MiB of embeddings, more than the 1024 MiB one run may: split the input/,
    );
  });
});

describe("every read has its kind's cap", () => {
  it('a golden file above its cap is refused before it is read, naming the kind', async () => {
    const { SafetensorsFile } = await import('../src/io/safetensors.js');
    const { expectError } = await import('./helpers/run.js');
    const path = join(TINY, 'golden.safetensors');
    const e = await expectError(() => SafetensorsFile.open(path, 1000, 'golden file'), 'BAD_INPUT');
    expect(e.message).toMatch(/golden\.safetensors is \d+ bytes, more than the 1000 bytes a golden file may have/);
    expect(READ_LIMITS.golden).toBe(1024 * 1024 * 1024);
  });
});

describe('a batch of a million texts', () => {
  it('more than MAX_TEXTS texts in one --input is one line, before any work', async () => {
    const { MAX_TEXTS } = await import('../src/io/limits.js');
    const d = tempDir();
    const input = join(d, 'many.txt');
    writeFileSync(input, 'a\n'.repeat(MAX_TEXTS + 1));
    expectOneLineError(
      await cli('embed', TINY, '--input', input, '--out', join(d, 'e.npy')),
      new RegExp(`many\\.txt holds more than ${MAX_TEXTS} texts, the most one run takes: split it`),
    );
    expect(readdirSync(d)).toEqual(['many.txt']);
  }, 60_000);

  it('packs them in a few seconds (the first window with room is found in log time, not by a scan of every window)', async () => {
    const { packTexts } = await import('../src/model/pack-texts.js');
    const texts = Array.from({ length: 1_000_000 }, (_, i) => new Array<number>(3 + ((i * 7919) % 40)).fill(5));
    const t0 = performance.now();
    const windows = packTexts(texts, 512, 64, 0);
    expect(performance.now() - t0).toBeLessThan(15_000);
    expect(windows.reduce((n, w) => n + w.texts.length, 0)).toBe(texts.length);
    // First fit, as the scan did: the same windows as packing a prefix of the same texts on its own.
    const small = texts.slice(0, 2000);
    const naive: number[][] = [];
    const used: number[] = [];
    for (const i of small.map((_, i) => i).sort((a, b) => small[b]!.length - small[a]!.length || a - b)) {
      const b = naive.findIndex((w, k) => used[k]! + small[i]!.length <= 512 && w.length < 64);
      if (b < 0) {
        naive.push([i]);
        used.push(small[i]!.length);
      } else {
        naive[b]!.push(i);
        used[b]! += small[i]!.length;
      }
    }
    expect(packTexts(small, 512, 64, 0).map((w) => w.texts)).toEqual(naive);
  }, 60_000);
});
