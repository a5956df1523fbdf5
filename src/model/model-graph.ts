// What every part of the forward pass reads while it builds the graph: the builder, the config and weights,
// the weight form, the length, the inputs, and values that several parts share (built on first use).

import { ModernBertError } from '../errors.js';
import { GraphBuilder, i32, str, type Val } from '../graph/builder.js';
import type { Dim } from '../ir/graph.js';
import type { ModernBertConfig } from './config.js';
import {
  DEFAULT_ATTENTION_CHUNK,
  MAX_ATTENTION_CHUNK,
  type BuildOptions,
  type ModelSource,
  type NormStyle,
} from './options.js';

export interface ModelGraph {
  g: GraphBuilder;
  config: ModernBertConfig;
  source: ModelSource;
  norm: NormStyle;
  /** The sequence length: a number, or the symbol 'S' for enumerated lengths. */
  seqLen: Dim;
  /** The longest length the graph takes. */
  maxLen: number;
  ids: Val;
  /** Additive padding mask over keys: (1, S, 1, S) from the input, or (1, S, 1, 1) from ids or attention_mask. */
  paddingMask: () => Val;
  /** Packed texts, when the graph packs several per window (packing.ts). */
  packing?: Packing;
  /** Queries per chunk of global attention. */
  chunk: number;
  /** How banded layers cut their windows (BuildOptions.bandWindows). */
  bandWindows: 'all-heads' | 'per-head';
  /** 0..S-1 as a tensor (built on first use), for graphs whose length is only known at run time. */
  positions: () => Val;
  /** The l2 norm's extra channel sqrt(C * eps), (1, 1, 1, S), shared by every norm (built on first use). */
  epsChannel: () => Val;
}

/** Up to K texts in one window, from the segment ids: what attention, rotary positions and pooling read. */
export interface Packing {
  texts: number;
  /** Segment ids as floats for comparisons: keys (1, S, 1, 1) and queries (1, 1, 1, S). */
  keys: Val;
  queries: Val;
  /** (S, K): 1 where token s belongs to text k + 1, else 0. */
  member: Val;
  /** (K,) int32: each text's first token (S - 1 for a text that is absent). */
  starts: Val;
  /** (S, K): 1 at each text's first token, else 0 (an absent text has none); built on first use (cls pooling). */
  first: () => Val;
  /** (S,) int32: each token's position within its text. */
  positions: Val;
  /** Additive masks (1, S, 1, chunk) of the query chunks, by first query, shared by every global layer and head. */
  chunkMasks: Map<number, Val>;
}

/** The builder for a model's lengths, dtype and target, after checking the lengths; S is 'S' for several. */
export function startGraph(source: ModelSource, o: BuildOptions) {
  const config = source.config;
  const lengths = typeof o.seqLen === 'number' ? [o.seqLen] : o.seqLen;
  for (const s of lengths) {
    if (!Number.isInteger(s) || s < 1 || s > config.maxPositions) {
      const why = `sequence length ${s} is outside 1..${config.maxPositions} (max_position_embeddings)`;
      throw new ModernBertError('BAD_INPUT', why, { seqLen: s });
    }
  }
  const g = new GraphBuilder(o.dtype ?? 'fp32', o.target);
  const io = o.ioDtype ?? g.dtype;
  const toCompute = (v: Val) => (io === g.dtype ? v : g.op('cast', { x: v, dtype: str(g.dtype) }, `${v}_cast`));
  const S: Dim = lengths.length === 1 ? lengths[0]! : 'S';
  return { g, config, S, lengths, toCompute };
}

/** What the parts read, with the values they share built on first use (so a graph holds only those it needs). */
export function modelGraph(
  g: GraphBuilder,
  source: ModelSource,
  o: BuildOptions,
  S: Dim,
  lengths: number[],
  ids: Val,
  paddingMask: () => Val,
): ModelGraph {
  const config = source.config;
  let positions: Val | undefined;
  const positionsOnce = (): Val => {
    if (positions) return positions;
    const len = g.op('gather', { x: g.op('shape', { x: ids }, 'ids_shape'), indices: i32(1), axis: i32(0) }, 'seq_len');
    return (positions = g.op('range_1d', { start: i32(0), end: len, step: i32(1) }, 'positions', [
      { dtype: 'int32', shape: [S] },
    ]));
  };
  const maxLen = Math.max(...lengths);
  let eps: Val | undefined;
  // A constant row, of which enumerated lengths gather the first S columns (fill_like would need iOS 16).
  const epsChannel = (): Val => {
    if (eps) return eps;
    const row = g.weight('norm_eps', [1, 1, 1, maxLen], () =>
      new Float32Array(maxLen).fill(Math.sqrt(config.hidden * config.normEps)),
    );
    return (eps =
      typeof S === 'number' ? row : g.op('gather', { x: row, indices: positionsOnce(), axis: i32(3) }, 'norm_eps_s'));
  };
  const norm = o.norm ?? 'layernorm';
  return {
    g,
    config,
    source,
    norm,
    seqLen: S,
    maxLen,
    ids,
    paddingMask,
    chunk: attentionChunk(o),
    bandWindows: o.bandWindows ?? 'all-heads',
    positions: positionsOnce,
    epsChannel,
  };
}

function attentionChunk(o: BuildOptions): number {
  const chunk = o.attentionChunk ?? DEFAULT_ATTENTION_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1 || chunk > MAX_ATTENTION_CHUNK) {
    const limit = "the Neural Engine's limit on the W axis";
    const why = `attention chunk ${chunk} does not fit: give 1..${MAX_ATTENTION_CHUNK} queries (${limit})`;
    throw new ModernBertError('BAD_INPUT', why, { chunk });
  }
  return chunk;
}
