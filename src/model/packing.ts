// Packing (BuildOptions.pack = K): up to K texts share one window, told apart by a `segment_ids` input
// (1, S), 1..K, 0 = padding, each text one contiguous run. Attention stays inside each text (masks compare
// segment ids per query chunk, and per block on banded layers), rotary positions restart at each text's
// first token, and pooled heads give one row per text: (1, K, C) embeddings, (1, K, labels) classifier logits.

import { ModernBertError } from '../errors.js';
import { bool, i32, str, type Val } from '../graph/builder.js';
import type { Dim } from '../ir/graph.js';
import type { ModelGraph, Packing } from './model-graph.js';
import { maskWhere, type MaskFor } from './masks.js';
import type { BuildOptions } from './options.js';

/** Most texts per packed window (segment ids compared in float16 stay exact up to 2048). */
const MAX_PACK = 2048;

/** Refuses packing options the graph cannot build, with one-line errors (callers may check before long work). */
export function checkPack(K: number, S: Dim, maskFrom: BuildOptions['maskFrom']): void {
  if (typeof S !== 'number')
    throw new ModernBertError(
      'BAD_ARGUMENT',
      'packing needs one sequence length (give one of `seqLens`; buckets of one length each work)',
      { pack: K },
    );
  // Segment ids are compared as floats: float16 holds every integer up to 2048 exactly.
  const most = Math.min(S, MAX_PACK);
  if (!Number.isInteger(K) || K < 1 || K > most)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`pack: ${K}\` does not fit: give 1..${most} texts per window of ${S} tokens`,
      { pack: K },
    );
  if (maskFrom === 'input')
    throw new ModernBertError(
      'BAD_ARGUMENT',
      '`pack` cannot be combined with `maskInput`: the segment ids are the mask',
      { pack: K },
    );
}

// Segment ids -> membership, each text's first token, and positions within texts, all in the graph (O(S K)).
export function packing(model: ModelGraph, K: number): Packing {
  const { g } = model;
  const S = model.seqLen as number;
  const seg = g.input('segment_ids', 'int32', [1, S]);
  // (1, S); K <= S stays exact in float16 below 2048
  const segF = g.op('cast', { x: seg, dtype: str(g.dtype) }, 'segments_f');
  const ids = () => Int32Array.from({ length: K }, (_, k) => k + 1);
  const texts = g.weight('pack_texts', [1, K], ids, 'int32'); // (1, K): 1..K
  const isMember = g.op(
    'equal',
    { x: g.op('reshape', { x: seg, shape: i32([S, 1]) }, 'segments_col'), y: texts },
    'pack_is_member',
  ); // (S, K)
  // A text's first token is the least position among its tokens; the other tokens count as S - 1, so an
  // absent text "starts" at S - 1 and every start stays a valid index.
  const t = g.op('reshape', { x: model.positions(), shape: i32([S, 1]) }, 'pack_t'); // (S, 1)
  const notMember = g.op(
    'sub',
    { x: i32(1), y: g.op('cast', { x: isMember, dtype: str('int32') }, 'pack_member_i') },
    'pack_not_member',
  ); // (S, K)
  const candidates = g.op(
    'add',
    { x: t, y: g.op('mul', { x: notMember, y: i32(S - 1) }, 'pack_far') },
    'pack_candidates',
  ); // (S, K)
  const starts = g.op('reduce_min', { x: candidates, axes: i32([0]), keep_dims: bool(false) }, 'pack_starts'); // (K,)
  // Each token's text start (0 for padding, segment 0), so positions restart at 0 in every text.
  const noText = g.weight('pack_padding_start', [1], () => new Int32Array(1), 'int32');
  const startOf = g.op(
    'gather',
    {
      x: g.op('concat', { values: [noText, starts], axis: i32(0) }, 'pack_starts_0'),
      indices: g.op('reshape', { x: seg, shape: i32([S]) }, 'segments_flat'),
      axis: i32(0),
    },
    'pack_token_start',
  ); // (S,)
  let first: Val | undefined;
  return {
    texts: K,
    keys: g.op('reshape', { x: segF, shape: i32([1, S, 1, 1]) }, 'segments_keys'), // (1, S, 1, 1)
    queries: g.op('reshape', { x: segF, shape: i32([1, 1, 1, S]) }, 'segments_queries'), // (1, 1, 1, S)
    member: g.op('cast', { x: isMember, dtype: str(g.dtype) }, 'pack_member'), // (S, K)
    starts,
    // 1 where a token is its text's first (an absent text's "start" S - 1 is none of its tokens).
    first: () =>
      (first ??= g.op(
        'cast',
        {
          x: g.op(
            'logical_and',
            { x: g.op('equal', { x: t, y: starts }, 'pack_is_start'), y: isMember },
            'pack_is_first',
          ),
          dtype: str(g.dtype),
        },
        'pack_first',
      )), // (S, K)
    positions: g.op(
      'sub',
      { x: g.op('reshape', { x: t, shape: i32([S]) }, 'pack_t_flat'), y: startOf },
      'pack_positions',
    ), // (S,)
    chunkMasks: new Map(),
  };
}

// Packed attention: MASKED between tokens of different texts (padding is text 0), one mask per query chunk.
export function textMask(model: ModelGraph, p: Packing): MaskFor {
  const { g } = model;
  const S = model.seqLen as number;
  return (span) => {
    const [lo, hi] = span ?? [0, S];
    let m = p.chunkMasks.get(lo);
    if (!m) {
      // (1, 1, 1, chunk)
      const q = hi - lo === S ? p.queries : g.slice(p.queries, 3, lo, hi, `segments_queries_c${lo}`);
      const otherText = g.op('not_equal', { x: p.keys, y: q }, `other_text_c${lo}`); // (1, S, 1, chunk)
      m = maskWhere(g, otherText, `text_mask_c${lo}`);
      p.chunkMasks.set(lo, m);
    }
    return m;
  };
}

// Pooling, one column per text, as a matrix product on the Neural Engine: the hidden states (C, S) times the
// one-hot first tokens (cls) or the membership (mean, then divided by each text's length), both (S, K).
export function poolPerText(model: ModelGraph, p: Packing, h: Val, how: 'cls' | 'mean'): Val {
  const { g } = model;
  const C = model.config.hidden;
  const hidden2d = g.op('reshape', { x: h, shape: i32([C, -1]) }, 'pool_h2d'); // (C, S)
  const picks = how === 'cls' ? p.first() : p.member; // (S, K)
  let pooled = g.op('matmul', { x: hidden2d, y: picks }, how === 'cls' ? 'pool_cls' : 'pool_sum'); // (C, K)
  if (how === 'mean') {
    const count = g.op('reduce_sum', { x: p.member, axes: i32([0]), keep_dims: bool(true) }, 'pool_count'); // (1, K)
    const atLeast1 = g.op('maximum', { x: count, y: g.f(1) }, 'pool_count_1');
    pooled = g.op('real_div', { x: pooled, y: atLeast1 }, 'pool_mean'); // (C, K); an absent text is 0
  }
  return g.op('reshape', { x: pooled, shape: i32([1, C, 1, p.texts]) }, 'pool_out'); // (1, C, 1, K)
}

// (1, N, 1, K) with one column per text -> (1, K, N): one row per text.
export function perText(model: ModelGraph, p: Packing, t: Val, name: string): Val {
  const { g } = model;
  const N = g.type(t).shape[1] as number;
  const K = p.texts;
  const rows = g.op(
    'transpose',
    { x: g.op('reshape', { x: t, shape: i32([N, K]) }, `${name}_cols`), perm: i32([1, 0]) },
    `${name}_rows`,
  ); // (K, N)
  return g.op('reshape', { x: rows, shape: i32([1, K, N]) }, `${name}_per_text`); // (1, K, N)
}
