// The goldens that golden.test.ts does not run: the trained default model, the full-size synthetic models
// (weights from the portable PRNG, no file), and the 4.x configs of the tiny fixtures.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.js';
import { Engine } from '../src/run/engine.js';
import { readGolden } from '../src/eval/golden.js';
import { verify, type VerifyReport } from '../src/eval/verify.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { DEFAULT_MODEL } from '../src/run/load.js';
import type { Override } from '../src/synth/overrides.js';
import { SynthWeights } from '../src/synth/synth.js';
import { cleanupTempDirs, copyFixture, FX, ROOT } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

function expectPassed(report: VerifyReport, what: string, cases: string[]): void {
  expect(report.cases.map((c) => c.name).sort()).toEqual([...cases].sort());
  for (const c of report.cases) {
    expect(c.logits, `${what}/${c.name} logits compared`).not.toBeNull();
    expect(c.hidden_states, `${what}/${c.name} hidden states compared`).not.toBeNull();
    expect(c.logits!, `${what}/${c.name} logits`).toBeLessThan(1e-4);
    expect(c.hidden_states!, `${what}/${c.name} hidden states`).toBeLessThan(1e-4);
  }
  expect(report.passed).toBe(true);
}

describe('mini-trained (the built-in default model)', () => {
  it('models/mini-trained reproduces test/fixtures/mini-trained/golden.safetensors within 1e-4 (padded prompts included)', async () => {
    expect(DEFAULT_MODEL).toBe(join(ROOT, 'models', 'mini-trained'));
    const ckpt = loadCheckpoint(DEFAULT_MODEL);
    expect(ckpt.storedDtypes).toEqual(['BF16']);
    const cases = readGolden(join(FX, 'mini-trained', 'golden.safetensors'));
    expect(cases.find((c) => c.name === 'prompts')!.attentionMask!.includes(0)).toBe(true);
    const report = await verify(new Engine(ckpt), cases, 1e-4);
    ckpt.close();
    expectPassed(report, 'mini-trained', ['prompts', 'long_random']);
  });
});

interface SynthGolden {
  config: Record<string, unknown>;
  overrides: Override[];
}

describe('full-size synthetic models, weights from the PRNG (no file)', () => {
  const cases: Array<[string, string[]]> = [['synth-base', ['seed_example', 'len300', 'len1024']]];
  for (const [name, caseNames] of cases) {
    it(`${name}: every case within 1e-4 on logits and hidden states`, async () => {
      const golden = JSON.parse(readFileSync(join(FX, name, 'golden.json'), 'utf8')) as SynthGolden;
      const config = parseConfig({ architectures: ['ModernBertForMaskedLM'], ...golden.config }, `${name}/golden.json`);
      expect(config).toMatchObject({ hidden: 768, numLayers: 22, vocabSize: 50368, localWindow: 128 });
      const weights = new SynthWeights(config, golden.overrides);
      if (name === 'synth-base-massive') expect(golden.overrides).toHaveLength(1);
      const report = await verify(
        new Engine({ config, weights }),
        readGolden(join(FX, name, 'golden.safetensors')),
        1e-4,
      );
      expectPassed(report, name, caseNames);
    }, 240_000);
  }

  // With the massive activation, the last hidden state of the 300-token case is beyond 1e-4 for any float32
  // engine: layer 2's row of 2000s sums 1152 products whose rounding errors (~0.03 absolute in channel 100
  // of the residual) the final norm turns into ~1e-3 at tokens where that channel stays small (about -67,
  // against 45,000 at others), since there it sets the norm's scale. A numpy float32 (OpenBLAS) forward of
  // the first 4 layers is off by 4.8e-4 there against float64; this engine by 1.1e-3 (1.3e-3 after 22
  // layers). The logits and the 9-token case must still be within 1e-4.
  it('synth-base-massive: logits within 1e-4; hidden states within 1e-4 (9 tokens) and 2e-3 (300 tokens, float32 limit)', async () => {
    const golden = JSON.parse(readFileSync(join(FX, 'synth-base-massive', 'golden.json'), 'utf8')) as SynthGolden;
    expect(golden.overrides).toEqual([{ name: 'model.layers.2.mlp.Wo.weight', index: [100], value: 2000 }]);
    const config = parseConfig({ architectures: ['ModernBertForMaskedLM'], ...golden.config });
    const engine = new Engine({ config, weights: new SynthWeights(config, golden.overrides) });
    const cases = readGolden(join(FX, 'synth-base-massive', 'golden.safetensors'));
    const report = await verify(engine, cases, 1e-4);
    expect(report.cases.map((c) => c.name).sort()).toEqual(['len300', 'seed_example']);
    for (const c of report.cases) {
      expect(c.logits!, `${c.name} logits`).toBeLessThan(1e-4);
      expect(c.hidden_states!, `${c.name} hidden states`).toBeLessThan(c.name === 'len300' ? 2e-3 : 1e-4);
    }
    // The override is in force: channel 100 of the residual after layer 2 carries the massive activation.
    const gc = cases.find((c) => c.name === 'seed_example')!;
    const res = await engine.forward({ ids: gc.inputIds.data }, { positions: [0], taps: ['residual.3'] });
    const S = gc.inputIds.shape[1];
    const ch100 = res.taps.get('residual.3')!.data.subarray(100 * S, 101 * S);
    expect(Math.max(...Array.from(ch100, Math.abs))).toBeGreaterThan(10_000);
  }, 240_000);
});

describe('tiny fixtures with their 4.x config (config.v4.json as config.json)', () => {
  for (const name of ['tiny-mlm', 'tiny-mlm-bias', 'tiny-mlm-bf16', 'tiny-cls-mean', 'tiny-token']) {
    it(`${name}: within 1e-4 of its golden`, async () => {
      const dir = copyFixture(name, (c) => c, 'config.v4.json');
      const ckpt = loadCheckpoint(dir);
      expect(ckpt.config.architecture).toMatch(/^ModernBertFor/);
      const report = await verify(new Engine(ckpt), readGolden(join(FX, name, 'golden.safetensors')), 1e-4);
      ckpt.close();
      expectPassed(report, name, ['single', 'batch_padded', 'long_random']);
      if (name === 'tiny-mlm-bf16') expect(ckpt.storedDtypes).toEqual(['BF16']);
    });
  }
});
