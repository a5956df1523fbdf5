// The tied decoder of a vocabulary too large for one convolution. A vocabulary above MAX_CHANNELS
// (multilingual variants have 256,000) is split into K convolutions of at most MAX_CHANNELS rows each,
// stacked on the H axis as (1, rows, K, S): logit v is at (v % rows, v / rows); run/engine.ts unfoldLogits
// restores (1, V, 1, S). Rows past V (when K does not divide V) are zero with a MASKED bias, so they never rank.

import { i32, type Val } from '../graph/builder.js';
import type { ModelGraph } from './model-graph.js';
import { MASKED } from './masks.js';

/** Most output channels of one convolution: the ANE's limit on N (its weight) and C (its output). */
export const MAX_CHANNELS = 65536;

/** How the decoder of a V-token vocabulary splits: K convolutions of `rows` each (K = 1 up to MAX_CHANNELS). */
export function decoderChunks(V: number): { K: number; rows: number } {
  const K = Math.ceil(V / MAX_CHANNELS);
  return { K, rows: Math.ceil(V / K) };
}

/** The decoder over h (1, C, 1, S) as K convolutions: (1, rows, K, S). */
export function splitDecoder(model: ModelGraph, h: Val): Val {
  const { g, source } = model;
  const [V, C] = source.weights.shape('decoder.weight') as [number, number];
  const { K, rows } = decoderChunks(V);
  const hasBias = source.weights.has('decoder.bias');
  const chunks = Array.from({ length: K }, (_, k) => {
    const [lo, hi] = [k * rows, Math.min(V, (k + 1) * rows)];
    const rowsOf = (name: string, width: number, fill: number) => () => {
      const out = new Float32Array(rows * width).fill(fill);
      out.set(source.weights.get(name).data.subarray(lo * width, hi * width));
      return out;
    };
    // Tagged as rows of the table, so that --compress stores the chunk compressed as the table is.
    const inputs: Record<string, Val> = {
      x: h,
      weight: g.weight(`decoder_w${k}`, [rows, C, 1, 1], rowsOf('decoder.weight', C, 0), undefined, {
        weight: 'decoder.weight',
        lo,
        hi,
      }),
    };
    if (hasBias) inputs.bias = g.weight(`decoder_b${k}`, [rows], rowsOf('decoder.bias', 1, MASKED));
    return g.op('conv', inputs, `decoder_${k}`); // (1, rows, 1, S)
  });
  return g.op('concat', { values: chunks, axis: i32(2) }, 'decoder'); // (1, rows, K, S)
}
