// A learned rotation of the residual stream (SpinQuant-style), for float16 and, with --compress, for the
// package's quantized weights.
//
// 1. One float32 pass of the plain model over the calibration tokens gives the reference outputs and the
//    stream rows X (stream-rows.ts); the readers of the stream give the sensitivity M (stream-readers.ts).
// 2. The float16 emulation of the two fixed candidates, folded (Q = I) and Hadamard (seeded), is measured
//    against the reference: mean KL over real tokens and the median token's KL. The mean rides on the few
//    tokens whose top predictions nearly tie, and which rounding pattern hits them is luck: on 130 tokens
//    of synth-base-massive Hadamard's mean is half of folded's while its median, and its mean on every
//    other input, are 5x worse (docs/FIDELITY.md). So candidates are ranked by the median, and the mean
//    only guards against real tails (overflow on a few tokens). The start is the candidate with the
//    lower proxy: the proxy is what the optimisation follows.
// 3. Cayley SGD on the orthogonal group (stiefel.ts) minimises the proxy of fp16-proxy.ts over X, on seeded
//    minibatches of rows, within a step count and a time budget; the Q with the lowest full-data proxy is
//    kept. Refolding a base-size model costs seconds, so the model is never refolded during optimisation.
//    With --compress the proxy adds the rotated weights' quantization error (weight-error.ts, SpinQuant's
//    objective) in the same units, relative squared error over float16's κ = 2⁻²⁴: compression's error is
//    then most of the objective, as it is most of the measured KL.
// 4. The learned Q is folded once and measured like the candidates. It is returned only if its median token
//    KL beats the better candidate's by MEDIAN_GAIN and its mean KL is within MEAN_GUARD of that
//    candidate's; otherwise that candidate is returned, and the report says so.
//
// Deterministic for a seed: minibatches come from a seeded generator and every product runs on one thread.

import type { Sequence } from '../run/runner.js';
import { ModernBertError } from '../errors.js';
import type { ModelSource } from '../model/options.js';
import type { Precision } from '../runtime/numerics.js';
import { F16_MAX } from '../numeric/fp16.js';
import { DenseRotation } from '../rotation/dense-rotation.js';
import { emulatedAgreement, type EmulatedAgreement } from './emulated-agreement.js';
import { fp16Proxy, prepareProxy, type ProxyData, type ProxyOptions, type ProxyValue } from './fp16-proxy.js';
import type { CompressSpec } from '../compress/spec.js';
import { sampleWeights, weightError, type WeightSamples } from './weight-error.js';
import { HadamardRotation } from '../rotation/hadamard-rotation.js';
import { readerSensitivity } from './stream-readers.js';
import { IdentityRotation, type Rotation } from '../rotation/rotation.js';
import {
  cayleyStep,
  frobenius,
  identityMatrix,
  newtonSchulz,
  orthonormalizeColumns,
  skewFromGradient,
} from './stiefel.js';
import { splitmix32 } from '../numeric/prng.js';
import { float32Pass } from './stream-rows.js';
import type { WeightSource } from '../io/weights.js';
import type { RotationKind } from '../model/variants.js';

export interface LearnOptions {
  /** Seed of the Hadamard candidate and of the minibatches. */
  seed: number;
  /** Calibration sequences (real tokens only are used). */
  calibration: Sequence[];
  /** Norm form of the folded model: 'l2' (overflow-safe) or 'rms' (x*x, overflows past |x| ≈ 256). */
  norm: 'l2' | 'rms';
  /** Float16 emulation that candidates are judged in. */
  precision: Precision;
  /** Seconds the optimisation may take (the float32 pass and the measurements come on top). Default 60. */
  budgetSeconds?: number;
  /** Most Cayley steps. Default 200. */
  maxSteps?: number;
  /** Most stream rows kept (evenly spaced over tokens and layers). Default 8192. */
  maxRows?: number;
  /** Progress in work units: one per calibration pass and measurement, one per step. */
  onProgress?: (done: number, total: number) => void;
  /**
   * The stored form of the folded weights (convert --compress): candidates and the learned Q are then
   * measured as the compressed package computes, so the choice keeps what measures best compressed.
   */
  stored?: (w: WeightSource) => WeightSource;
  /** The compression of the package: the objective then includes the rotated weights' quantization error. */
  compress?: CompressSpec;
  /** Called after every step with the current Q and its minibatch proxy (for studies of the proxy). */
  onStep?: (step: number, q: Float32Array, proxy: ProxyValue) => void;
}

export type Candidate = 'folded' | 'hadamard' | 'learned';

/** KL and agreement of one candidate in the judged emulation. */
export interface CandidateResult {
  /** The objective: the float16 proxy, plus the weights' quantization error when compressed. */
  proxy: number;
  /** Mean relative squared quantization error of the sampled rotated weights (compressed only). */
  weight_error?: number;
  /** Mean KL over the calibration tokens (Infinity when any output is non-finite). */
  kl: number;
  /** KL of the median calibration token. */
  median_kl: number;
  top1: number;
  non_finite: number;
}

export interface LearnReport {
  /** What was returned: the learned Q, or the candidate that measured better. */
  chosen: Candidate;
  start: 'folded' | 'hadamard';
  precision: Precision;
  norm: 'l2' | 'rms';
  seed: number;
  /** What the optimisation minimised: 'fp16' (the proxy), or the proxy plus the compressed weights' error. */
  objective: string;
  steps: number;
  /** Rows of the stream the proxy saw, and the calibration tokens they came from. */
  rows: number;
  tokens: number;
  candidates: Record<Candidate, CandidateResult>;
  seconds: { calibration: number; measure: number; optimise: number; total: number };
  /** One sentence on the choice, for the CLI and the package metadata. */
  note: string;
}

export interface LearnedRotation {
  rotation: Rotation;
  /** Q, row-major n×n (the identity or the Hadamard matrix when a candidate was chosen). */
  matrix: Float32Array;
  report: LearnReport;
}

/**
 * Stream values are kept below this fraction of what float16 holds (65504; l2 norm) or of what the x*x norm
 * can square (256). The x*x form keeps more headroom: a square overflows as soon as a value passes 256, and
 * the rows miss the state between attention and MLP, which the MLP's norm squares too (at 0.8 a learned Q
 * for a synth-base with a channel near 350 overflowed there; at 0.5 it beat Hadamard: docs/FIDELITY.md).
 */
const LIMIT_MARGIN = { l2: 0.8, rms: 0.5 } as const;
/** Rows per minibatch. */
const BATCH_ROWS = 2048;
/** Largest rotation angle (radians, as α‖A‖_F) of the first step; it decays to 0 along a cosine. */
const FIRST_ANGLE = 0.2;
/** Relative margin by which the learned Q's median token KL must beat the better candidate's to be kept. */
const MEDIAN_GAIN = 0.05;
/**
 * How much higher than the better candidate's the learned Q's mean KL may be: the spread of mean KL among
 * equally good rotations (Hadamard seeds 0-2 on synth-base-massive's 130 calibration tokens: 2.6x), so
 * that only a real tail (a few tokens overflowing) rejects it.
 */
const MEAN_GUARD = 3;
/** Newton–Schulz clean-up every this many steps (the Cayley fixed point drifts off the group slowly). */
const CLEANUP_EVERY = 5;
/** The weights' relative squared error in units of the proxy's: float16's relative rounding variance κ ≈ 2⁻²⁴. */
const WEIGHT_ERROR_SCALE = 2 ** 24;

/** The objective at Q on rows `pick` (all when absent): the float16 proxy plus, compressed, the weights' error. */
export function objective(
  x: ProxyData,
  q: Float32Array,
  o: ProxyOptions,
  weights?: WeightSamples,
  grad?: Float32Array,
  pick?: Uint32Array,
): ProxyValue {
  const value = fp16Proxy(x, q, o, grad, pick);
  if (!weights) return value;
  const error = weightError(weights, q, grad, WEIGHT_ERROR_SCALE);
  return { ...value, loss: value.loss + WEIGHT_ERROR_SCALE * error, weights: error };
}

/** Learns an orthogonal Q for the float16 model; returns it, or the better fixed candidate, with a report. */
export async function learnRotation(src: ModelSource, o: LearnOptions): Promise<LearnedRotation> {
  const t0 = performance.now();
  const n = src.config.hidden;
  const maxSteps = o.maxSteps ?? 200;
  const budget = o.budgetSeconds ?? 60;
  if (o.calibration.length === 0)
    throw new ModernBertError('BAD_ARGUMENT', 'rotation learning needs at least one calibration sequence');
  if (!Number.isInteger(maxSteps) || maxSteps < 0)
    throw new ModernBertError('BAD_ARGUMENT', `maxSteps must be a non-negative integer, got ${maxSteps}`);
  if (!(budget >= 0)) throw new ModernBertError('BAD_ARGUMENT', `budgetSeconds must be non-negative, got ${budget}`);
  const hadamard = new HadamardRotation(n, o.seed); // validates the seed and the order first
  const seqs = o.calibration.length;
  const total = seqs * 4 + maxSteps;
  let done = 0;
  const tick = () => o.onProgress?.(++done, total);

  // 1. Reference outputs and stream rows.
  const pass = await float32Pass(src, o.calibration, o.maxRows ?? 8192, tick);
  const x = prepareProxy(pass.stream, readerSensitivity(src));
  const tCal = performance.now();
  const proxyOpts = { limit: LIMIT_MARGIN[o.norm] * (o.norm === 'rms' ? Math.sqrt(F16_MAX) : F16_MAX) };
  const weights = o.compress ? sampleWeights(src, o.compress, o.seed) : undefined;
  const proxyAt = (q: Float32Array) => {
    const v = objective(x, q, proxyOpts, weights);
    return { proxy: v.loss, ...(v.weights !== undefined ? { weight_error: v.weights } : {}) };
  };

  // 2. The fixed candidates.
  const measure = async (r: Rotation) =>
    brief(await emulatedAgreement(src, r, o.norm, o.precision, o.calibration, pass.outputs, tick, o.stored));
  const identityQ = identityMatrix(n);
  const hadamardQ = hadamard.rightMul(identityQ, n, n);
  const folded = { ...proxyAt(identityQ), ...(await measure(new IdentityRotation(n))) };
  const had = { ...proxyAt(hadamardQ), ...(await measure(hadamard)) };
  const start = had.proxy < folded.proxy ? 'hadamard' : 'folded';
  let measureMs = performance.now() - tCal;

  // 3. Cayley SGD on the proxy.
  const tOpt = performance.now();
  const opt = optimise(x, start === 'hadamard' ? hadamardQ : identityQ, proxyOpts, {
    seed: o.seed,
    maxSteps,
    budget,
    onStep: o.onStep,
    tick,
    weights,
  });
  done = seqs * 3 + maxSteps; // steps cut short by the budget count as done
  o.onProgress?.(done, total);
  const optMs = performance.now() - tOpt;

  // 4. Measure the learned Q and choose.
  const tCheck = performance.now();
  const learnedRot = new DenseRotation(n, opt.q);
  const learned = { ...proxyAt(opt.q), ...(await measure(learnedRot)) };
  measureMs += performance.now() - tCheck;
  const hadamardBetter = had.median_kl < folded.median_kl || (had.median_kl === folded.median_kl && had.kl < folded.kl);
  const best = hadamardBetter
    ? { name: 'hadamard' as const, r: had, rot: hadamard as Rotation, q: hadamardQ }
    : { name: 'folded' as const, r: folded, rot: new IdentityRotation(n) as Rotation, q: identityQ };
  const keep =
    Number.isFinite(learned.kl) &&
    learned.median_kl <= (1 - MEDIAN_GAIN) * best.r.median_kl &&
    learned.kl <= MEAN_GUARD * best.r.kl;
  const chosen: Candidate = keep ? 'learned' : best.name;
  const fmt = (v: number) => (Number.isFinite(v) ? v.toExponential(2) : String(v));
  const kls = (r: CandidateResult) => `${fmt(r.kl)} (median token ${fmt(r.median_kl)})`;
  const note = keep
    ? `learned rotation kept: ${o.precision} KL ${kls(learned)} against ${kls(folded)} folded and ${kls(had)} Hadamard on the calibration tokens`
    : `learned rotation discarded (${o.precision} KL ${kls(learned)} against ${kls(folded)} folded and ${kls(had)} Hadamard on the calibration tokens; it must beat the better one's median token KL by ${100 * MEDIAN_GAIN}%, within ${MEAN_GUARD}x of its KL): using ${best.name}`;
  const seconds = {
    calibration: (tCal - t0) / 1000,
    measure: measureMs / 1000,
    optimise: optMs / 1000,
    total: (performance.now() - t0) / 1000,
  };
  return {
    rotation: keep ? learnedRot : best.rot,
    matrix: keep ? opt.q : best.q,
    report: {
      chosen,
      start,
      precision: o.precision,
      norm: o.norm,
      seed: o.seed,
      objective: o.compress ? `fp16 proxy + ${o.compress.mode} weight error` : 'fp16 proxy',
      steps: opt.steps,
      rows: x.count,
      tokens: pass.tokens,
      candidates: { folded, hadamard: had, learned },
      seconds,
      note,
    },
  };
}

/** The rotation a conversion uses after learning: 'learned' when kept, else the candidate that measured better. */
export function keptRotation(report: LearnReport): RotationKind {
  return report.chosen === 'learned' ? 'learned' : report.chosen === 'hadamard' ? 'hadamard' : 'none';
}

function brief(a: EmulatedAgreement): Omit<CandidateResult, 'proxy'> {
  return { kl: a.kl, median_kl: a.median_kl, top1: a.top1, non_finite: a.non_finite };
}

interface OptimiseOptions {
  seed: number;
  maxSteps: number;
  budget: number;
  /** Rotation angle of the first step (default FIRST_ANGLE). */
  firstAngle?: number;
  onStep?: (step: number, q: Float32Array, proxy: ProxyValue) => void;
  tick: () => void;
  /** Sampled weights of a compressed package: their quantization error joins the objective. */
  weights?: WeightSamples;
}

/**
 * Cayley SGD from `q0`: each step takes a seeded minibatch of rows, a step of angle FIRST_ANGLE·(cosine
 * decay), and every CLEANUP_EVERY steps a Newton–Schulz clean-up. Returns the Q with the lowest full-data
 * proxy among the start and the checkpoints, orthonormalized in float64.
 */
export function optimise(
  x: ProxyData,
  q0: Float32Array,
  proxyOpts: ProxyOptions,
  o: OptimiseOptions,
): { q: Float32Array; steps: number; proxy: number } {
  const n = x.n;
  const deadline = performance.now() + o.budget * 1000;
  const rng = splitmix32(o.seed ^ 0x5eed1e55);
  const batch = Math.min(BATCH_ROWS, x.count);
  const pick = new Uint32Array(batch);
  const grad = new Float32Array(n * n);
  let q: Float32Array = Float32Array.from(q0);
  const lossAt = (q: Float32Array) => objective(x, q, proxyOpts, o.weights).loss;
  let best: { q: Float32Array; proxy: number } = { q: Float32Array.from(q0), proxy: lossAt(q0) };
  let steps = 0;
  while (steps < o.maxSteps && performance.now() < deadline) {
    // Sampling without replacement would need a shuffle of all rows; with replacement is as good here.
    for (let i = 0; i < batch; i++) pick[i] = rng() % x.count;
    const value = objective(x, q, proxyOpts, o.weights, grad, batch < x.count ? pick : undefined);
    const a = frobenius(skewFromGradient(q, grad, n));
    if (!(a > 0)) break; // a stationary point: nothing left to follow
    const angle = (o.firstAngle ?? FIRST_ANGLE) * 0.5 * (1 + Math.cos((Math.PI * steps) / Math.max(o.maxSteps, 1)));
    q = cayleyStep(q, grad, n, angle / a);
    steps++;
    if (steps % CLEANUP_EVERY === 0 || steps === o.maxSteps) newtonSchulz(q, n);
    o.onStep?.(steps, q, value);
    o.tick();
    if (steps % CLEANUP_EVERY === 0 || steps === o.maxSteps) {
      const full = lossAt(q);
      if (full < best.proxy) best = { q: Float32Array.from(q), proxy: full };
    }
  }
  // A last check of the final Q (a budget stop can fall between checkpoints).
  newtonSchulz(q, n);
  const last = lossAt(q);
  if (last < best.proxy) best = { q, proxy: last };
  return { q: Float32Array.from(orthonormalizeColumns(best.q, n)), steps, proxy: best.proxy };
}
