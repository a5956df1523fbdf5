// The measured quantity that rotation learning is judged by: the model folded with a rotation, run in a
// float16 emulation, against float32 reference outputs (KL over real tokens, top-1, ...). One fold and one
// emulated pass per rotation: the expensive check that the proxy stands in for during optimisation.

import { Engine, type Sequence } from '../engine.js';
import { AgreementMeter, type Agreement } from '../eval/compare.js';
import type { ModelSource } from '../model.js';
import type { Precision } from '../runtime/numerics.js';
import { shutdownRuntime } from '../runtime/shutdown.js';
import { foldWeights } from './fold.js';
import type { Rotation } from './rotation.js';
import { headColumns, realPositions, type ReferenceOutput } from './stream-rows.js';

/** Agreement of the model folded with `rotation` (norm form `norm`, emulation `precision`) with `reference`. */
export async function emulatedAgreement(
  src: ModelSource,
  rotation: Rotation,
  norm: 'l2' | 'rms',
  precision: Precision,
  seqs: Sequence[],
  reference: ReferenceOutput[],
  onSequence?: () => void,
): Promise<Agreement> {
  const engine = new Engine({ ...src, weights: foldWeights(src.weights, src.config, rotation) }, { precision, norm });
  const meter = new AgreementMeter();
  for (const [i, s] of seqs.entries()) {
    const out = headColumns((await engine.forward(s)).outputs);
    const ref = reference[i]!;
    meter.add(ref.data, out.data, out.V, out.P, out.P === 1 ? undefined : realPositions(s));
    onSequence?.();
  }
  // The folded weights are shared with the kernel workers; stopping them lets the next variant reuse the memory.
  await shutdownRuntime();
  return meter.result();
}
