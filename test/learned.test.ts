// Rotation learning: the orthogonal-group steps, the float16 proxy's analytic gradient, the optimisation
// lowering the proxy on a trained model, and learnRotation's contract (orthogonal, deterministic, never
// worse in measured float16 KL than the folded and Hadamard candidates) on tiny checkpoints.

import { CompressedWeights } from '../src/compress/compressed-weights.js';
import { compressSpec } from '../src/compress/spec.js';
import type { WeightSource } from '../src/io/weights.js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MODEL } from '../src/run/load.js';
import { measureFidelity } from '../src/eval/fidelity.js';
import { resolveInputs, type ProbeSequence } from '../src/eval/inputs.js';
import { loadCheckpoint, type Checkpoint } from '../src/model/checkpoint.js';
import { fp16Proxy, prepareProxy, type ProxyData } from '../src/learn/fp16-proxy.js';
import { readerSensitivity } from '../src/learn/stream-readers.js';
import { learnRotation, objective, optimise, type LearnedRotation } from '../src/learn/learned.js';
import { sampleWeights, weightError } from '../src/learn/weight-error.js';
import {
  cayleyStep,
  identityMatrix,
  newtonSchulz,
  orthogonalityError,
  orthonormalizeColumns,
} from '../src/learn/stiefel.js';
import { float32Pass, unitRows } from '../src/learn/stream-rows.js';
import { HadamardRotation } from '../src/rotation/index.js';
import { shutdownRuntime } from '../src/runtime/shutdown.js';
import { prepareVariant } from '../src/model/variants.js';

const FX = join(import.meta.dirname, 'fixtures');

/** Deterministic uniforms in [-0.5, 0.5) from an LCG. */
function uniforms(count: number, seed: number): Float64Array {
  let s = seed >>> 0;
  return Float64Array.from({ length: count }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

function randomOrthogonal(n: number, seed: number): Float32Array {
  return Float32Array.from(orthonormalizeColumns(uniforms(n * n, seed), n));
}

/** A random symmetric positive definite matrix with trace n (a stand-in for the readers' sensitivity). */
function randomSensitivity(n: number, seed: number): Float32Array {
  const a = uniforms(n * n, seed);
  const m = new Float32Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) m[i * n + j] += a[k * n + i]! * a[k * n + j]!;
  let trace = 0;
  for (let i = 0; i < n; i++) trace += m[i * n + i]!;
  return m.map((v) => (v * n) / trace);
}

/** Rows with a few heavy channels, like a residual stream with outliers. */
function heavyRows(count: number, n: number, seed: number) {
  const u = uniforms(count * n, seed);
  const rows = Array.from({ length: count }, (_, r) => {
    const x = Array.from(u.subarray(r * n, (r + 1) * n));
    x[r % 3] = (x[r % 3] ?? 0) + 20 * (1 + (r % 5)); // channels 0-2 carry outliers of 20-100
    return x;
  });
  return unitRows(rows, n);
}

function randomSeqs(ck: Checkpoint, count: number, length: number): ProbeSequence[] {
  const c = ck.config;
  const ids = {
    vocabSize: c.vocabSize,
    maxLen: c.maxPositions,
    clsTokenId: c.clsTokenId,
    sepTokenId: c.sepTokenId,
    special: [c.padTokenId],
  };
  return Array.from({ length: count }, (_, i) => resolveInputs({ random: length, seed: i }, ids)[0]!);
}

describe('orthogonal-group steps', () => {
  const n = 24;
  it('a Cayley step stays orthogonal and moves along minus the Riemannian gradient', () => {
    const q = randomOrthogonal(n, 1);
    const g = Float32Array.from(uniforms(n * n, 2));
    const alpha = 1e-3;
    const next = cayleyStep(q, g, n, alpha);
    expect(orthogonalityError(next, n)).toBeLessThan(1e-5);
    // First order: Q' ≈ Q − α·(G − Q·Gᵀ·Q).
    const qgtq = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) for (let l = 0; l < n; l++) s += q[i * n + k]! * g[l * n + k]! * q[l * n + j]!;
        qgtq[i * n + j] = s;
      }
    }
    let err = 0;
    let step = 0;
    for (let i = 0; i < n * n; i++) {
      const predicted = q[i]! - alpha * (g[i]! - qgtq[i]!);
      err = Math.max(err, Math.abs(next[i]! - predicted));
      step = Math.max(step, Math.abs(next[i]! - q[i]!));
    }
    expect(step).toBeGreaterThan(1e-4);
    expect(err).toBeLessThan(0.01 * step);
  });

  it('Newton–Schulz and Gram–Schmidt bring a nearly orthogonal matrix back', () => {
    const q = randomOrthogonal(n, 3);
    const noise = uniforms(n * n, 4);
    for (let i = 0; i < q.length; i++) q[i] += 1e-3 * noise[i]!;
    expect(orthogonalityError(q, n)).toBeGreaterThan(1e-4);
    newtonSchulz(q, n);
    expect(orthogonalityError(q, n)).toBeLessThan(1e-5);
    expect(orthogonalityError(orthonormalizeColumns(q, n), n)).toBeLessThan(1e-12);
  });
});

describe('float16 proxy', () => {
  const n = 16;
  const rows = heavyRows(40, n, 5);
  const x = prepareProxy(rows, identityMatrix(n));

  it('is lowest for the axis-aligned stream and highest when a Hadamard rotation spreads it', () => {
    const limit = 1e9;
    const id = fp16Proxy(x, identityMatrix(n), { limit }).noise;
    const had = fp16Proxy(x, new HadamardRotation(n, 0).rightMul(identityMatrix(n), n, n), { limit }).noise;
    expect(id).toBeLessThan(0.5 * had);
    expect(had).toBeLessThanOrEqual(1 - 1 / n + 1e-6);
  });

  it('with M = I is the relative tangential noise 1 − Σv⁴', () => {
    const q = randomOrthogonal(n, 11);
    let expected = 0;
    for (let r = 0; r < rows.count; r++) {
      let s4 = 0;
      for (let i = 0; i < n; i++) {
        let v = 0;
        for (let k = 0; k < n; k++) v += rows.rows[r * n + k]! * q[k * n + i]!;
        s4 += v ** 4;
      }
      expected += (1 - s4) / rows.count;
    }
    expect(fp16Proxy(x, q, { limit: 1e9 }).noise).toBeCloseTo(expected, 5);
  });

  for (const [name, limit, data] of [
    ['M = I, without the overflow barrier', 1e9, x],
    ['M = I, with the barrier', 40, x],
    ['a random M, with the barrier', 40, prepareProxy(rows, randomSensitivity(n, 12))],
  ] as [string, number, ProxyData][]) {
    it(`analytic gradient matches finite differences (${name})`, () => {
      const x = data;
      const q = randomOrthogonal(n, 6);
      const grad = new Float32Array(n * n);
      const at = fp16Proxy(x, q, { limit }, grad);
      if (limit < 1e9) expect(at.barrier).toBeGreaterThan(0);
      else expect(at.barrier).toBe(0);
      for (const seed of [7, 8, 9]) {
        const e = uniforms(n * n, seed);
        const h = 1e-3;
        const shifted = (s: number) =>
          fp16Proxy(
            x,
            Float32Array.from(q, (v, i) => v + s * h * e[i]!),
            { limit },
          ).loss;
        const numeric = (shifted(1) - shifted(-1)) / (2 * h);
        let analytic = 0;
        for (let i = 0; i < n * n; i++) analytic += grad[i]! * e[i]!;
        expect(Math.abs(numeric - analytic)).toBeLessThan(2e-3 * Math.max(1, Math.abs(analytic)));
      }
    });
  }

  it('minibatch gradient over all rows equals the full gradient', () => {
    const q = randomOrthogonal(n, 10);
    const x = prepareProxy(rows, randomSensitivity(n, 13));
    const full = new Float32Array(n * n);
    const picked = new Float32Array(n * n);
    fp16Proxy(x, q, { limit: 40 }, full);
    fp16Proxy(
      x,
      q,
      { limit: 40 },
      picked,
      Uint32Array.from({ length: x.count }, (_, i) => i),
    );
    for (let i = 0; i < full.length; i++) expect(picked[i]).toBeCloseTo(full[i]!, 6);
  });
});

describe('optimising the proxy on a trained model (mini-trained)', () => {
  let ck: Checkpoint;
  let rows: ProxyData;
  beforeAll(async () => {
    ck = loadCheckpoint(DEFAULT_MODEL);
    rows = prepareProxy((await float32Pass(ck, randomSeqs(ck, 2, 24), 4096)).stream, readerSensitivity(ck));
  });
  afterAll(async () => {
    ck.close();
    await shutdownRuntime();
  });

  for (const start of ['identity', 'hadamard'] as const) {
    it(`lowers the proxy from the ${start} start and stays orthogonal`, () => {
      const n = rows.n;
      const q0 =
        start === 'identity' ? identityMatrix(n) : new HadamardRotation(n, 0).rightMul(identityMatrix(n), n, n);
      const limit = 0.8 * 65504;
      const before = fp16Proxy(rows, q0, { limit }).loss;
      const seen: number[] = [];
      const r = optimise(
        rows,
        q0,
        { limit },
        { seed: 1, maxSteps: 15, budget: 60, tick: () => {}, onStep: (_, __, p) => seen.push(p.loss) },
      );
      expect(r.steps).toBe(15);
      expect(seen).toHaveLength(15);
      expect(r.proxy).toBeLessThan(0.97 * before);
      expect(fp16Proxy(rows, r.q, { limit }).loss).toBeCloseTo(r.proxy, 4);
      expect(orthogonalityError(r.q, n)).toBeLessThan(1e-5);
    });
  }
});

describe('learnRotation (tiny-mlm)', () => {
  let ck: Checkpoint;
  let calibration: ProbeSequence[];
  let first: LearnedRotation;
  const opts = () => ({
    seed: 3,
    calibration,
    norm: 'l2' as const,
    precision: 'fp16' as const,
    maxSteps: 8,
    budgetSeconds: 30,
  });
  beforeAll(async () => {
    ck = loadCheckpoint(join(FX, 'tiny-mlm'));
    calibration = randomSeqs(ck, 2, 20);
    first = await learnRotation(ck, opts());
  });
  afterAll(() => ck.close());

  it('returns an orthogonal matrix and a report of every candidate', () => {
    const n = ck.config.hidden;
    expect(first.matrix).toHaveLength(n * n);
    expect(orthogonalityError(first.matrix, n)).toBeLessThan(1e-5);
    const r = first.report;
    expect(r.steps).toBe(8);
    expect(r.tokens).toBe(44);
    expect(r.rows).toBe(44 * (ck.config.numLayers + 2));
    for (const c of Object.values(r.candidates)) {
      expect(Number.isFinite(c.kl) && Number.isFinite(c.proxy)).toBe(true);
      expect(c.median_kl).toBeLessThanOrEqual(c.kl * 44); // a median token cannot exceed the sum
    }
    // The start is the candidate with the lower proxy; a kept rotation beats the better candidate's median
    // token KL; a discarded one falls back to the candidate with the lower median token KL.
    const c = r.candidates;
    expect(r.start).toBe(c.hadamard.proxy < c.folded.proxy ? 'hadamard' : 'folded');
    const better = c.hadamard.median_kl < c.folded.median_kl ? 'hadamard' : 'folded';
    if (r.chosen === 'learned') expect(c.learned.median_kl).toBeLessThan(c[better].median_kl);
    else expect(r.chosen).toBe(better);
    expect(r.note.length).toBeGreaterThan(0);
  });

  it('is deterministic for a seed', async () => {
    const again = await learnRotation(ck, opts());
    expect(Buffer.from(again.matrix.buffer).equals(Buffer.from(first.matrix.buffer))).toBe(true);
    expect(again.report.candidates).toEqual(first.report.candidates);
    expect(again.report.chosen).toBe(first.report.chosen);
  });

  it('reports progress up to the total', async () => {
    const calls: [number, number][] = [];
    await learnRotation(ck, { ...opts(), maxSteps: 3, onProgress: (d, t) => calls.push([d, t]) });
    const total = calls[0]![1];
    expect(calls.every(([, t]) => t === total)).toBe(true);
    expect(calls.at(-1)![0]).toBe(total);
    expect(calls.map(([d]) => d)).toEqual([...calls.map(([d]) => d)].sort((a, b) => a - b));
  });

  it('returns the lowest median token KL of the three on the calibration tokens, means measured independently', async () => {
    const kl = async (rotation: 'none' | 'hadamard' | 'learned') => {
      const v = prepareVariant(
        ck,
        { fold: true, rotation, norm: 'l2', seed: 3 },
        rotation === 'learned' ? first.rotation : undefined,
      );
      return (await measureFidelity(ck, v, calibration, 'fp16', 'random ids')).kl;
    };
    const [folded, hadamard, returned] = [await kl('none'), await kl('hadamard'), await kl('learned')];
    const c = first.report.candidates;
    expect(c.folded.kl).toBeCloseTo(folded, 12);
    expect(c.hadamard.kl).toBeCloseTo(hadamard, 12);
    expect(c[first.report.chosen].kl).toBeCloseTo(returned, 12);
    expect(c[first.report.chosen].median_kl).toBeLessThanOrEqual(Math.min(c.folded.median_kl, c.hadamard.median_kl));
    // The mean may exceed the lowest mean only within the spread of equally good rotations (MEAN_GUARD).
    expect(returned).toBeLessThanOrEqual(3 * Math.min(folded, hadamard));
  });

  it('judges the candidates as a compressed package computes when given the stored form (convert --compress)', async () => {
    const spec = compressSpec({ mode: 'pal2', target: 'iOS18', weights: 'fp16' });
    const seen: string[] = [];
    const stored = (w: WeightSource) => (seen.push('stored'), new CompressedWeights(w, spec));
    const compressed = await learnRotation(ck, { ...opts(), maxSteps: 0, stored });
    expect(seen).toHaveLength(3); // folded, Hadamard, learned
    for (const c of ['folded', 'hadamard'] as const)
      expect(compressed.report.candidates[c].kl, c).toBeGreaterThan(100 * first.report.candidates[c].kl);
  });

  it('rejects bad options with typed errors', async () => {
    await expect(learnRotation(ck, { ...opts(), calibration: [] })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(learnRotation(ck, { ...opts(), maxSteps: -1 })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(learnRotation(ck, { ...opts(), seed: -1 })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
  });
});

describe("the compressed objective (--rotation learned --compress, SpinQuant's)", () => {
  let ck: Checkpoint;
  let calibration: ProbeSequence[];
  let rows: ProxyData;
  const int4 = compressSpec({ mode: 'int4', target: 'iOS18', weights: 'fp16', blockSize: 16 });
  const limit = 0.8 * 65504;
  beforeAll(async () => {
    ck = loadCheckpoint(join(FX, 'tiny-mlm'));
    calibration = randomSeqs(ck, 2, 20);
    rows = prepareProxy((await float32Pass(ck, calibration, 4096)).stream, readerSensitivity(ck));
  });
  afterAll(() => ck.close());

  it("adds the rotated weights' quantization error to the float16 proxy, more for fewer bits", () => {
    const n = ck.config.hidden;
    const q = new HadamardRotation(n, 0).rightMul(identityMatrix(n), n, n);
    const fp16 = fp16Proxy(rows, q, { limit }).loss;
    const errors = (['pal8', 'pal4', 'pal2'] as const).map((mode) =>
      weightError(sampleWeights(ck, compressSpec({ mode, target: 'iOS18', weights: 'fp16' }), 0), q),
    );
    expect(errors[0]).toBeGreaterThan(0);
    expect(errors[1]).toBeGreaterThan(4 * errors[0]!);
    expect(errors[2]).toBeGreaterThan(4 * errors[1]!);
    const samples = sampleWeights(ck, int4, 0);
    // Embedding, and all four matrices of each of the 4 layers.
    expect(samples.samples.map((s) => s.name)).toHaveLength(1 + 4 * ck.config.numLayers);
    const v = objective(rows, q, { limit }, samples);
    expect(v.weights).toBeCloseTo(weightError(samples, q), 12);
    expect(v.loss).toBeCloseTo(fp16 + 2 ** 24 * v.weights!, 6);
    expect(v.loss).toBeGreaterThan(100 * fp16); // compression's error dominates, as it dominates the KL
  });

  it('its straight-through gradient is a descent direction for the weight error', () => {
    const n = ck.config.hidden;
    const samples = sampleWeights(ck, int4, 0);
    const q = identityMatrix(n);
    const grad = new Float32Array(n * n);
    const before = weightError(samples, q, grad);
    const a = Math.hypot(...grad);
    const after = weightError(samples, cayleyStep(q, grad, n, 0.02 / a));
    expect(after).toBeLessThan(before);
  });

  it('learnRotation with --compress int4 lowers the compressed objective below its start, and reports it', async () => {
    const opts = {
      seed: 3,
      calibration,
      norm: 'l2' as const,
      precision: 'fp16' as const,
      maxSteps: 20,
      budgetSeconds: 30,
    };
    const stored = (w: WeightSource) => new CompressedWeights(w, int4);
    const compressed = await learnRotation(ck, { ...opts, compress: int4, stored });
    const r = compressed.report;
    expect(r.objective).toBe('fp16 proxy + int4 weight error');
    const c = r.candidates;
    for (const k of ['folded', 'hadamard', 'learned'] as const) expect(c[k].weight_error, k).toBeGreaterThan(0);
    expect(c.learned.proxy).toBeLessThan(0.97 * c[r.start].proxy);
    expect(c.learned.weight_error!).toBeLessThan(0.97 * c[r.start].weight_error!);
  });

  it('moves Q where the float16 objective alone would not: lower int4 error than the Q learned without it', () => {
    const n = ck.config.hidden;
    const samples = sampleWeights(ck, int4, 3);
    const run = (weights?: typeof samples) =>
      optimise(
        rows,
        identityMatrix(n),
        { limit },
        { seed: 3, maxSteps: 20, budget: 30, tick: () => {}, ...(weights ? { weights } : {}) },
      );
    const withError = run(samples).q;
    const without = run().q;
    const start = weightError(samples, identityMatrix(n));
    expect(weightError(samples, withError)).toBeLessThan(0.97 * start);
    expect(weightError(samples, withError)).toBeLessThan(0.97 * weightError(samples, without));
  });
});
