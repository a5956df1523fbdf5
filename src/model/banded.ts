// Long inputs: local (sliding-window) layers compute only the band of scores inside the window. Queries go
// in blocks of window/2 on an axis of their own (the H axis), each block attends to its own keys and those
// of the blocks on either side, and one static band mask of a block serves every block: work and memory
// are O(S x window), and the number of ops does not grow with S.

import { bool, i32, type Val } from '../graph/builder.js';
import type { ModelGraph } from './model-graph.js';
import { attentionHead } from './attention-head.js';
import { MASKED, maskWhere } from './masks.js';

/** Local layers' banded layout: blocks of B queries, S padded to nb * B, one additive mask (1, 3B, nb, B). */
export interface Band {
  /** B: queries per block. */
  size: number;
  /** nb: blocks. */
  blocks: number;
  mask: Val;
}

// Sliding window as a band: blocks of B queries on the H axis, each against its 3B keys (the blocks before,
// at and after it), so scores are (1, 3B, nb, B) per head; B >= window/2 covers every key in the window.
// q is split into heads; the key and value windows are cut once for all heads and split likewise, or
// (model.bandWindows 'per-head') cut for each head just before its attention.
export function bandedAttention(model: ModelGraph, band: Band, q: Val, k: Val, v: Val, layer: number): Val {
  const { g, config } = model;
  const S = model.seqLen as number;
  const { size: B, blocks: nb } = band;
  const [C, H] = [config.hidden, config.numHeads];
  const n = `layers_${layer}`;
  const qb = g.op(
    'reshape',
    { x: padTail(model, q, nb * B - S, 0, `${n}_q_pad`), shape: i32([1, C, nb, B]) },
    `${n}_q_blocks`,
  ); // (1, C, nb, B)
  // Keys with the channels last (transposed before the windows, a third of their size), so that the
  // windows come out as the scores' keys: (1, 3B, nb, D) per head.
  const kBlocks = g.op('transpose', { x: padBlocks(model, k, band, 0, `${n}_k`), perm: i32([0, 3, 2, 1]) }, `${n}_kT`); // (1, B, nb+2, C)
  const vBlocks = padBlocks(model, v, band, 0, `${n}_v`); // (1, C, nb+2, B)
  const qs = g.split(qb, 1, H, `${n}_q_heads`); // (1, D, nb, B) per head
  const allHeads = model.bandWindows === 'all-heads' && {
    k: g.split(windows(model, kBlocks, band, 1, `${n}_k`), 3, H, `${n}_k_heads`), // (1, 3B, nb, C) -> (1, 3B, nb, D) per head
    v: g.split(windows(model, vBlocks, band, 3, `${n}_v`), 1, H, `${n}_v_heads`), // (1, C, nb, 3B) -> (1, D, nb, 3B) per head
  };
  const heads = qs.map((qh, head) => {
    const m = `${n}_h${head}`;
    const D = config.headDim;
    const kh = allHeads ? allHeads.k[head]! : windows(model, kBlocks, band, 1, `${m}_k`, [head * D, (head + 1) * D]); // (1, 3B, nb, D)
    const vh = allHeads ? allHeads.v[head]! : windows(model, vBlocks, band, 3, `${m}_v`, [head * D, (head + 1) * D]); // (1, D, nb, 3B)
    return attentionHead(model, kh, qh, band.mask, vh, m); // (1, D, nb, B)
  });
  const merged = g.op(
    'reshape',
    { x: g.op('concat', { values: heads, axis: i32(1) }, `${n}_heads`), shape: i32([1, C, 1, nb * B]) },
    `${n}_heads_flat`,
  ); // (1, C, 1, nb*B)
  return nb * B === S ? merged : g.slice(merged, 3, 0, S, `${n}_heads_crop`); // (1, C, 1, S)
}

// The band's one mask, shared by every local layer and head: the window (a static (1, 3B, 1, B) pattern, the
// same for every block) plus each block's padding keys, from the key mask (positions past S count as padding).
export function bandLayout(model: ModelGraph, S: number): Band {
  const { g } = model;
  const half = model.config.localWindow / 2; // config.ts requires an even window
  const B = Math.max(1, half);
  const nb = Math.ceil(S / B);
  const band: Band = { size: B, blocks: nb, mask: '' };
  const outside = g.weight(
    'band_outside',
    [1, 3 * B, 1, B],
    () => {
      const t = new Uint8Array(3 * B * B);
      for (let j = 0; j < 3 * B; j++) for (let q = 0; q < B; q++) t[j * B + q] = Math.abs(j - B - q) > half ? 1 : 0;
      return t;
    },
    'bool',
  );
  const window = () => maskWhere(g, outside, 'band_window'); // (1, 3B, 1, B)
  const packing = model.packing;
  if (packing) {
    // Packed: a key counts when it is in the query's text (keys past S get segment -1, no text's id).
    const keyRow = g.op('reshape', { x: packing.keys, shape: i32([1, 1, 1, S]) }, 'band_segments_row'); // (1, 1, 1, S)
    const keys = g.op(
      'transpose',
      {
        x: windows(model, padBlocks(model, keyRow, band, -1, 'band_key_segments'), band, 3, 'band_key_segments'),
        perm: i32([0, 3, 2, 1]),
      },
      'band_key_segments_t',
    ); // (1, 3B, nb, 1)
    const queries = g.op(
      'reshape',
      { x: padTail(model, packing.queries, nb * B - S, 0, 'band_query_segments_pad'), shape: i32([1, 1, nb, B]) },
      'band_query_segments',
    ); // (1, 1, nb, B)
    const otherText = g.op('not_equal', { x: keys, y: queries }, 'band_other_text'); // (1, 3B, nb, B)
    const other = maskWhere(g, otherText, 'band_text_mask');
    band.mask = g.op('add', { x: other, y: window() }, 'band_mask'); // (1, 3B, nb, B)
    return band;
  }
  const keyRow = g.op('reshape', { x: model.paddingMask(), shape: i32([1, 1, 1, S]) }, 'key_mask_row'); // (1, 1, 1, S)
  const keys = g.op(
    'transpose',
    {
      x: windows(model, padBlocks(model, keyRow, band, MASKED, 'band_keys'), band, 3, 'band_keys'),
      perm: i32([0, 3, 2, 1]),
    },
    'band_keys_t',
  ); // (1, 3B, nb, 1)
  band.mask = g.op('add', { x: keys, y: window() }, 'band_mask'); // (1, 3B, nb, B)
  return band;
}

// (1, K, 1, S) -> (1, K, nb+2, B): one block of `fill` before, the blocks of t, `fill` after (to (nb+1)B).
function padBlocks(model: ModelGraph, t: Val, band: Band, fill: number, name: string): Val {
  const { g } = model;
  const { size: B, blocks: nb } = band;
  const K = g.type(t).shape[1] as number;
  const edge = (n: number) => g.filled('band_pad', [1, K, 1, n], fill);
  const padded = g.op(
    'concat',
    { values: [edge(B), t, edge(nb * B - (model.seqLen as number) + B)], axis: i32(3) },
    `${name}_padded`,
  ); // (1, K, 1, (nb+2)B)
  return g.op('reshape', { x: padded, shape: i32([1, K, nb + 2, B]) }, `${name}_blocks`); // (1, K, nb+2, B)
}

// Windows of padded blocks (1, K, nb+2, B) -> (1, K, nb, 3B), or of blocks with the channels last
// (1, B, nb+2, K) -> (1, 3B, nb, K), joined on `axis`: for block j, positions (j-1)B .. (j+2)B - 1 (padding
// outside 0..S-1). `channels` [lo, hi) cuts the channels (the other axis of 1 and 3) to one head's.
function windows(
  model: ModelGraph,
  blocks: Val,
  band: Band,
  axis: 1 | 3,
  name: string,
  channels?: [number, number],
): Val {
  const { g } = model;
  const nb = band.blocks;
  const c = axis === 1 ? 3 : 1;
  const at = (blocksAt: number, channel: number) =>
    [0, 1, 2, 3].map((k) => (k === 2 ? blocksAt : k === c ? channel : 0));
  const shifted = [0, 1, 2].map((d) =>
    g.op(
      'slice_by_index',
      {
        x: blocks,
        begin: i32(at(d, channels?.[0] ?? 0)),
        end: i32(at(d + nb, channels?.[1] ?? 0)),
        end_mask: bool([0, 1, 2, 3].map((k) => k !== 2 && !(k === c && channels))),
      },
      `${name}_blocks${d}`,
    ),
  ); // blocks d .. d+nb-1
  return g.op('concat', { values: shifted, axis: i32(axis) }, `${name}_windows`);
}

// t padded with `n` columns of `fill` at the end of the last axis: (1, K, 1, S) -> (1, K, 1, S + n).
function padTail(model: ModelGraph, t: Val, n: number, fill: number, name: string): Val {
  if (n === 0) return t;
  const K = model.g.type(t).shape[1] as number;
  return model.g.op(
    'concat',
    {
      values: [t, model.g.filled('band_pad', [1, K, 1, n], fill)],
      axis: i32(3),
    },
    name,
  );
}
