// Short packed texts, each inside one block: when every text of a packed window lies within one block of B
// tokens (pack-texts.ts packBlocks), each token's keys in a global layer are its own text's, all in its own
// block, and in a local layer those of them within the sliding window. Attention then runs per block, with
// blocks on the H axis as in banded attention, but each block against its own B keys only: scores
// (1, B, nb, B) per head, no key windows to cut, work O(S x B). B is half the local window (every pair of a
// text is then inside the window) or the whole window (local layers also mask the pairs farther apart).

import { i32, type Val } from '../graph/builder.js';
import { ModernBertError } from '../errors.js';
import type { AttentionKind } from './config.js';
import type { ModelGraph, Packing } from './model-graph.js';
import { attentionHead } from './attention-head.js';
import { maskWhere } from './masks.js';

/** Blocks of B tokens, nb of them, and each layer kind's additive mask (1, B, nb, B). */
export interface Blocks {
  size: number;
  blocks: number;
  masks: Record<AttentionKind, Val>;
}

/** The block sizes a model's texts can be packed in: half its local window, then the whole window. */
export function blockSizes(localWindow: number): number[] {
  return [Math.max(1, localWindow / 2), localWindow];
}

/** The blocks of B tokens of a packed graph of length S (a multiple of B), and their masks. */
export function blockLayout(model: ModelGraph, packing: Packing, S: number, B: number): Blocks {
  const { g, config } = model;
  if (!blockSizes(config.localWindow).includes(B) || S % B !== 0)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `packed blocks are ${blockSizes(config.localWindow).join(' or ')} tokens, in a length that is a multiple of them (not ${B} in ${S})`,
      { seqLen: S, block: B },
    );
  const nb = S / B;
  // The segment ids, as each block's keys and as its queries.
  const keys = g.op(
    'transpose',
    {
      x: g.op('reshape', { x: packing.queries, shape: i32([1, 1, nb, B]) }, 'block_key_segments'),
      perm: i32([0, 3, 2, 1]),
    },
    'block_key_segments_t',
  ); // (1, B, nb, 1)
  const queries = g.op('reshape', { x: packing.queries, shape: i32([1, 1, nb, B]) }, 'block_query_segments'); // (1, 1, nb, B)
  const otherText = g.op('not_equal', { x: keys, y: queries }, 'block_other_text'); // (1, B, nb, B)
  const global = maskWhere(g, otherText, 'block_mask');
  const half = config.localWindow / 2;
  if (B - 1 <= half) return { size: B, blocks: nb, masks: { global, local: global } };
  // Pairs of a block farther apart than the window (a static (1, B, 1, B) pattern, the same for every block).
  const outside = g.weight(
    'block_outside',
    [1, B, 1, B],
    () => {
      const t = new Uint8Array(B * B);
      for (let k = 0; k < B; k++) for (let q = 0; q < B; q++) t[k * B + q] = Math.abs(k - q) > half ? 1 : 0;
      return t;
    },
    'bool',
  );
  const far = g.op('logical_or', { x: otherText, y: outside }, 'block_far'); // (1, B, nb, B)
  return { size: B, blocks: nb, masks: { global, local: maskWhere(g, far, 'block_local_mask') } };
}

/** Attention within blocks under `mask` (1, B, nb, B): q, k, v (1, C, 1, S) -> (1, C, 1, S), all heads. */
export function blockAttention(
  model: ModelGraph,
  blocks: Blocks,
  mask: Val,
  q: Val,
  k: Val,
  v: Val,
  layer: number,
): Val {
  const { g, config } = model;
  const { size: B, blocks: nb } = blocks;
  const [C, H] = [config.hidden, config.numHeads];
  const n = `layers_${layer}`;
  const inBlocks = (x: Val, name: string) => g.op('reshape', { x, shape: i32([1, C, nb, B]) }, `${n}_${name}_blocks`); // (1, C, nb, B)
  // Keys with the channels last, so that each block's come out as its scores' keys: (1, B, nb, D) per head.
  const kBlocks = g.op('transpose', { x: inBlocks(k, 'k'), perm: i32([0, 3, 2, 1]) }, `${n}_kT`); // (1, B, nb, C)
  const qs = g.split(inBlocks(q, 'q'), 1, H, `${n}_q_heads`); // (1, D, nb, B) per head
  const ks = g.split(kBlocks, 3, H, `${n}_k_heads`); // (1, B, nb, D) per head
  const vs = g.split(inBlocks(v, 'v'), 1, H, `${n}_v_heads`); // (1, D, nb, B) per head
  const heads = qs.map((qh, head) => attentionHead(model, ks[head]!, qh, mask, vs[head]!, `${n}_h${head}`));
  return g.op(
    'reshape',
    { x: g.op('concat', { values: heads, axis: i32(1) }, `${n}_heads`), shape: i32([1, C, 1, nb * B]) },
    `${n}_heads_flat`,
  ); // (1, C, 1, S)
}
