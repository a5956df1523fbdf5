// An interrupted conversion leaves no temporary folder: SIGINT and SIGTERM remove it (exit 130 / 143), and
// the leftover of a SIGKILLed one is cleared by the next convert to the same path. Runs the built executable.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './helpers/cli.js';
import { cleanupTempDirs, ROOT, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const bin = process.env['MODERNBERT_ANE_TEST_BIN'] ?? join(ROOT, 'bin', 'modernbert-ane.js');
const temps = (dir: string) => readdirSync(dir).filter((f) => f.includes('.tmp-'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let work: string;
let model: string;

beforeAll(async () => {
  // Big enough (16 M parameters) that writing the package takes a good fraction of a second.
  work = tempDir('mbane-signals-');
  writeFileSync(
    join(work, 'c.json'),
    JSON.stringify({
      hidden_size: 256,
      num_attention_heads: 4,
      num_hidden_layers: 24,
      vocab_size: 1024,
      intermediate_size: 512,
      pad_token_id: 0,
      cls_token_id: 1,
      sep_token_id: 2,
      bos_token_id: 1,
      eos_token_id: 2,
    }),
  );
  model = join(work, 'model');
  const r = await cli('synth', join(work, 'c.json'), '--out', model);
  expect(r.code, r.stderr).toBe(0);
});

/** Starts a conversion into `dir`, waits until its temporary folder appears, sends `signal`; resolves to the exit. */
async function interrupt(
  dir: string,
  signal: NodeJS.Signals,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const child = spawn(
    process.execPath,
    [bin, 'convert', model, '--out', join(dir, 'm.mlpackage'), '--no-fidelity', '--seq-len', '16'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, sig) => resolve({ code, signal: sig })),
  );
  // The package's temporary folder once it holds something: the writability probe before the work has the same
  // form of name but is removed at once (a kill then would find nothing to leave behind).
  const writing = () =>
    temps(dir).some((f) => {
      try {
        return readdirSync(join(dir, f)).length > 0;
      } catch {
        return false;
      }
    });
  let seen = false;
  for (let i = 0; i < 6000 && !seen && child.exitCode === null; i++) {
    seen = writing();
    if (!seen) await sleep(5);
  }
  expect(seen, `no temporary folder appeared: ${stderr}`).toBe(true);
  child.kill(signal);
  return { ...(await exited), stderr };
}

describe('an interrupted convert', () => {
  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)(
    '%s removes the temporary folder and exits %i',
    async (signal, code) => {
      const dir = tempDir();
      const r = await interrupt(dir, signal);
      expect(r.code, r.stderr).toBe(code);
      expect(temps(dir)).toEqual([]);
      expect(existsSync(join(dir, 'm.mlpackage'))).toBe(false);
    },
    60_000,
  );

  it("after SIGKILL, the next convert to the same path clears the leftover (but not a live run's)", async () => {
    const dir = tempDir();
    const r = await interrupt(dir, 'SIGKILL');
    expect(r.signal).toBe('SIGKILL');
    const left = temps(dir);
    expect(left).toHaveLength(1); // what the issue saw: nothing can clean up after SIGKILL
    // A temporary folder of a live process (this one) and one of another package are not ours to remove.
    const live = `.m.mlpackage.tmp-${process.pid}-00000000-0000-4000-8000-000000000000`;
    const other = '.other.mlpackage.tmp-00000000-0000-4000-8000-000000000000';
    for (const f of [live, other]) mkdirSync(join(dir, f));
    const again = await cli('convert', model, '--out', join(dir, 'm.mlpackage'), '--no-fidelity', '--seq-len', '16');
    expect(again.code, again.stderr).toBe(0);
    expect(temps(dir).sort()).toEqual([live, other].sort());
    expect(existsSync(join(dir, 'm.mlpackage', 'Manifest.json'))).toBe(true);
  }, 60_000);
});

describe('a package moved aside by a --force that was killed between its two renames', () => {
  it('is put back by the next convert, not removed', async () => {
    const dir = tempDir();
    const gone = spawnSync(process.execPath, ['-e', '']).pid; // a process that has exited
    const aside = join(dir, `.m.mlpackage.tmp-${gone}-00000000-0000-4000-8000-000000000000.old`);
    mkdirSync(aside);
    writeFileSync(join(aside, 'Manifest.json'), '{}');
    const r = await cli('convert', model, '--out', join(dir, 'm.mlpackage'), '--no-fidelity', '--seq-len', '16');
    expect(r.stderr).toMatch(/m\.mlpackage already exists/);
    expect(readdirSync(dir)).toEqual(['m.mlpackage']);
    expect(existsSync(join(dir, 'm.mlpackage', 'Manifest.json'))).toBe(true);
  });
});

describe('the executable on a path it cannot write', () => {
  it.each([
    ['under a file', (d: string) => join(d, 'file.txt', 'a.mlpackage'), /is a file, not a folder/],
    [
      'a name too long',
      (d: string) => join(d, `${'a'.repeat(300)}.mlpackage`),
      /the name is too long \(ENAMETOOLONG\)/,
    ],
    ['under /proc', () => '/proc/a.mlpackage', /no such file or folder \(ENOENT\)/],
  ])('%s: exit 2, one line, no stack trace (not even from the cleanup at exit)', (_what, out, pattern) => {
    const d = tempDir();
    writeFileSync(join(d, 'file.txt'), '');
    const r = spawnSync(
      process.execPath,
      [bin, 'convert', join(ROOT, 'test', 'fixtures', 'tiny-mlm'), '--out', out(d), '--seq-len', '16', '--no-fidelity'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: cannot write /);
    expect(r.stderr).toMatch(pattern);
    expect(readdirSync(d)).toEqual(['file.txt']);
  });
});

describe('a reader that closes the pipe early', () => {
  it('inspect | head -1: the rest of the output is dropped, exit 0, no EPIPE stack trace', async () => {
    const child = spawn(process.execPath, [bin, 'inspect', join(ROOT, 'test', 'fixtures', 'tiny-mlm')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.destroy(); // closed before the command writes its first line
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    expect(stderr).not.toMatch(/EPIPE|at /);
    expect(code).toBe(0);
  });
});
