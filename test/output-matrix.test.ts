// Every command that writes a user's file, by every kind of target (io/output.ts): nothing is overwritten
// without --force, nothing that is an input or lies inside one, nothing but a regular file (or a package,
// or a checkpoint's files) is ever replaced, devices and FIFOs are written in place and stay what they were,
// and a folder that cannot be written fails before the work. Works as root and as another user.

import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, type Run } from './helpers/cli.js';
import { cleanupTempDirs, copyFixture, tempDir, writeTinySynthConfig } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const root = process.getuid?.() === 0;

/** A folder no file can be made in: as root a chmod does not stop writing, but sysfs refuses even root. */
function unwritableFolder(): string {
  if (root) return '/sys';
  const d = tempDir();
  chmodSync(d, 0o555);
  return d;
}

/** A character device to write to: one made with mknod as root (like /dev/null), else /dev/null itself. */
function charDevice(dir: string): string {
  if (!root) return '/dev/null';
  const p = join(dir, 'null-device');
  execFileSync('mknod', [p, 'c', '1', '3']);
  return p;
}

/** A FIFO with a reader (a cat process copying it to a file): resolves to what the reader got. */
function fifoWithReader(dir: string): { path: string; read: () => Promise<string> } {
  const path = join(dir, 'pipe');
  execFileSync('mkfifo', [path]);
  const got = join(dir, 'from-pipe');
  const reader = spawn('sh', ['-c', `cat "${path}" > "${got}"`], { stdio: 'ignore' });
  const done = new Promise<void>((resolve) => reader.on('exit', () => resolve()));
  return { path, read: async () => (await done, readFileSync(got, 'utf8')) };
}

interface Setup {
  dir: string;
  model: string;
  input: string;
  /** A package converted from the model, for the commands that read one. */
  pkg: string;
}

let converted: string | undefined;

async function setup(): Promise<Setup> {
  const model = copyFixture('tiny-mlm');
  const dir = tempDir();
  const input = join(dir, 'texts.jsonl');
  writeFileSync(input, `${JSON.stringify({ text: 'the sky is [MASK] today' })}\n`);
  if (!converted) {
    converted = join(tempDir(), 'm.mlpackage');
    const r = await cli('convert', model, '--out', converted, '--seq-len', '16', '--no-fidelity');
    expect(r.code, r.stderr).toBe(0);
  }
  const pkg = join(dir, 'in.mlpackage');
  cpSync(converted, pkg, { recursive: true });
  return { dir, model, input, pkg };
}

interface Writer {
  argv: (s: Setup, out: string) => string[];
  /** The input it reads that an output could be (its --input, model or package), and a file inside its model. */
  self: (s: Setup) => string;
  inside: (s: Setup) => string;
  insideError: RegExp;
}

/** The file-writing commands. */
const FILE_WRITERS: Record<string, Writer> = {
  embed: {
    argv: (s, out) => ['embed', s.model, '--input', s.input, '--out', out],
    self: (s) => s.input,
    inside: (s) => join(s.model, 'model.safetensors'),
    insideError: /it lies inside the input /,
  },
  'predict --input': {
    argv: (s, out) => ['predict', s.model, '--input', s.input, '--out', out],
    self: (s) => s.input,
    inside: (s) => join(s.model, 'model.safetensors'),
    insideError: /it lies inside the input /,
  },
  'export-onnx': {
    argv: (s, out) => ['export-onnx', s.model, '--out', out],
    self: (s) => s.model,
    inside: (s) => join(s.model, 'model.safetensors'),
    insideError: /it lies inside the input /,
  },
  'outliers --plot': {
    argv: (s, out) => ['outliers', s.model, 'the sky is [MASK]', '--plot', out],
    self: (s) => s.model,
    inside: (s) => join(s.model, 'model.safetensors'),
    insideError: /it lies inside the input /,
  },
  report: {
    argv: (s, out) => ['report', s.pkg, '--out', out],
    self: (s) => s.pkg,
    inside: (s) => join(s.pkg, 'Manifest.json'),
    insideError: /is inside the package/,
  },
};

const ok = (r: Run) => expect(r.code, r.stderr).toBe(0);
const refused = (r: Run, pattern: RegExp) => {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(/^error: /);
  expect(r.stderr).toMatch(pattern);
};
const force = (argv: string[]) => [...argv, '--force'];

describe.each(Object.entries(FILE_WRITERS))('%s, by kind of target', (_name, w) => {
  const argv = w.argv;
  it('a new file is written', async () => {
    const s = await setup();
    const out = join(s.dir, 'new.jsonl');
    ok(await cli(...argv(s, out)));
    expect(statSync(out).isFile() && statSync(out).size > 0).toBe(true);
    expect(readdirSync(s.dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('an existing file is kept without --force, replaced with it', async () => {
    const s = await setup();
    const out = join(s.dir, 'old.jsonl');
    writeFileSync(out, 'keep');
    chmodSync(out, 0o640);
    refused(await cli(...argv(s, out)), /old\.jsonl already exists \(use --force to replace it\)/);
    expect(readFileSync(out, 'utf8')).toBe('keep');
    ok(await cli(...force(argv(s, out))));
    expect(readFileSync(out, 'utf8')).not.toBe('keep');
    expect(statSync(out).mode & 0o777).toBe(0o640); // a replaced file keeps its permissions
  });

  it('the input itself, and a file inside the input model, are refused even with --force', async () => {
    const s = await setup();
    const text = readFileSync(s.input, 'utf8');
    const inside = w.inside(s);
    const before = readFileSync(inside, 'utf8');
    const self = w.self(s);
    for (const f of [false, true]) {
      const a = argv(s, self);
      refused(await cli(...(f ? force(a) : a)), /it is the input |is inside the package/);
      const b = argv(s, inside);
      refused(await cli(...(f ? force(b) : b)), w.insideError);
      // A link to the input is the input.
      const link = join(s.dir, `link-${f}.jsonl`);
      symlinkSync(self, link);
      const c = argv(s, link);
      refused(await cli(...(f ? force(c) : c)), /it is the input |is inside the package/);
    }
    expect(readFileSync(s.input, 'utf8')).toBe(text);
    expect(readFileSync(inside, 'utf8')).toBe(before);
  });

  it('a folder, also one holding an entry named Manifest.json, is refused even with --force', async () => {
    const s = await setup();
    const folder = join(s.dir, 'folder.jsonl');
    mkdirSync(join(folder, 'Manifest.json'), { recursive: true });
    writeFileSync(join(folder, 'mine.txt'), 'keep');
    for (const f of [false, true])
      refused(await cli(...(f ? force(argv(s, folder)) : argv(s, folder))), /folder\.jsonl is a folder, not a file/);
    expect(readdirSync(folder).sort()).toEqual(['Manifest.json', 'mine.txt']);
  });

  it('a symbolic link to a file: kept without --force; with it, the file it points to is replaced and the link stays a link', async () => {
    const s = await setup();
    const real = join(s.dir, 'real.jsonl');
    writeFileSync(real, 'keep');
    const link = join(s.dir, 'link.jsonl');
    symlinkSync(real, link);
    refused(await cli(...argv(s, link)), /already exists/);
    expect(readFileSync(real, 'utf8')).toBe('keep');
    ok(await cli(...force(argv(s, link))));
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe(real);
    expect(readFileSync(real, 'utf8')).not.toBe('keep');
  });

  it('a dangling symbolic link is refused and stays', async () => {
    const s = await setup();
    const link = join(s.dir, 'dangling.jsonl');
    symlinkSync(join(s.dir, 'nowhere'), link);
    for (const f of [false, true])
      refused(
        await cli(...(f ? force(argv(s, link)) : argv(s, link))),
        /dangling\.jsonl is a symbolic link to nothing/,
      );
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(existsSync(join(s.dir, 'nowhere'))).toBe(false);
  });

  it('a FIFO is written in place (no --force needed) and stays a FIFO', async () => {
    const s = await setup();
    const fifo = fifoWithReader(s.dir);
    ok(await cli(...argv(s, fifo.path)));
    expect((await fifo.read()).length).toBeGreaterThan(0);
    expect(lstatSync(fifo.path).isFIFO()).toBe(true);
  }, 30_000);

  it('a character device is written in place and stays a device', async () => {
    const s = await setup();
    const dev = charDevice(s.dir);
    ok(await cli(...argv(s, dev)));
    expect(lstatSync(dev).isCharacterDevice()).toBe(true);
  });

  it('a folder that cannot be written fails before the work', async () => {
    const s = await setup();
    const t0 = performance.now();
    refused(
      await cli(...argv(s, join(unwritableFolder(), 'x.jsonl'))),
      /cannot write .*x\.jsonl: (permission denied|operation not permitted|the file system is read-only)/,
    );
    expect(performance.now() - t0).toBeLessThan(5_000);
  });
});

describe('export-onnx --external-data: the .data file is an output like the model', () => {
  const args = (s: Setup, out: string, ...extra: string[]) => [
    'export-onnx',
    s.model,
    '--out',
    out,
    '--external-data',
    ...extra,
  ];

  it('an existing .data file needs --force; a folder, a dangling link or a file inside the input are refused by its own name', async () => {
    const s = await setup();
    const out = join(s.dir, 'm.onnx');
    writeFileSync(`${out}.data`, 'keep');
    refused(await cli(...args(s, out)), /the external data file .*m\.onnx\.data already exists/);
    expect(readFileSync(`${out}.data`, 'utf8')).toBe('keep');
    expect(existsSync(out)).toBe(false);
    ok(await cli(...args(s, out, '--force')));
    expect(readFileSync(`${out}.data`).length).toBeGreaterThan(1000);

    const folderOut = join(s.dir, 'f.onnx');
    mkdirSync(`${folderOut}.data`);
    refused(
      await cli(...args(s, folderOut, '--force')),
      /the external data file .*f\.onnx\.data is a folder, not a file/,
    );
    const danglingOut = join(s.dir, 'd.onnx');
    symlinkSync(join(s.dir, 'nowhere'), `${danglingOut}.data`);
    refused(await cli(...args(s, danglingOut, '--force')), /d\.onnx\.data is a symbolic link to nothing/);
    // M/model.safetensors.data does not exist, but M/config.json.data would be new; the model file itself is refused.
    refused(await cli(...args(s, join(s.model, 'model.safetensors'), '--force')), /lies inside the input/);
    expect(readdirSync(s.dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe('convert: what --out may be', () => {
  const args = (s: Setup, out: string, ...extra: string[]) => [
    'convert',
    s.model,
    '--out',
    out,
    '--seq-len',
    '16',
    '--no-fidelity',
    ...extra,
  ];

  it('a new package; an existing one needs --force', async () => {
    const s = await setup();
    const out = join(s.dir, 'm.mlpackage');
    ok(await cli(...args(s, out)));
    refused(await cli(...args(s, out)), /already exists \(use --force to replace the package\)/);
    ok(await cli(...args(s, out, '--force')));
  });

  it('never the input, a file inside it, a file, a device, a FIFO, a dangling link, or a folder that is not a package', async () => {
    const s = await setup();
    const file = join(s.dir, 'notes.txt');
    writeFileSync(file, 'keep');
    const fifo = join(s.dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const dangling = join(s.dir, 'dangling.mlpackage');
    symlinkSync(join(s.dir, 'nowhere'), dangling);
    // Folders that hold an entry named Manifest.json but are not packages: a folder of that name, plain text,
    // JSON that is no manifest, a manifest whose root model is missing.
    const fakes = ['dir', 'text', 'json', 'no-model'].map((k) => {
      const p = join(s.dir, `fake-${k}.mlpackage`);
      mkdirSync(p);
      writeFileSync(join(p, 'mine.txt'), 'keep');
      const manifest = join(p, 'Manifest.json');
      if (k === 'dir') mkdirSync(manifest);
      else
        writeFileSync(
          manifest,
          k === 'text'
            ? 'hello'
            : k === 'json'
              ? '{"a": 1}'
              : JSON.stringify({
                  fileFormatVersion: '1.0.0',
                  rootModelIdentifier: 'X',
                  itemInfoEntries: {
                    X: { author: 'a', description: 'd', name: 'model.mlmodel', path: 'com.apple.CoreML/model.mlmodel' },
                  },
                }),
        );
      return p;
    });
    const cases: Array<[string, RegExp]> = [
      [s.model, /it is or holds the input/],
      [join(s.model, 'config.json'), /it lies inside the input/],
      [file, /it is not a Core ML package/],
      [fifo, /it is not a Core ML package/],
      [charDevice(s.dir), /it is not a Core ML package|is the working directory/],
      [dangling, /dangling\.mlpackage is a symbolic link to nothing/],
      ...fakes.map((p): [string, RegExp] => [p, /it is not a Core ML package/]),
    ];
    for (const [out, pattern] of cases) refused(await cli(...args(s, out, '--force')), pattern);
    expect(readFileSync(file, 'utf8')).toBe('keep');
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(lstatSync(dangling).isSymbolicLink()).toBe(true);
    for (const p of fakes) expect(readFileSync(join(p, 'mine.txt'), 'utf8')).toBe('keep');
  });

  it('a symbolic link to a package: replaced in place with --force, the link stays', async () => {
    const s = await setup();
    const real = join(s.dir, 'real.mlpackage');
    ok(await cli(...args(s, real)));
    const link = join(s.dir, 'link.mlpackage');
    symlinkSync(real, link);
    ok(await cli(...args(s, link, '--force')));
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(existsSync(join(real, 'Manifest.json'))).toBe(true);
  });

  it('a folder that cannot be written fails before the work', async () => {
    const s = await setup();
    const t0 = performance.now();
    refused(
      await cli('convert', s.model, '--out', join(unwritableFolder(), 'x.mlpackage'), '--seq-len', '16'),
      /cannot write .*x\.mlpackage: (permission denied|operation not permitted|the file system is read-only)/,
    );
    expect(performance.now() - t0).toBeLessThan(5_000);
  });
});

describe('synth: what --out may be', () => {
  const config = writeTinySynthConfig;

  it('a new folder; an existing checkpoint needs --force; its own config is never written over', async () => {
    const d = tempDir();
    const c = config(d);
    const out = join(d, 'ckpt');
    ok(await cli('synth', c, '--out', out));
    refused(await cli('synth', c, '--out', out), /already exists \(use --force to replace it\)/);
    ok(await cli('synth', c, '--out', out, '--force'));
    // The config it reads from the folder it writes: refused, the config kept.
    const before = readFileSync(join(out, 'config.json'), 'utf8');
    refused(await cli('synth', join(out, 'config.json'), '--out', out, '--force'), /it is the input/);
    refused(await cli('synth', out, '--out', out, '--force'), /it lies inside the input/);
    expect(readFileSync(join(out, 'config.json'), 'utf8')).toBe(before);
  });

  it('a file, a FIFO, a device or an unwritable folder is refused at once', async () => {
    const d = tempDir();
    const c = config(d);
    const file = join(d, 'file');
    writeFileSync(file, 'keep');
    const fifo = join(d, 'fifo');
    execFileSync('mkfifo', [fifo]);
    refused(await cli('synth', c, '--out', file), /is a file, not a folder/);
    refused(await cli('synth', c, '--out', fifo), /is a FIFO, not a folder/);
    refused(await cli('synth', c, '--out', charDevice(d)), /is a character device, not a folder/);
    refused(
      await cli('synth', c, '--out', join(unwritableFolder(), 'x')),
      /cannot write .*x: (permission denied|operation not permitted|the file system is read-only)/,
    );
    expect(readFileSync(file, 'utf8')).toBe('keep');
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });
});
