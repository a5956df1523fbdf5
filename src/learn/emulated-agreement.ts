// The measured quantity that rotation learning is judged by: the model folded with a rotation, run in a
// float16 emulation, against float32 reference outputs (KL over real tokens, top-1, ...). One fold and one
// emulated pass per rotation: the expensive check that the proxy stands in for during optimisation.
//
// Besides the mean KL over tokens, the median token's KL: the mean is dominated by the few tokens whose top
// predictions nearly tie (one token can carry half of it), and which rounding pattern hits them is luck, so
// two rotations of equal quality can differ several-fold in mean KL; the median follows the systematic error.

import { Engine } from '../run/engine.js';
import type { Sequence } from '../run/runner.js';
import { AgreementMeter, type Agreement } from '../eval/compare.js';
import type { ModelSource } from '../model/options.js';
import type { Precision } from '../runtime/numerics.js';
import { shutdownRuntime } from '../runtime/shutdown.js';
import { foldWeights } from '../rotation/fold.js';
import type { Rotation } from '../rotation/rotation.js';
import type { WeightSource } from '../io/weights.js';
import { headColumns, realPositions, type ReferenceOutput } from './stream-rows.js';

/** Agreement over all tokens, and the median of the per-token KL (over finite tokens). */
export interface EmulatedAgreement extends Agreement {
  median_kl: number;
}

/** Agreement of the model folded with `rotation` (norm form `norm`, emulation `precision`) with `reference`. */
export async function emulatedAgreement(
  src: ModelSource,
  rotation: Rotation,
  norm: 'l2' | 'rms',
  precision: Precision,
  seqs: Sequence[],
  reference: ReferenceOutput[],
  onSequence?: () => void,
  /** What the package does to the folded weights before they run (compression), if anything. */
  stored: (w: WeightSource) => WeightSource = (w) => w,
): Promise<EmulatedAgreement> {
  const engine = new Engine(
    { ...src, weights: stored(foldWeights(src.weights, src.config, rotation)) },
    { precision, norm },
  );
  const result = await agreementOf(engine, seqs, reference, onSequence);
  // The folded weights are shared with the kernel workers; stopping them lets the next variant reuse the memory.
  await shutdownRuntime();
  return result;
}

/** Agreement of an engine's outputs with `reference` over the real tokens of `seqs`. */
export async function agreementOf(
  engine: Engine,
  seqs: Sequence[],
  reference: ReferenceOutput[],
  onSequence?: () => void,
): Promise<EmulatedAgreement> {
  const meter = new AgreementMeter();
  const perToken: number[] = [];
  for (const [i, s] of seqs.entries()) {
    const out = headColumns((await engine.forward(s)).outputs);
    const ref = reference[i]!;
    for (const p of out.P === 1 ? [0] : realPositions(s)) {
      meter.add(ref.data, out.data, out.V, out.P, [p]);
      const one = new AgreementMeter();
      one.add(ref.data, out.data, out.V, out.P, [p]);
      const r = one.result();
      if (r.non_finite === 0) perToken.push(r.kl);
    }
    onSequence?.();
  }
  return { ...meter.result(), median_kl: median(perToken) };
}

/** The median (the mean of the middle two for an even count); Infinity when empty (nothing finite). */
function median(values: number[]): number {
  if (values.length === 0) return Infinity;
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : 0.5 * (v[mid - 1]! + v[mid]!);
}
