// Additive attention masks: 0 where a query may attend a key, MASKED where it may not. Padding comes from the
// ids (or the attention mask) inside the graph, so no constant or input grows as S^2 (except the optional
// exact `mask` input).

import { i32, str, type GraphBuilder, type Val } from '../graph/builder.js';
import type { Dim } from '../ir/graph.js';
import type { ModernBertConfig } from './config.js';
import type { ModelGraph } from './model-graph.js';
import type { BuildOptions } from './options.js';

/** The additive mask value: exp underflows to 0, and it is finite in float16. */
export const MASKED = -1e4;

/** An additive attention mask for the queries of a chunk [lo, hi), or of all queries (null). */
export type MaskFor = (span: readonly [number, number] | null, name: string) => Val;

// MASKED where `cond` holds, else 0: cast and scale rather than select, whose type coremltools infers from
// its two branches alone (ops/defs/iOS15/control_flow.py, select.type_inference), not from cond's shape.
export function maskWhere(g: GraphBuilder, cond: Val, name: string): Val {
  return g.op('mul', { x: g.op('cast', { x: cond, dtype: str(g.dtype) }, `${name}_f`), y: g.f(MASKED) }, name);
}

/** The additive padding mask over keys: the `mask` input (1, S, 1, S), or (1, S, 1, 1) from ids or attention_mask. */
export function paddingMask(
  g: GraphBuilder,
  config: ModernBertConfig,
  S: Dim,
  ids: Val,
  o: BuildOptions,
  toCompute: (v: Val) => Val,
): Val {
  const maskFrom = o.maskFrom ?? 'input';
  if (maskFrom === 'input') return toCompute(g.input('mask', o.ioDtype ?? g.dtype, [1, S, 1, S]));
  const isPad =
    maskFrom === 'ids'
      ? g.op('equal', { x: ids, y: i32(config.padTokenId) }, 'is_pad')
      : g.op('equal', { x: g.input('attention_mask', 'int32', [1, S]), y: i32(0) }, 'is_pad');
  return g.op('reshape', { x: maskWhere(g, isPad, 'pad_mask'), shape: i32([1, -1, 1, 1]) }, 'key_mask'); // (1, S, 1, 1)
}

// Sliding window over all pairs (a mask input, or enumerated lengths): query q sees key k when |k - q| <=
// window/2, computed from positions in the graph (no (S, S) constant); MASKED on top of the padding mask.
export function localMask(model: ModelGraph): Val {
  const { g } = model;
  const half = model.config.localWindow / 2;
  const p = model.positions();
  const diff = g.op(
    'sub',
    {
      x: g.op('expand_dims', { x: p, axes: i32([1]) }, 'pos_k'),
      y: g.op('expand_dims', { x: p, axes: i32([0]) }, 'pos_q'),
    },
    'pos_diff',
  ); // (S, S)
  const far = g.op(
    'logical_or',
    {
      x: g.op('greater', { x: diff, y: i32(half) }, 'pos_after'),
      y: g.op('less', { x: diff, y: i32(-half) }, 'pos_before'),
    },
    'pos_far',
  );
  const outside = g.op('expand_dims', { x: far, axes: i32([0, 2]) }, 'window_outside'); // (1, S, 1, S)
  return g.op('add', { x: model.paddingMask(), y: maskWhere(g, outside, 'window_mask') }, 'local_mask');
}

// Unpacked attention: a mask over all queries, sliced per chunk of queries when it is per query (a mask input,
// the window); each chunk's slice made once, shared by every layer and head that reads it.
export function perChunk(model: ModelGraph, full: () => Val): MaskFor {
  const sliced = new Map<number, Val>();
  return (span, name) => {
    const mask = full();
    if (!span || model.g.type(mask).shape[3] === 1) return mask;
    return sliced.get(span[0]) ?? sliced.set(span[0], model.g.slice(mask, 3, span[0], span[1], name)).get(span[0])!;
  };
}
