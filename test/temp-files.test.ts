// The temporary files of every runtime, not only convert's packages (test/cli-signals.test.ts): onnxruntime's
// scratch folder, made while its model is set up, goes on SIGINT, SIGTERM and SIGHUP, and what a killed run
// left is cleared by the next one, never a live process's. Runs the built executable with its own TMPDIR.

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ORT_SCRATCH_PREFIX } from '../src/run/ort-executor.js';
import { cli } from './helpers/cli.js';
import { cleanupTempDirs, FX, ROOT, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const bin = join(ROOT, 'bin', 'modernbert-ane.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const scratch = (dir: string) => readdirSync(dir).filter((f) => f.startsWith(ORT_SCRATCH_PREFIX));
const UUID = '00000000-0000-4000-8000-000000000000';

let model: string;
beforeAll(async () => {
  // 16 M parameters: writing onnxruntime's model and creating its session take a good fraction of a second.
  const work = tempDir('mbane-temp-');
  writeFileSync(join(work, 'c.json'), JSON.stringify({ hidden_size: 256, num_attention_heads: 4, num_hidden_layers: 24, vocab_size: 1024, intermediate_size: 512, pad_token_id: 0, cls_token_id: 1, sep_token_id: 2, bos_token_id: 1, eos_token_id: 2 }));
  model = join(work, 'model');
  const r = await cli('synth', join(work, 'c.json'), '--out', model);
  expect(r.code, r.stderr).toBe(0);
});

const predictArgs = () => [bin, 'predict', model, 'the sky is [MASK]', '--tokenizer', join(FX, 'tiny-mlm'), '--runtime', 'ort'];

describe('onnxruntime\'s scratch folder', () => {
  it.each([['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const)('%s while its model is set up removes it and exits %i', async (signal, code) => {
    const tmp = tempDir('mbane-ort-signal-');
    const child = spawn(process.execPath, predictArgs(), { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TMPDIR: tmp } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    let seen = false;
    for (let i = 0; i < 6000 && !seen && child.exitCode === null; i++) {
      seen = scratch(tmp).length > 0;
      if (!seen) await sleep(5);
    }
    expect(seen, `no scratch folder appeared: ${stderr}`).toBe(true);
    child.kill(signal);
    expect(await exited, stderr).toBe(code);
    expect(scratch(tmp)).toEqual([]);
  }, 60_000);

  it('what killed runs left is cleared by the next run; a live process\'s, and a recent one without a pid, are kept', () => {
    const tmp = tempDir('mbane-ort-stale-');
    const gone = spawnSync(process.execPath, ['-e', '']).pid!; // a process that has exited
    const dead = `${ORT_SCRATCH_PREFIX}${gone}-${UUID}`;
    const live = `${ORT_SCRATCH_PREFIX}${process.pid}-${UUID}`;
    const oldPidless = `${ORT_SCRATCH_PREFIX}AbC123`; // as mkdtemp named them before names carried a pid
    const newPidless = `${ORT_SCRATCH_PREFIX}XyZ789`;
    for (const name of [dead, live, oldPidless, newPidless]) {
      mkdirSync(join(tmp, name));
      writeFileSync(join(tmp, name, 'model.onnx.data'), 'x');
    }
    const hours = (Date.now() - 2 * 3600 * 1000) / 1000;
    utimesSync(join(tmp, oldPidless), hours, hours);
    const r = spawnSync(process.execPath, predictArgs(), { encoding: 'utf8', env: { ...process.env, TMPDIR: tmp }, timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(scratch(tmp).sort()).toEqual([live, newPidless].sort());
  }, 60_000);
});
