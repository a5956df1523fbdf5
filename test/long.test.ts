// Long inputs (issue 8): banded sliding-window attention and chunked global attention, checked against the
// synth-tiny-long goldens (float64 reference, full last hidden state) and by the shape of the graph.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig, type ModernBertConfig } from '../src/model/config.js';
import { convert } from '../src/convert/convert.js';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { PackageRunner } from '../src/run/package-runner.js';
import { additiveMask, Engine } from '../src/run/engine.js';
import { Interpreter } from '../src/graph/interpreter.js';
import { readGolden, type GoldenCase } from '../src/eval/golden.js';
import { verify } from '../src/eval/verify.js';
import { numel, type Graph } from '../src/ir/graph.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { buildModel } from '../src/model/model.js';
import { DEFAULT_ATTENTION_CHUNK } from '../src/model/options.js';
import { SYNTH_PRESETS } from '../src/synth/presets.js';
import { SynthWeights } from '../src/synth/synth.js';
import { writeSynthCheckpoint } from '../src/synth/synth.js';
import { cleanupTempDirs, FX, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const DIR = join(FX, 'synth-tiny-long');
const golden = JSON.parse(readFileSync(join(DIR, 'golden.json'), 'utf8')) as { config: Record<string, unknown> };
const config: ModernBertConfig = parseConfig(
  { architectures: ['ModernBertForMaskedLM'], ...golden.config },
  'synth-tiny-long/golden.json',
);
const weights = new SynthWeights(config);
const cases = readGolden(join(DIR, 'golden.safetensors'));
const byName = (name: string): GoldenCase => cases.find((c) => c.name === name)!;

/** Ops of layer i (its names start with layers_i_). */
const layerOps = (g: Graph, i: number) => g.ops.filter((o) => o.name.startsWith(`layers_${i}_`));

describe('synth-tiny-long goldens (hidden 64, window 128, max_position_embeddings 8192)', () => {
  it('the checkpoint engine is within 1e-4 on logits and the full last hidden state at 130, 1,024 and 4,096 tokens', async () => {
    expect(config).toMatchObject({ hidden: 64, numLayers: 6, localWindow: 128, maxPositions: 8192 });
    const report = await verify(new Engine({ config, weights }), ['len130', 'len1024', 'len4096'].map(byName), 1e-4);
    for (const c of report.cases) {
      expect(c.logits, `${c.name} logits`).toBeLessThan(1e-4);
      expect(c.hidden_states, `${c.name} last hidden state`).toBeLessThan(1e-4);
    }
    expect(report.passed).toBe(true);
  }, 60_000);

  it('global attention in small query chunks gives the same result (1,024 tokens, chunks of 100)', async () => {
    const report = await verify(new Engine({ config, weights }, { attentionChunk: 100 }), [byName('len1024')], 1e-4);
    expect(report.passed).toBe(true);
    expect(report.cases[0]!.hidden_states).toBeLessThan(1e-4);
  }, 60_000);

  it('packages converted with --weights fp32 (within 1e-4) and fp16 (within 1e-2) reproduce the goldens, padding included', async () => {
    const tmp = tempDir('mbane-long-');
    const cfgPath = join(tmp, 'config.json');
    writeFileSync(cfgPath, JSON.stringify(golden.config));
    await writeSynthCheckpoint(cfgPath, join(tmp, 'ckpt'));
    const ckpt = loadCheckpoint(join(tmp, 'ckpt'));
    const base = { seqLens: [1100], rotation: 'hadamard' as const, tokenizer: false, fidelity: false as const };
    for (const [w, atol] of [
      ['fp32', 1e-4],
      ['fp16', 1e-2],
    ] as const) {
      const out = join(tmp, `${w}.mlpackage`);
      await convert(ckpt, { ...base, out, weights: w });
      const runner = new PackageRunner(readMLPackage(out), out);
      // 1,024 tokens in a 1,100-token package: 76 pad ids at the end, which the banded layers must mask.
      const report = await verify(runner, [byName('len1024')], atol);
      expect(report.cases[0]!.logits, `${w} logits`).not.toBeNull();
      expect(report.cases[0]!.logits!, `${w} logits`).toBeLessThan(atol);
    }
    ckpt.close();
  }, 120_000);
});

describe('banded and all-pairs sliding windows agree', () => {
  // The all-pairs graph (a mask input, the window masked) is the reference; padding at the end and in the
  // middle, blocks of 7 (window 14) and lengths that are not a multiple of the block.
  it.each([
    [16, 100],
    [14, 61],
    [128, 300],
  ])('window %i, %i tokens, padding in the middle and at the end', async (window, S) => {
    const cfg = parseConfig({ ...golden.config, local_attention: window }, 'window');
    const w = new SynthWeights(cfg);
    const ids = Array.from({ length: S }, (_, i) => (i * 37) % 1000);
    const attention = ids.map((_, i) => (i >= S - 9 || (i > 20 && i < 25) ? 0 : 1));
    const banded = await new Engine({ config: cfg, weights: w }).forward(
      { ids, attention },
      { taps: ['hidden_states.6'] },
    );
    const g = buildModel({ config: cfg, weights: w }, { seqLen: S, maskFrom: 'input', head: 'none' });
    expect(g.ops.some((o) => o.name === 'local_mask')).toBe(true);
    const ref = (
      await new Interpreter(g).run({
        input_ids: { dtype: 'int32', shape: [1, S], data: Int32Array.from(ids) },
        mask: { dtype: 'fp32', shape: [1, S, 1, S], data: additiveMask(attention, S) },
      })
    ).get('hidden_states')!;
    const ours = banded.taps.get('hidden_states.6')!;
    let worst = 0;
    for (let c = 0; c < cfg.hidden; c++)
      for (let s = 0; s < S; s++)
        if (attention[s]) worst = Math.max(worst, Math.abs(ours.data[c * S + s]! - ref.data[c * S + s]!));
    expect(worst).toBeLessThan(1e-5);
  });
});

describe('long graphs: O(S x window) local layers, bounded global chunks, no O(S^2) constants', () => {
  const build = (S: number, o: Parameters<typeof buildModel>[1] extends infer B ? Partial<B> : never = {}) =>
    buildModel({ config, weights }, { seqLen: S, maskFrom: 'ids', positions: [0], ...o });
  const g512 = build(512);
  const g8192 = build(8192);

  it('a local layer has the same ops at 512 and 8,192 tokens, and its scores are (1, 3B, S/B, B) blocks', () => {
    const local = config.layerTypes.indexOf('local');
    const types = (g: Graph) => layerOps(g, local).map((o) => o.op);
    expect(types(g8192)).toEqual(types(g512));
    const scores = layerOps(g8192, local).filter((o) => o.name.endsWith('_scores'));
    expect(scores).toHaveLength(config.numHeads);
    for (const s of scores) expect(s.outputs[0]!.type.shape).toEqual([1, 192, 128, 64]);
  });

  it("banded windows cut once for all heads (convert's) or per head (the CPU engine's) compute the same, bit for bit", async () => {
    const S = 600;
    const [all, per] = [build(S, { head: 'none' }), build(S, { head: 'none', bandWindows: 'per-head' })];
    const local = config.layerTypes.indexOf('local');
    const windowChannels = (g: Graph) =>
      layerOps(g, local)
        .filter((o) => o.name.endsWith('_windows'))
        .map((o) => o.outputs[0]!.type.shape.filter((d) => d === config.hidden || d === config.headDim));
    expect(windowChannels(all)).toEqual([[config.hidden], [config.hidden]]); // keys and values, all heads
    expect(windowChannels(per)).toEqual(Array(2 * config.numHeads).fill([config.headDim])); // one head's at a time
    const engineGraph = new Engine({ config, weights }).graph(S);
    expect(layerOps(engineGraph, local).filter((o) => o.name.endsWith('_windows'))).toHaveLength(2 * config.numHeads);
    const ids = Array.from({ length: S }, (_, i) => (i < 590 ? 5 + ((i * 37) % 200) : config.padTokenId));
    const inputs = { input_ids: { dtype: 'int32' as const, shape: [1, S], data: Int32Array.from(ids) } };
    for (const precision of ['fp32', 'fp16'] as const) {
      const [a, b] = await Promise.all(
        [all, per].map(
          async (g) => (await new Interpreter(g, precision).run(inputs)).get('hidden_states')!.data as Float32Array,
        ),
      );
      expect(new Uint32Array(b!.slice().buffer), precision).toEqual(new Uint32Array(a!.slice().buffer));
    }
  }, 60_000);

  it('no constant grows with S^2: the largest non-weight constant at 8,192 tokens is O(S)', () => {
    for (const [S, g] of [
      [512, g512],
      [8192, g8192],
    ] as const) {
      for (const c of g.consts.values())
        expect(numel(c.type.shape as number[]), c.name).toBeLessThan(S * 64 + 1024 * 64 + 1);
    }
  });

  it('ModernBERT-base holds less than 1% more constants at 8,192 tokens than at 512 (package size)', () => {
    const base = parseConfig(SYNTH_PRESETS.base);
    const elements = (S: number) => {
      const g = buildModel(
        { config: base, weights: new SynthWeights(base) },
        { seqLen: S, dtype: 'fp16', maskFrom: 'ids' },
      );
      return [...g.consts.values()].reduce((n, c) => n + numel(c.type.shape as number[]), 0);
    };
    expect(elements(8192) / elements(512)).toBeLessThan(1.01);
  });

  it('global layers split queries into chunks of at most the chunk size', () => {
    const global = config.layerTypes.indexOf('global');
    const widths = (g: Graph) =>
      layerOps(g, global)
        .filter((o) => o.name.endsWith('_scores'))
        .map((o) => o.outputs[0]!.type.shape);
    expect(widths(g8192)).toHaveLength(config.numHeads * (8192 / DEFAULT_ATTENTION_CHUNK));
    for (const s of widths(g8192)) expect(s).toEqual([1, 8192, 1, DEFAULT_ATTENTION_CHUNK]);
    const odd = build(1000, { attentionChunk: 300 });
    expect(
      widths(odd)
        .slice(0, 4)
        .map((s) => s[3]),
    ).toEqual([300, 300, 300, 100]);
  });

  it('the float32 interpreter runs each global query chunk as one fused kernel, bit for bit the four ops (600 tokens)', async () => {
    const g = build(600);
    const scores = g.ops.filter(
      (o) => o.op === 'einsum' && o.name.endsWith('_scores') && o.outputs[0]!.type.shape[2] === 1,
    );
    const it32 = new Interpreter(g, 'fp32');
    expect(scores.length).toBeGreaterThan(0);
    expect([...it32.attention.values()].map((a) => a.inner[0])).toEqual(scores.map((o) => o.outputs[0]!.name));
    const ids = Array.from({ length: 600 }, (_, i) => (i < 590 ? 5 + ((i * 37) % 200) : config.padTokenId));
    const inputs = Engine.inputs({ ids });
    const fused = await it32.run(inputs);
    // Keeping the scores makes the interpreter run the ops one by one.
    const apart = await it32.run(inputs, { keep: [...it32.attention.values()].flatMap((a) => a.inner) });
    for (const o of g.outputs)
      expect(new Uint32Array((fused.get(o)!.data as Float32Array).slice().buffer), o).toEqual(
        new Uint32Array((apart.get(o)!.data as Float32Array).slice().buffer),
      );
  }, 60_000);

  it('a chunk size that does not fit is an error', () => {
    expect(() => build(512, { attentionChunk: 0 })).toThrow(/attention chunk 0 does not fit/);
    expect(() => build(512, { attentionChunk: 20000 })).toThrow(/1\.\.16384/);
  });
});
