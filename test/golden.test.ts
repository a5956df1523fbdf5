import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { Engine } from '../src/run/engine.js';
import { readGolden } from '../src/eval/golden.js';
import { verify } from '../src/eval/verify.js';

const FX = join(import.meta.dirname, 'fixtures');

describe('float32 execution matches the reference goldens', () => {
  for (const name of ['tiny-mlm', 'tiny-mlm-bias', 'tiny-mlm-bf16', 'tiny-cls-mean', 'tiny-token']) {
    it(`${name}: logits and every hidden state within 1e-4`, async () => {
      const ckpt = loadCheckpoint(join(FX, name));
      const report = await verify(new Engine(ckpt), readGolden(join(FX, name, 'golden.safetensors')), 1e-4);
      ckpt.close();
      for (const c of report.cases) {
        expect(c.logits, `${name}/${c.name} logits`).not.toBeNull();
        expect(c.hidden_states, `${name}/${c.name} hidden states`).not.toBeNull();
      }
      expect(report.max_abs_diff).toBeLessThan(1e-4);
    });
  }
});
