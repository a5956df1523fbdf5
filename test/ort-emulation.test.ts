// Float16 emulation on onnxruntime (src/onnx/emulate-fp16.ts) against our interpreter's, which stays the
// reference: onnxruntime's float16 round trip is roundToF16 bit for bit; op by op the lowering computes
// what the kernels compute (the float32 sums before each rounding differ in order, so a value now and then
// rounds to the neighbouring float16); whole models give the fidelity report the same numbers.
//
// Not held, and why: KL below 1e-8 between the two on a model that does not overflow. In float16 emulation
// every product's terms are exact in float32 (float16 times float16), so the two GEMMs differ only in the
// order of their float32 sums: ours adds k in sequence, onnxruntime's (MLAS) sums blocks of 128 k from zero
// and adds each block to C. Up to 128 terms the two are bit for bit equal (held below); past that 0.2-0.5%
// of a projection's outputs round to the other neighbouring float16, and every such difference feeds every
// output of the next product: after one layer 12% and after two layers half of the residual stream differ
// by an ulp, and the two emulations then differ about as much as either differs from float32
// (mini-trained's prompts: KL 1.9e-6 and 1.6e-6 against float32, 2.2e-6 between them). KL below 1e-8 would
// take the same order on both (products split along k in the graph and our kernel summing the same blocks,
// which MLAS sizes by shape and thread count) and the same reductions, exp and erf; not done. What the
// report needs holds: the same KL against float32 within a quarter, the same top-1 at every position, and,
// where float16 overflows, the same (non-)result.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.js';
import { Engine } from '../src/run/engine.js';
import type { ExecutorFactory } from '../src/run/runner.js';
import { AgreementMeter } from '../src/eval/compare.js';
import { readGolden } from '../src/eval/golden.js';
import { GraphBuilder, i32, str } from '../src/graph/builder.js';
import type { Graph } from '../src/ir/graph.js';
import { Interpreter } from '../src/graph/interpreter.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { DEFAULT_MODEL } from '../src/run/load.js';
import { roundToF16 } from '../src/numeric/fp16.js';
import { loadOrt, OrtExecutor } from '../src/run/ort-executor.js';
import { chooseRuntime, executorFor } from '../src/run/runtime-choice.js';
import type { OnnxPrecision } from '../src/onnx/emulate-fp16.js';
import type { RtTensor } from '../src/runtime/tensor.js';
import type { Override } from '../src/synth/overrides.js';
import { SynthWeights } from '../src/synth/synth.js';
import { FX } from './helpers/fixtures.js';

const ort = (await loadOrt())!;

async function both(
  g: Graph,
  inputs: Record<string, RtTensor>,
  precision: OnnxPrecision,
): Promise<[Float32Array, Float32Array]> {
  const name = g.outputs[0]!;
  const ours = (await new Interpreter(g, precision).run(inputs)).get(name)!.data as Float32Array;
  const theirs = (await new OrtExecutor(g, ort, 'cpu', precision).run(inputs)).get(name)!.data as Float32Array;
  return [ours, theirs];
}

/** Share of equal values (NaN equal to NaN), and the largest difference in float16 ulps of the reference value. */
function agreement(a: Float32Array, b: Float32Array): { equal: number; ulps: number } {
  let equal = 0;
  let ulps = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i] || (Number.isNaN(a[i]!) && Number.isNaN(b[i]!))) {
      equal++;
      continue;
    }
    const ulp = 2 ** (Math.max(-14, Math.floor(Math.log2(Math.abs(a[i]!)))) - 10);
    ulps = Math.max(ulps, Math.abs(a[i]! - b[i]!) / ulp);
  }
  return { equal: equal / a.length, ulps };
}

describe('onnxruntime rounds to float16 exactly as roundToF16', () => {
  it('ties to even, past 65504 to infinity, subnormals, and 200,000 other values', async () => {
    const edges = [
      65504,
      65505,
      65519.99,
      65520,
      1e6,
      -65520,
      2 ** -24,
      2 ** -25,
      3 * 2 ** -26,
      1.5 * 2 ** -24,
      2 ** -14,
      1 + 2 ** -11,
      1 + 3 * 2 ** -11,
      -(1 + 2 ** -11),
      0,
      -0,
      1e-9,
    ];
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const values = Float32Array.from([
      ...edges,
      ...Array.from({ length: 100_000 }, () => (next() - 0.5) * 140_000),
      ...Array.from({ length: 100_000 }, () => (next() - 0.5) * 2e-4),
    ]);
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [values.length]);
    g.output(g.op('mul', { x, y: g.f(1) }, 'same'), 'y');
    const [, theirs] = await both(g.graph, { x: { dtype: 'fp32', shape: [values.length], data: values } }, 'fp16');
    const want = roundToF16(Float32Array.from(values));
    for (let i = 0; i < values.length; i++)
      if (!(theirs[i] === want[i])) expect.fail(`${values[i]}: onnxruntime ${theirs[i]}, roundToF16 ${want[i]}`);
  });
});

describe('op by op, the lowering computes what the kernels compute', () => {
  const input = (shape: number[], f: (i: number) => number): RtTensor => ({
    dtype: 'fp32',
    shape,
    data: Float32Array.from({ length: shape.reduce((p, q) => p * q, 1) }, (_, i) => f(i)),
  });

  it('layer_norm in fp16: the mean, centred values and squares rounded; past 256 a square overflows in both', async () => {
    const [C, S] = [64, 48];
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [1, C, 1, S]);
    const gamma = g.weight('gamma', [C], () => Float32Array.from({ length: C }, (_, i) => 0.5 + i / C));
    g.output(g.op('layer_norm', { x, gamma, axes: i32([1]), epsilon: g.f(1e-5) }, 'ln'), 'y');
    // Column 0 holds a 300: its square overflows float16, the variance is infinite and the column comes out 0.
    const xs = input([1, C, 1, S], (i) => (i === 0 ? 300 : Math.sin(i * 0.37) * (1 + (i % 7))));
    for (const precision of ['fp16', 'fp16-fused'] as const) {
      const [ours, theirs] = await both(g.graph, { x: xs }, precision);
      const a = agreement(ours, theirs);
      expect(a.equal, precision).toBeGreaterThan(0.99);
      expect(a.ulps, precision).toBeLessThanOrEqual(1);
      const col0 = (d: Float32Array) => Array.from({ length: C }, (_, c) => d[c * S]! + 0); // -0 as 0
      if (precision === 'fp16') expect(col0(theirs)).toEqual(col0(ours));
      if (precision === 'fp16') expect(col0(ours).every((v) => v === 0)).toBe(true);
    }
  });

  it('gelu (each step rounded), softmax, and a product summed in float32', async () => {
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [1, 96, 1, 40]);
    const act = g.op('gelu', { x, mode: str('EXACT') }, 'act');
    const w = g.weight('w', [32, 96, 1, 1], () =>
      Float32Array.from({ length: 32 * 96 }, (_, i) => Math.cos(i * 0.11) * 0.1),
    );
    const proj = g.op('conv', { x: act, weight: w }, 'proj');
    g.output(g.op('softmax', { x: proj, axis: i32(1) }, 'p'), 'y');
    const xs = input([1, 96, 1, 40], (i) => Math.sin(i * 0.73) * 4);
    for (const precision of ['fp16', 'fp16-fused'] as const) {
      const [ours, theirs] = await both(g.graph, { x: xs }, precision);
      const a = agreement(ours, theirs);
      expect(a.equal, precision).toBeGreaterThan(0.98);
      expect(a.ulps, precision).toBeLessThanOrEqual(2);
    }
  });
});

describe('a product differs only by the order of its sums', () => {
  it("up to 128 terms (one block of onnxruntime's GEMM) bit for bit ours; past that, a float16 ulp or two now and then", async () => {
    for (const K of [64, 128, 256, 512]) {
      const [N, S] = [256, 40];
      const g = new GraphBuilder('fp32');
      const x = g.input('x', 'fp32', [1, K, 1, S]);
      const w = g.weight('w', [N, K, 1, 1], () =>
        Float32Array.from({ length: N * K }, (_, i) => Math.cos(i * 0.11) * 0.1),
      );
      g.output(g.op('conv', { x, weight: w }, 'proj'), 'y');
      const xs: RtTensor = {
        dtype: 'fp32',
        shape: [1, K, 1, S],
        data: Float32Array.from({ length: K * S }, (_, i) => Math.sin(i * 0.73) * 4),
      };
      const a = agreement(...(await both(g.graph, { x: xs }, 'fp16')));
      if (K <= 128) expect(a.equal, `K = ${K}`).toBe(1);
      else {
        expect(a.equal, `K = ${K}`).toBeGreaterThan(0.99);
        expect(a.ulps, `K = ${K}`).toBeLessThanOrEqual(2);
      }
    }
  });
});

describe('whole models: the same fidelity on both', () => {
  const run = async (e: Engine, seqs: number[][]) => {
    const out: RtTensor[] = [];
    for (const ids of seqs)
      out.push((await e.forward({ ids }, { positions: ids.map((_, i) => i) })).outputs.get('logits')!);
    return out;
  };
  const compare = (a: RtTensor[], b: RtTensor[]) => {
    const m = new AgreementMeter();
    a.forEach((t, i) => m.add(t.data, b[i]!.data, t.shape[1]!, t.shape[3]!));
    return m.result();
  };
  const ortFp16 = async (): Promise<ExecutorFactory> =>
    executorFor(await chooseRuntime({ runtime: 'ort', precision: 'fp16' }))!;

  it('mini-trained, its golden prompts: KL against float32 within a quarter of each other, the same top-1 everywhere', async () => {
    const ckpt = loadCheckpoint(DEFAULT_MODEL);
    try {
      const g = readGolden(join(FX, 'mini-trained', 'golden.safetensors')).find((c) => c.name === 'prompts')!;
      const [B, S] = g.inputIds.shape;
      const seqs = Array.from({ length: B }, (_, b) => {
        const ids = Array.from(g.inputIds.data.subarray(b * S, (b + 1) * S));
        const n = g.attentionMask ? g.attentionMask.subarray(b * S, (b + 1) * S).reduce((s, v) => s + v, 0) : S;
        return ids.slice(0, n);
      });
      const f32 = await run(new Engine(ckpt), seqs);
      const ours = await run(new Engine(ckpt, { precision: 'fp16' }), seqs);
      const theirs = await run(new Engine(ckpt, { precision: 'fp16' }, await ortFp16()), seqs);
      const [ko, kt] = [compare(f32, ours), compare(f32, theirs)];
      expect(ko.kl).toBeGreaterThan(1e-7); // float16 is visible at all
      expect(Math.abs(kt.kl - ko.kl) / ko.kl).toBeLessThan(0.25);
      expect(kt.top1).toBe(ko.top1);
      const between = compare(ours, theirs);
      expect(between.top1).toBe(1);
      expect(between.non_finite).toBe(0);
      // Measured 2.2e-6 (docs/PERFORMANCE.md): the sum order's ulps, not the 1e-8 of identical arithmetic.
      expect(between.kl).toBeLessThan(1e-5);
    } finally {
      ckpt.close();
    }
  }, 60_000);

  it("synth-base-massive (its outlier overflows the LayerNorm's squares): the same output, KL below 1e-8", async () => {
    const golden = JSON.parse(readFileSync(join(FX, 'synth-base-massive', 'golden.json'), 'utf8')) as {
      config: Record<string, unknown>;
      overrides: Override[];
    };
    const config = parseConfig({ architectures: ['ModernBertForMaskedLM'], ...golden.config });
    const source = { config, weights: new SynthWeights(config, golden.overrides) };
    const seq = Array.from(
      readGolden(join(FX, 'synth-base-massive', 'golden.safetensors')).find((c) => c.name === 'seed_example')!.inputIds
        .data,
    );
    const ours = await run(new Engine(source, { precision: 'fp16' }), [seq]);
    const theirs = await run(new Engine(source, { precision: 'fp16' }, await ortFp16()), [seq]);
    const r = compare(ours, theirs);
    expect(r.tokens).toBe(seq.length);
    expect(r.kl).toBeLessThan(1e-8);
    expect(r.top1).toBe(1);
  }, 240_000);
});
