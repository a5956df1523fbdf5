// The temporary files of every runtime, not only convert's packages (test/cli-signals.test.ts): onnxruntime
// reads the weights in place and gets its model from memory (run/ort-executor.ts), so a command on it writes
// nothing to the temporary folder, and an interrupt has nothing of it to clear. Runs the built executable
// with its own TMPDIR.

import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './helpers/cli.js';
import { cleanupTempDirs, FX, ROOT, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const bin = join(ROOT, 'bin', 'modernbert-ane.js');

let model: string;
beforeAll(async () => {
  const work = tempDir('mbane-temp-');
  writeFileSync(
    join(work, 'c.json'),
    JSON.stringify({
      hidden_size: 64,
      num_attention_heads: 4,
      num_hidden_layers: 2,
      vocab_size: 1024,
      intermediate_size: 128,
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

describe('onnxruntime and the temporary folder', () => {
  it('predict and embed on onnxruntime, at float32 and in float16 emulation, write nothing there', () => {
    const tmp = tempDir('mbane-ort-tmp-');
    const texts = join(tempDir('mbane-ort-in-'), 'texts.txt');
    writeFileSync(texts, 'the sky is blue\na second text\n');
    const out = join(tempDir('mbane-ort-out-'), 'e.npy');
    const tok = ['--tokenizer', join(FX, 'tiny-mlm')];
    for (const args of [
      ['predict', model, 'the sky is [MASK]', ...tok, '--runtime', 'ort'],
      ['predict', model, 'the sky is [MASK]', ...tok, '--runtime', 'ort', '--precision', 'fp16'],
      ['embed', model, '--input', texts, '--out', out, '--force', ...tok, '--runtime', 'ort'],
    ]) {
      const r = spawnSync(process.execPath, [bin, ...args], {
        encoding: 'utf8',
        env: { ...process.env, TMPDIR: tmp },
        timeout: 60_000,
      });
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      // (This sandbox's own process wrapper leaves these two in every TMPDIR; nothing else may appear.)
      expect(
        readdirSync(tmp).filter((f) => !/^(\.ses|mat-debug-\d+\.log)$/.test(f)),
        args.join(' '),
      ).toEqual([]);
    }
  }, 120_000);
});
