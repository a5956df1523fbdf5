// Short packed texts, each inside one block: when every text of a packed window lies within one block of
// B = localWindow/2 tokens (pack-texts.ts packBlocks), each token's keys, in global and local layers alike,
// are the tokens of its own block (a text of at most B tokens is all inside its local window too). Attention
// then runs per block, with blocks on the H axis as in banded attention, but each block against its own B
// keys only: scores (1, B, nb, B) per head, no key windows to cut, work O(S x B).

import { i32, type Val } from '../graph/builder.js';
import { ModernBertError } from '../errors.js';
import type { ModelGraph, Packing } from './model-graph.js';
import { attentionHead } from './attention-head.js';
import { maskWhere } from './masks.js';

/** Blocks of B tokens, nb of them, and their one additive mask (1, B, nb, B): keys of other texts masked. */
export interface Blocks {
  size: number;
  blocks: number;
  mask: Val;
}

/** The block size of a model: half its local window (every pair of a text within it is inside the window). */
export function blockSize(localWindow: number): number {
  return Math.max(1, localWindow / 2);
}

/** The blocks of a packed graph of length S (a multiple of the block size) and their mask. */
export function blockLayout(model: ModelGraph, packing: Packing, S: number): Blocks {
  const { g } = model;
  const B = blockSize(model.config.localWindow);
  if (S % B !== 0)
    throw new ModernBertError('BAD_ARGUMENT', `packed blocks need a length that is a multiple of ${B}, not ${S}`, {
      seqLen: S,
    });
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
  return { size: B, blocks: nb, mask: maskWhere(g, otherText, 'block_mask') };
}

/** Attention within blocks: q, k, v (1, C, 1, S) -> (1, C, 1, S), all heads. */
export function blockAttention(model: ModelGraph, blocks: Blocks, q: Val, k: Val, v: Val, layer: number): Val {
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
  const heads = qs.map((qh, head) => attentionHead(model, ks[head]!, qh, blocks.mask, vs[head]!, `${n}_h${head}`));
  return g.op(
    'reshape',
    { x: g.op('concat', { values: heads, axis: i32(1) }, `${n}_heads`), shape: i32([1, C, 1, nb * B]) },
    `${n}_heads_flat`,
  ); // (1, C, 1, S)
}
