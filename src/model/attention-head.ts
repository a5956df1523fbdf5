// One attention head over one block of queries, in Apple's two per-head einsums (ml-ane-transformers):
// scores with the keys on the channel axis, so that softmax runs over axis 1. Full and banded attention
// both end here, so the four ops are always consecutive: the CPU interpreter fuses them into one kernel
// (graph/fused-attention.ts) and the ONNX export batches them over heads (onnx/batch-heads.ts).

import { i32, str, type Val } from '../graph/builder.js';
import type { ModelGraph } from './model-graph.js';

/** softmax(k . q + mask) weighting v: k (1, K, X, D), q (1, D, X, Q), mask (1, K, X|1, Q|1), v (1, D, X, K) -> (1, D, X, Q). */
export function attentionHead(model: ModelGraph, k: Val, q: Val, mask: Val, v: Val, name: string): Val {
  const { g } = model;
  const scores = g.op('einsum', { values: [k, q], equation: str('bkhc,bchq->bkhq') }, `${name}_scores`); // (1, K, X, Q)
  const masked = g.op('add', { x: scores, y: mask }, `${name}_masked`);
  const probs = g.op('softmax', { x: masked, axis: i32(1) }, `${name}_probs`); // over the keys
  return g.op('einsum', { values: [v, probs], equation: str('bchk,bkhq->bchq') }, `${name}_out`); // (1, D, X, Q)
}
