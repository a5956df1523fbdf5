// ModernBERT, in Neural Engine layout, as one op graph.
//
// Activations are (1, C, 1, S): channels first, sequence last (the ANE pads the last axis to 64 bytes).
// Projections are 1x1 convolutions, norms run over the channel axis, attention is split per head with
// keys on the channel axis of the score tensor (1, S_key, 1, S_query), so softmax runs over axis 1.
// The same graph drives the CPU interpreter (float32 or float16 emulation) and the Core ML export.
//
// Long inputs: local (sliding-window) layers compute only the band of scores inside the window. Queries go
// in blocks of window/2 on an axis of their own (the H axis), each block attends to its own keys and those
// of the blocks on either side, and one static band mask of a block serves every block: work and memory
// are O(S x window), and the number of ops does not grow with S. Global layers split their queries into
// chunks so that no score tensor exceeds (1, S, 1, chunk). Padding comes from the ids (or the attention
// mask) inside the graph: no constant or input grows as S^2 (except the optional exact `mask` input).
//
// Packing (BuildOptions.pack = K): up to K texts share one window, told apart by a `segment_ids` input (1, S),
// 1..K, 0 = padding, each text one contiguous run. Attention stays inside each text (masks compare segment ids
// per query chunk, and per block on banded layers), rotary positions restart at each text's first token, and
// pooled heads give one row per text: (1, K, C) embeddings, (1, K, labels) classifier logits.
//
// Two weight forms: 'layernorm' is the checkpoint as trained; 'rms' and 'l2' expect weights from
// rotation/fold.ts (norm scales folded into the next matrices, a zero-mean and possibly rotated residual
// stream), normalised without scale: 'rms' squares the stream (x*x), 'l2' divides by an l2 norm so that
// float16 never squares an outlier.

import type { ModernBertConfig, Activation, AttentionKind, HeadKind } from './config.js';
import { ModernBertError } from '../errors.js';
import { GraphBuilder, bool, i32, str, type Val } from '../graph/builder.js';
import type { Dim, Graph } from '../ir/graph.js';
import type { EmbeddingSpec } from './checkpoint.js';
import type { Target } from '../ir/target.js';
import { FINAL_UNROTATE, LAYER0_RESIDUAL, TOK_EMBEDDINGS } from '../rotation/fold.js';
import type { WeightSource } from '../io/weights.js';

export type NormStyle = 'layernorm' | 'rms' | 'l2';
export type OutputHead = HeadKind | 'embedding';

/** What the graph is built from. */
export interface ModelSource {
  config: ModernBertConfig;
  weights: WeightSource;
  embedding?: EmbeddingSpec;
}

export interface BuildOptions {
  /** One sequence length (static shapes), or several (a symbolic length 'S' for enumerated shapes). */
  seqLen: number | number[];
  /** Float type of weights and activations. */
  dtype?: 'fp32' | 'fp16';
  norm?: NormStyle;
  /** Which output to build; defaults to the checkpoint's own head ('embedding' for sentence-transformers). */
  head?: OutputHead;
  /** Evaluate a per-token head only at these positions (CPU runs: predict and golden checks). */
  positions?: number[];
  /**
   * 'input': an additive `mask` input (1, S, 1, S), (batch, key, 1, query), 0 = attend, -1e4 = not (exact
   * attention masks; the reference project's interface; local layers then compute all S x S scores).
   * 'ids': no mask input; tokens equal to pad_token_id are padding (one small input, which enumerated
   * shapes need before iOS 18). 'attention': an `attention_mask` input (1, S) int32, 1 = token, 0 = padding
   * (Hugging Face's form; the CPU engine's).
   */
  maskFrom?: 'input' | 'ids' | 'attention';
  /** Queries per chunk of global attention (default DEFAULT_ATTENTION_CHUNK). */
  attentionChunk?: number;
  /** Float type of the model's inputs and outputs when it differs from `dtype` (iOS 15 has no float16 I/O). */
  ioDtype?: 'fp32' | 'fp16';
  /** Deployment target whose op versions (and their defaults) the graph is written in. */
  target?: Target;
  /** Pack up to this many texts per window: adds the `segment_ids` input (1, S) int32, 1..K, 0 = padding. */
  pack?: number;
}

const MASKED = -1e4; // additive mask value: exp underflows to 0, and it is finite in float16

/**
 * Global attention's default query chunk. The ANE takes at most 16,384 along H and W and 65,536 along C:
 * a chunk's scores (1, S_key, 1, chunk) keep the keys on C (8,192 at most) and the chunk on W, so any chunk
 * up to 16,384 compiles. 512 is a multiple of 32 (the ANE pads W to 64 bytes, so no padding is wasted) and
 * bounds each score tensor at 8 MB in float16 at 8,192 keys (the size of 4 of the reference project's
 * unchunked 1,024-token score tensors), with 16 chunks per head there; on the CPU the smaller tensor also
 * stays nearer the cache (8,192 tokens ran 1.8x faster than with chunks of 1,024).
 */
export const DEFAULT_ATTENTION_CHUNK = 512;
/** The ANE's limit on the H and W axes, which a query chunk lies on. */
export const MAX_ATTENTION_CHUNK = 16384;

/** The head a model source provides by default. */
export function defaultHead(m: ModelSource): OutputHead {
  return m.embedding ? 'embedding' : m.config.head;
}

/** What every block reads: the builder, the config, the weights, the norm form, the length and the inputs. */
interface Base {
  g: GraphBuilder;
  c: ModernBertConfig;
  m: ModelSource;
  norm: NormStyle;
  /** The sequence length: a number, or the symbol 'S' for enumerated lengths. */
  S: Dim;
  maxS: number;
  ids: Val;
  /** Additive padding mask over keys: (1, S, 1, S) from the input, or (1, S, 1, 1) from ids or attention_mask (built on first use). */
  mask: () => Val;
  /** Packed texts, when the graph packs several per window. */
  pack?: Packing;
  /** Queries per chunk of global attention. */
  chunk: number;
  /** 0..S-1 as a tensor (built on first use), for graphs whose length is only known at run time. */
  positions: () => Val;
  /** The l2 norm's extra channel sqrt(C * eps), (1, 1, 1, S), shared by every norm (built on first use). */
  epsChannel: () => Val;
}

/** Local layers' banded layout: blocks of B queries, S padded to nb * B, one additive mask (1, 3B, nb, B). */
interface Band {
  B: number;
  nb: number;
  mask: Val;
}

/** Up to K texts in one window, from the segment ids: what attention, rotary positions and pooling read. */
interface Packing {
  K: number;
  /** Segment ids as floats for comparisons: keys (1, S, 1, 1) and queries (1, 1, 1, S). */
  keys: Val;
  queries: Val;
  /** (S, K): 1 where token s belongs to text k + 1, else 0. */
  member: Val;
  /** (K,) int32: each text's first token (S - 1 for a text that is absent). */
  starts: Val;
  /** (S,) int32: each token's position within its text. */
  positions: Val;
  /** Additive masks (1, S, 1, chunk) of the query chunks, by first query, shared by every global layer and head. */
  chunkMasks: Map<number, Val>;
}

/** An additive attention mask for the queries of a chunk [lo, hi), or of all queries (null). */
type MaskFor = (span: readonly [number, number] | null, name: string) => Val;

/** Base, plus the rotary tables and the attention masks of each layer kind. */
interface Ctx extends Base {
  rope: Record<AttentionKind, [Val, Val]>;
  /** Global layers' mask; local layers' when they are not banded (all keys within the window, or a mask input). */
  masks: Record<AttentionKind, MaskFor>;
  band?: Band;
}

/** Builds ModernBERT's forward pass as a graph. Inputs: input_ids (1, S) int32, plus `mask` ('input') or `attention_mask` ('attention'), or `segment_ids` (pack). */
export function buildModel(m: ModelSource, o: BuildOptions): Graph {
  const { g, c, S, lengths, toCompute } = begin(m, o);
  const ids = g.input('input_ids', 'int32', [1, S]);
  if (o.pack !== undefined) checkPack(o.pack, S, o.maskFrom);
  // Packed, padding is segment 0: no mask input, and local layers may run banded.
  const maskFrom = o.maskFrom ?? (o.pack !== undefined ? 'ids' : 'input');
  let padMask: Val | undefined;
  const mask = (): Val => (padMask ??= paddingMask(g, c, S, ids, { ...o, maskFrom }, toCompute));
  if (o.pack === undefined) mask(); // unpacked graphs read it; built here, it keeps their op order
  let pos: Val | undefined;
  const positions = (): Val => {
    if (pos) return pos;
    const len = g.op('gather', { x: g.op('shape', { x: ids }, 'ids_shape'), indices: i32(1), axis: i32(0) }, 'seq_len');
    return (pos = g.op('range_1d', { start: i32(0), end: len, step: i32(1) }, 'positions', [{ dtype: 'int32', shape: [S] }]));
  };
  const maxS = Math.max(...lengths);
  let eps: Val | undefined;
  // A constant row, of which enumerated lengths gather the first S columns (fill_like would need iOS 16).
  const epsChannel = (): Val => {
    if (eps) return eps;
    const row = g.weight('norm_eps', [1, 1, 1, maxS], () => new Float32Array(maxS).fill(Math.sqrt(c.hidden * c.normEps)));
    return (eps = typeof S === 'number' ? row : g.op('gather', { x: row, indices: positions(), axis: i32(3) }, 'norm_eps_s'));
  };
  const base: Base = { g, c, m, norm: o.norm ?? 'layernorm', S, maxS, ids, mask, chunk: attentionChunk(o), positions, epsChannel };
  if (o.pack !== undefined) base.pack = packing(base, o.pack);
  const rope = { global: ropeTables(base, c.globalRopeTheta, 'rope_global'), local: ropeTables(base, c.localRopeTheta, 'rope_local') };
  const global = base.pack ? textMask(base, base.pack) : perChunk(base, mask);
  const x: Ctx = { ...base, rope, masks: { global, local: global } };
  if (c.layerTypes.includes('local') && x.maxS - 1 > c.localWindow / 2) {
    // Banded when the length is static and padding is per key; else all pairs, the window masked in the graph.
    if (typeof S === 'number' && maskFrom !== 'input') x.band = bandLayout(base, S);
    else {
      const local = localMask(base);
      x.masks.local = perChunk(base, () => local);
    }
  }

  const last = body(x);
  finish(g, o, head(x, last, o.head ?? defaultHead(m), o.positions));
  return g.graph;
}

/** Whether a head reads which tokens are padding (mean pooling), so that a head alone needs the ids too. */
export function headNeedsPadding(m: ModelSource, kind: OutputHead): boolean {
  if (kind === 'seqcls') return m.config.classifierPooling === 'mean';
  if (kind === 'embedding') return (m.embedding?.pooling ?? 'mean') === 'mean';
  return false;
}

/**
 * Builds one head alone, for hot-swapping heads over a body package (the whole model with head 'none'):
 * input `hidden_states` (1, C, 1, S), the body's output, plus input_ids (or the mask) when the head pools
 * over real tokens only. The same head() as buildModel's, so body + head computes what the whole model does.
 */
export function buildHead(m: ModelSource, o: BuildOptions): Graph {
  const { g, c, S, lengths, toCompute } = begin(m, o);
  const kind = o.head ?? defaultHead(m);
  if (kind === 'none') throw new ModernBertError('BAD_ARGUMENT', 'head "none" is the body itself: it has no head package');
  const hidden = toCompute(g.input('hidden_states', o.ioDtype ?? g.dtype, [1, c.hidden, 1, S])); // (1, C, 1, S)
  const ids = headNeedsPadding(m, kind) ? g.input('input_ids', 'int32', [1, S]) : '';
  const padMask = ids ? paddingMask(g, c, S, ids, o, toCompute) : '';
  const mask = (): Val => padMask;
  const unused = (): Val => {
    throw new ModernBertError('INTERNAL', 'a head read a value of the body');
  };
  const base: Base = { g, c, m, norm: o.norm ?? 'layernorm', S, maxS: Math.max(...lengths), ids, mask, chunk: attentionChunk(o), positions: unused, epsChannel: unused };
  finish(g, o, head(base, hidden, kind, o.positions));
  return g.graph;
}

/** The builder for a model's lengths, dtype and target, after checking the lengths. */
function begin(m: ModelSource, o: BuildOptions) {
  const c = m.config;
  const lengths = typeof o.seqLen === 'number' ? [o.seqLen] : o.seqLen;
  for (const s of lengths) {
    if (!Number.isInteger(s) || s < 1 || s > c.maxPositions) {
      throw new ModernBertError('BAD_INPUT', `sequence length ${s} is outside 1..${c.maxPositions} (max_position_embeddings)`, { seqLen: s });
    }
  }
  const g = new GraphBuilder(o.dtype ?? 'fp32', o.target);
  const io = o.ioDtype ?? g.dtype;
  const toCompute = (v: Val) => (io === g.dtype ? v : g.op('cast', { x: v, dtype: str(g.dtype) }, `${v}_cast`));
  const S: Dim = lengths.length === 1 ? lengths[0]! : 'S';
  return { g, c, S, lengths, toCompute };
}

function attentionChunk(o: BuildOptions): number {
  const chunk = o.attentionChunk ?? DEFAULT_ATTENTION_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1 || chunk > MAX_ATTENTION_CHUNK) {
    throw new ModernBertError('BAD_INPUT', `attention chunk ${chunk} does not fit: give 1..${MAX_ATTENTION_CHUNK} queries (the Neural Engine's limit on the W axis)`, { chunk });
  }
  return chunk;
}

/** The additive padding mask over keys: the `mask` input (1, S, 1, S), or (1, S, 1, 1) from the ids or attention_mask. */
function paddingMask(g: GraphBuilder, c: ModernBertConfig, S: Dim, ids: Val, o: BuildOptions, toCompute: (v: Val) => Val): Val {
  const maskFrom = o.maskFrom ?? 'input';
  if (maskFrom === 'input') return toCompute(g.input('mask', o.ioDtype ?? g.dtype, [1, S, 1, S]));
  const isPad = maskFrom === 'ids'
    ? g.op('equal', { x: ids, y: i32(c.padTokenId) }, 'is_pad')
    : g.op('equal', { x: g.input('attention_mask', 'int32', [1, S]), y: i32(0) }, 'is_pad');
  return g.op('reshape', { x: maskWhere(g, isPad, 'pad_mask'), shape: i32([1, -1, 1, 1]) }, 'key_mask'); // (1, S, 1, 1)
}

/** The graph's one output, cast to the I/O dtype. */
function finish(g: GraphBuilder, o: BuildOptions, out: { value: Val; name: string }): void {
  const io = o.ioDtype ?? g.dtype;
  g.output(io === g.dtype ? out.value : g.op('cast', { x: out.value, dtype: str(io) }, `${out.name}_cast`), out.name);
}

// ---- the body: embeddings, the residual loop, the final norm -----------------------------------------

function body(x: Ctx): Val {
  const { g, c } = x;
  const folded = x.norm !== 'layernorm';
  const rows = g.op('gather', { x: W(x, TOK_EMBEDDINGS), indices: x.ids, axis: i32(0) }, 'embed'); // (1, S, C)
  const embedded = g.op('expand_dims', { x: g.op('transpose', { x: rows, perm: i32([0, 2, 1]) }, 'embed_t'), axes: i32([2]) }, 'embed_4d'); // (1, C, 1, S)
  // Folded, the stream starts as the centred, rotated embedding and layer 0 reads its RMS norm.
  let h = folded ? embedded : g.tap('hidden_states.0', layerNorm(x, embedded, 'model.embeddings.norm', 'embed_norm'));
  g.tap('residual.0', h);
  for (let i = 0; i < c.numLayers; i++) {
    h = folded && i === 0 ? foldedLayer0Attention(x, h) : g.op('add', { x: h, y: attention(x, i === 0 ? h : norm(x, h, i, 'attn'), i) }, `layers_${i}_attn_res`);
    h = g.op('add', { x: h, y: mlp(x, norm(x, h, i, 'mlp'), i) }, `layers_${i}_mlp_res`);
    g.tap(`residual.${i + 1}`, h);
    if (!folded && i + 1 < c.numLayers) g.tap(`hidden_states.${i + 1}`, h);
  }
  const last = folded ? conv(x, rmsNorm(x, h, 'final_norm_rms'), FINAL_UNROTATE, 'final_norm') : layerNorm(x, h, 'model.final_norm', 'final_norm');
  return g.tap(`hidden_states.${c.numLayers}`, last);
}

// Folded layer 0: the original adds the embedding norm's output to the stream, so its residual path is a
// matrix of its own (rotation/fold.ts LAYER0_RESIDUAL), beside attention over the same normalised input.
function foldedLayer0Attention(x: Ctx, h: Val): Val {
  const n0 = rmsNorm(x, h, 'embed_norm');
  return x.g.op('add', { x: conv(x, n0, LAYER0_RESIDUAL, 'layers_0_residual'), y: attention(x, n0, 0) }, 'layers_0_attn_res');
}

// ---- attention, per head -----------------------------------------------------------------------------

function attention(x: Ctx, h: Val, i: number): Val {
  const { g, c } = x;
  const kind = c.layerTypes[i]!;
  const C = c.hidden;
  const qkv = conv(x, h, `model.layers.${i}.attn.Wqkv`, `layers_${i}_qkv`); // (1, 3C, 1, S)
  const [q0, k0, v] = g.opN('split', { x: qkv, split_sizes: i32([C, C, C]), axis: i32(1) }, `layers_${i}_split`) as [Val, Val, Val];
  // Scaling q by 1/sqrt(D) before the scores touches C x S values instead of H x S x S (exact for D = 64).
  const q = g.op('mul', { x: applyRope(x, q0, x.rope[kind], `layers_${i}_q`), y: g.f(1 / Math.sqrt(c.headDim)) }, `layers_${i}_q_scaled`);
  const k = applyRope(x, k0, x.rope[kind], `layers_${i}_k`);
  const merged = kind === 'local' && x.band ? bandedAttention(x, x.band, q, k, v, i) : fullAttention(x, x.masks[kind], q, k, v, i);
  return conv(x, merged, `model.layers.${i}.attn.Wo`, `layers_${i}_attn_out`);
}

// All pairs, per head, queries in chunks of x.chunk: scores (1, S_k, 1, chunk) with keys on the channel axis.
function fullAttention(x: Ctx, maskFor: MaskFor, q: Val, k: Val, v: Val, i: number): Val {
  const { g, c, S } = x;
  const D = c.headDim;
  const kT = g.op('transpose', { x: k, perm: i32([0, 3, 2, 1]) }, `layers_${i}_kT`); // (1, S, 1, C)
  const chunks = typeof S === 'number' && S > x.chunk ? Array.from({ length: Math.ceil(S / x.chunk) }, (_, j) => [j * x.chunk, Math.min(S, (j + 1) * x.chunk)] as const) : [null];
  const heads: Val[] = [];
  for (let hd = 0; hd < c.numHeads; hd++) {
    const n = `layers_${i}_h${hd}`;
    const [lo, hi] = [hd * D, (hd + 1) * D];
    const kh = g.slice(kT, 3, lo, hi, `${n}_k`); // (1, S, 1, D)
    const qh = g.slice(q, 1, lo, hi, `${n}_q`); // (1, D, 1, S)
    const vh = g.slice(v, 1, lo, hi, `${n}_v`); // (1, D, 1, S)
    const outs = chunks.map((span) => {
      const m = span ? `${n}_c${span[0] / x.chunk}` : n;
      const qc = span ? g.slice(qh, 3, span[0], span[1], `${m}_qc`) : qh; // (1, D, 1, chunk)
      const mc = maskFor(span, `${m}_mask`);
      const scores = g.op('einsum', { values: [kh, qc], equation: str('bkhc,bchq->bkhq') }, `${m}_scores`); // (1, S_k, 1, chunk)
      const probs = g.op('softmax', { x: g.op('add', { x: scores, y: mc }, `${m}_masked`), axis: i32(1) }, `${m}_probs`);
      return g.op('einsum', { values: [vh, probs], equation: str('bchk,bkhq->bchq') }, `${m}_out`); // (1, D, 1, chunk)
    });
    heads.push(outs.length === 1 ? outs[0]! : g.op('concat', { values: outs, axis: i32(3) }, `${n}_out`)); // (1, D, 1, S)
  }
  return g.op('concat', { values: heads, axis: i32(1) }, `layers_${i}_heads`); // (1, C, 1, S)
}

// Sliding window as a band: blocks of B queries on the H axis, each against its 3B keys (the blocks before,
// at and after it), so scores are (1, 3B, nb, B) per head; B >= window/2 covers every key in the window.
function bandedAttention(x: Ctx, band: Band, q: Val, k: Val, v: Val, i: number): Val {
  const { g, c } = x;
  const S = x.S as number;
  const { B, nb } = band;
  const [C, D] = [c.hidden, c.headDim];
  const qb = g.op('reshape', { x: padTail(x, q, nb * B - S, 0, `layers_${i}_q_pad`), shape: i32([1, C, nb, B]) }, `layers_${i}_q_blocks`); // (1, C, nb, B)
  // Keys and values padded once per layer; each head cuts its own windows from them, so that no
  // (1, C, nb, 3B) window tensor of all heads (3x the keys) is ever live (peak memory at 8,192 tokens).
  const kb = padBlocks(x, k, band, 0, `layers_${i}_k`); // (1, C, nb+2, B)
  const vb = padBlocks(x, v, band, 0, `layers_${i}_v`); // (1, C, nb+2, B)
  const heads: Val[] = [];
  for (let hd = 0; hd < c.numHeads; hd++) {
    const n = `layers_${i}_h${hd}`;
    const [lo, hi] = [hd * D, (hd + 1) * D];
    const kT = g.op('transpose', { x: windows(x, kb, band, lo, hi, `${n}_k`), perm: i32([0, 3, 2, 1]) }, `${n}_kT`); // (1, 3B, nb, D)
    const scores = g.op('einsum', { values: [kT, g.slice(qb, 1, lo, hi, `${n}_q`)], equation: str('bkhc,bchq->bkhq') }, `${n}_scores`); // (1, 3B, nb, B)
    const probs = g.op('softmax', { x: g.op('add', { x: scores, y: band.mask }, `${n}_masked`), axis: i32(1) }, `${n}_probs`);
    heads.push(g.op('einsum', { values: [windows(x, vb, band, lo, hi, `${n}_v`), probs], equation: str('bchk,bkhq->bchq') }, `${n}_out`)); // (1, D, nb, B)
  }
  const merged = g.op('reshape', { x: g.op('concat', { values: heads, axis: i32(1) }, `layers_${i}_heads`), shape: i32([1, C, 1, nb * B]) }, `layers_${i}_heads_flat`); // (1, C, 1, nb*B)
  return nb * B === S ? merged : g.slice(merged, 3, 0, S, `layers_${i}_heads_crop`); // (1, C, 1, S)
}

// (1, K, 1, S) -> (1, K, nb+2, B): one block of `fill` before, the blocks of t, `fill` after (to (nb+1)B).
function padBlocks(x: Base, t: Val, band: Band, fill: number, name: string): Val {
  const { g } = x;
  const { B, nb } = band;
  const K = g.type(t).shape[1] as number;
  const edge = (n: number, what: string) => g.weight(`${name}_${what}`, [1, K, 1, n], () => new Float32Array(K * n).fill(fill));
  const padded = g.op('concat', { values: [edge(B, 'head'), t, edge(nb * B - (x.S as number) + B, 'tail')], axis: i32(3) }, `${name}_padded`); // (1, K, 1, (nb+2)B)
  return g.op('reshape', { x: padded, shape: i32([1, K, nb + 2, B]) }, `${name}_blocks`); // (1, K, nb+2, B)
}

// Channels lo..hi of padded blocks (1, K, nb+2, B) -> windows (1, hi-lo, nb, 3B): for block j, positions
// (j-1)B .. (j+2)B - 1 (padding outside 0..S-1).
function windows(x: Base, blocks: Val, band: Band, lo: number, hi: number, name: string): Val {
  const { g } = x;
  const { nb } = band;
  const shifted = [0, 1, 2].map((d) => g.op('slice_by_index', {
    x: blocks, begin: i32([0, lo, d, 0]), end: i32([1, hi, d + nb, 0]), end_mask: bool([false, false, false, true]),
  }, `${name}_blocks${d}`)); // (1, hi-lo, nb, B) each
  return g.op('concat', { values: shifted, axis: i32(3) }, `${name}_windows`); // (1, hi-lo, nb, 3B)
}

// x padded with `n` columns of `fill` at the end of the last axis: (1, K, 1, S) -> (1, K, 1, S + n).
function padTail(x: Base, t: Val, n: number, fill: number, name: string): Val {
  if (n === 0) return t;
  const K = x.g.type(t).shape[1] as number;
  return x.g.op('concat', { values: [t, x.g.weight(`${name}_fill`, [1, K, 1, n], () => new Float32Array(K * n).fill(fill))], axis: i32(3) }, name);
}

// The band's one mask, shared by every local layer and head: the window (a static (1, 3B, 1, B) pattern, the
// same for every block) plus each block's padding keys, from the key mask (positions past S count as padding).
function bandLayout(x: Base, S: number): Band {
  const { g } = x;
  const half = x.c.localWindow / 2; // config.ts requires an even window
  const B = Math.max(1, half);
  const nb = Math.ceil(S / B);
  const band: Band = { B, nb, mask: '' };
  const outside = g.weight('band_outside', [1, 3 * B, 1, B], () => {
    const t = new Uint8Array(3 * B * B);
    for (let j = 0; j < 3 * B; j++) for (let q = 0; q < B; q++) t[j * B + q] = Math.abs(j - B - q) > half ? 1 : 0;
    return t;
  }, 'bool');
  const window = () => maskWhere(g, outside, 'band_window'); // (1, 3B, 1, B)
  if (x.pack) {
    // Packed: a key counts when it is in the query's text (keys past S get segment -1, no text's id).
    const keyRow = g.op('reshape', { x: x.pack.keys, shape: i32([1, 1, 1, S]) }, 'band_segments_row'); // (1, 1, 1, S)
    const keys = g.op('transpose', { x: windows(x, padBlocks(x, keyRow, band, -1, 'band_key_segments'), band, 0, 1, 'band_key_segments'), perm: i32([0, 3, 2, 1]) }, 'band_key_segments_t'); // (1, 3B, nb, 1)
    const queries = g.op('reshape', { x: padTail(x, x.pack.queries, nb * B - S, 0, 'band_query_segments_pad'), shape: i32([1, 1, nb, B]) }, 'band_query_segments'); // (1, 1, nb, B)
    const other = maskWhere(g, g.op('not_equal', { x: keys, y: queries }, 'band_other_text'), 'band_text_mask'); // (1, 3B, nb, B)
    band.mask = g.op('add', { x: other, y: window() }, 'band_mask'); // (1, 3B, nb, B)
    return band;
  }
  const keyRow = g.op('reshape', { x: x.mask(), shape: i32([1, 1, 1, S]) }, 'key_mask_row'); // (1, 1, 1, S)
  const keys = g.op('transpose', { x: windows(x, padBlocks(x, keyRow, band, MASKED, 'band_keys'), band, 0, 1, 'band_keys'), perm: i32([0, 3, 2, 1]) }, 'band_keys_t'); // (1, 3B, nb, 1)
  band.mask = g.op('add', { x: keys, y: window() }, 'band_mask'); // (1, 3B, nb, B)
  return band;
}

// ---- packing: several texts per window -----------------------------------------------------------------

/** Most texts per packed window (segment ids compared in float16 stay exact up to 2048). */
export const MAX_PACK = 2048;

/** Refuses packing options the graph cannot build, with one-line errors (callers may check before long work). */
export function checkPack(K: number, S: Dim, maskFrom: BuildOptions['maskFrom']): void {
  if (typeof S !== 'number') throw new ModernBertError('BAD_ARGUMENT', 'packing needs one sequence length (give one --seq-len; buckets of one length each work)', { pack: K });
  // Segment ids are compared as floats: float16 holds every integer up to 2048 exactly.
  const most = Math.min(S, MAX_PACK);
  if (!Number.isInteger(K) || K < 1 || K > most) throw new ModernBertError('BAD_ARGUMENT', `--pack ${K} does not fit: give 1..${most} texts per window of ${S} tokens`, { pack: K });
  if (maskFrom === 'input') throw new ModernBertError('BAD_ARGUMENT', '--pack cannot be combined with --mask-input: the segment ids are the mask', { pack: K });
}

// Segment ids -> membership, each text's first token, and positions within texts, all in the graph (O(S K)).
function packing(x: Base, K: number): Packing {
  const { g } = x;
  const S = x.S as number;
  const seg = g.input('segment_ids', 'int32', [1, S]);
  const segF = g.op('cast', { x: seg, dtype: str(g.dtype) }, 'segments_f'); // (1, S); K <= S stays exact in float16 below 2048
  const texts = g.weight('pack_texts', [1, K], () => Int32Array.from({ length: K }, (_, k) => k + 1), 'int32'); // (1, K): 1..K
  const isMember = g.op('equal', { x: g.op('reshape', { x: seg, shape: i32([S, 1]) }, 'segments_col'), y: texts }, 'pack_is_member'); // (S, K)
  // A text's first token is the least position among its tokens; the other tokens count as S - 1, so an
  // absent text "starts" at S - 1 and every start stays a valid index.
  const t = g.op('reshape', { x: x.positions(), shape: i32([S, 1]) }, 'pack_t'); // (S, 1)
  const notMember = g.op('sub', { x: i32(1), y: g.op('cast', { x: isMember, dtype: str('int32') }, 'pack_member_i') }, 'pack_not_member'); // (S, K)
  const candidates = g.op('add', { x: t, y: g.op('mul', { x: notMember, y: i32(S - 1) }, 'pack_far') }, 'pack_candidates'); // (S, K)
  const starts = g.op('reduce_min', { x: candidates, axes: i32([0]), keep_dims: bool(false) }, 'pack_starts'); // (K,)
  // Each token's text start (0 for padding, segment 0), so positions restart at 0 in every text.
  const noText = g.weight('pack_padding_start', [1], () => new Int32Array(1), 'int32');
  const startOf = g.op('gather', { x: g.op('concat', { values: [noText, starts], axis: i32(0) }, 'pack_starts_0'), indices: g.op('reshape', { x: seg, shape: i32([S]) }, 'segments_flat'), axis: i32(0) }, 'pack_token_start'); // (S,)
  return {
    K,
    keys: g.op('reshape', { x: segF, shape: i32([1, S, 1, 1]) }, 'segments_keys'), // (1, S, 1, 1)
    queries: g.op('reshape', { x: segF, shape: i32([1, 1, 1, S]) }, 'segments_queries'), // (1, 1, 1, S)
    member: g.op('cast', { x: isMember, dtype: str(g.dtype) }, 'pack_member'), // (S, K)
    starts,
    positions: g.op('sub', { x: g.op('reshape', { x: t, shape: i32([S]) }, 'pack_t_flat'), y: startOf }, 'pack_positions'), // (S,)
    chunkMasks: new Map(),
  };
}

// Packed attention: MASKED between tokens of different texts (padding is text 0), one mask per query chunk.
function textMask(x: Base, p: Packing): MaskFor {
  const { g } = x;
  const S = x.S as number;
  return (span) => {
    const [lo, hi] = span ?? [0, S];
    let m = p.chunkMasks.get(lo);
    if (!m) {
      const q = hi - lo === S ? p.queries : g.slice(p.queries, 3, lo, hi, `segments_queries_c${lo}`); // (1, 1, 1, chunk)
      m = maskWhere(g, g.op('not_equal', { x: p.keys, y: q }, `other_text_c${lo}`), `text_mask_c${lo}`); // (1, S, 1, chunk)
      p.chunkMasks.set(lo, m);
    }
    return m;
  };
}

// Unpacked attention: a mask over all queries, sliced per chunk of queries when it is per query (a mask input, the window).
function perChunk(x: Base, full: () => Val): MaskFor {
  return (span, name) => {
    const mask = full();
    return span && x.g.type(mask).shape[3] !== 1 ? x.g.slice(mask, 3, span[0], span[1], name) : mask;
  };
}

// Rotary embedding on (1, C, 1, S) viewed as (1, H, D, S): x * cos + rotate_half(x) * sin, written per half
// ([lo, hi] -> [lo cos - hi sin, hi cos + lo sin]) so that the tables hold each frequency once.
function applyRope(x: Ctx, t: Val, [cos, sin]: [Val, Val], name: string): Val {
  const { g, c } = x;
  const D = c.headDim;
  const x4 = g.op('reshape', { x: t, shape: i32([1, c.numHeads, D, -1]) }, `${name}_heads`); // (1, H, D, S)
  const lo = g.slice(x4, 2, 0, D / 2, `${name}_lo`); // (1, H, D/2, S)
  const hi = g.slice(x4, 2, D / 2, 'end', `${name}_hi`);
  const mul = (a: Val, b: Val, n: string) => g.op('mul', { x: a, y: b }, `${name}_${n}`);
  const outLo = g.op('sub', { x: mul(lo, cos, 'lo_cos'), y: mul(hi, sin, 'hi_sin') }, `${name}_out_lo`);
  const outHi = g.op('add', { x: mul(hi, cos, 'hi_cos'), y: mul(lo, sin, 'lo_sin') }, `${name}_out_hi`);
  const out = g.op('concat', { values: [outLo, outHi], axis: i32(2) }, `${name}_roped`); // (1, H, D, S)
  return g.op('reshape', { x: out, shape: i32([1, c.hidden, 1, -1]) }, `${name}_flat`); // (1, C, 1, S)
}

/** Above this many positions RoPE tables are built in the graph from two small ones (ropeTables). */
const ROPE_TABLE_MAX = 2048;
/** Positions per row of the factored RoPE tables: position p = ROPE_BLOCK * b + j. */
const ROPE_BLOCK = 64;

// Rotary tables (1, 1, D/2, S): cos and sin of position * theta^(-2k/D), one row per frequency k. Long
// tables would make an 8,192-token package 0.5% larger than a 512-token one, so beyond ROPE_TABLE_MAX they
// come from the angle-sum identities over p = 64b + j: cos = cosA cosB - sinA sinB, sin = sinA cosB + cosA sinB,
// with A = (D/2, S/64) and B = (D/2, 64) (float16 rounds each product: within a few float16 ulps of a table).
function ropeTables(x: Base, theta: number, name: string): [Val, Val] {
  const { g, S, maxS } = x;
  const F = x.c.headDim / 2;
  const invFreq = (k: number) => Math.pow(theta, -(2 * k) / x.c.headDim);
  const table = (fn: (a: number) => number, n: number, step = 1) => () => {
    const t = new Float32Array(F * n);
    for (let k = 0; k < F; k++) for (let s = 0; s < n; s++) t[k * n + s] = fn(s * step * invFreq(k));
    return t;
  };
  // The first `len` columns of cos and sin, (1, 1, F, len).
  const full = (len: number): [Val, Val] => {
    if (len <= ROPE_TABLE_MAX) return [g.weight(`${name}_cos`, [1, 1, F, len], table(Math.cos, len)), g.weight(`${name}_sin`, [1, 1, F, len], table(Math.sin, len))];
    const nb = Math.ceil(len / ROPE_BLOCK);
    const a = (fn: (a: number) => number, w: string) => g.weight(`${name}_${w}`, [1, 1, F, nb, 1], table(fn, nb, ROPE_BLOCK)); // (1, 1, F, nb, 1)
    const b = (fn: (a: number) => number, w: string) => g.weight(`${name}_${w}`, [1, 1, F, 1, ROPE_BLOCK], table(fn, ROPE_BLOCK)); // (1, 1, F, 1, 64)
    const [cosA, sinA, cosB, sinB] = [a(Math.cos, 'cos_blocks'), a(Math.sin, 'sin_blocks'), b(Math.cos, 'cos_offsets'), b(Math.sin, 'sin_offsets')];
    const mul = (p: Val, q: Val, n: string) => g.op('mul', { x: p, y: q }, `${name}_${n}`); // (1, 1, F, nb, 64)
    const flat = (v: Val, n: string) => {
      const t = g.op('reshape', { x: v, shape: i32([1, 1, F, nb * ROPE_BLOCK]) }, `${name}_${n}_flat`); // (1, 1, F, nb*64)
      return nb * ROPE_BLOCK === len ? t : g.slice(t, 3, 0, len, `${name}_${n}`); // (1, 1, F, len)
    };
    return [
      flat(g.op('sub', { x: mul(cosA, cosB, 'cc'), y: mul(sinA, sinB, 'ss') }, `${name}_cos_blocks_offsets`), 'cos'),
      flat(g.op('add', { x: mul(sinA, cosB, 'sc'), y: mul(cosA, sinB, 'cs') }, `${name}_sin_blocks_offsets`), 'sin'),
    ];
  };
  // Enumerated lengths: the first S columns of the longest table; packed: each token's position in its text.
  const at = (): Val => (x.pack ? x.pack.positions : x.positions());
  const pick = (t: Val, which: string) => {
    const cols = g.op('gather', { x: g.op('reshape', { x: t, shape: i32([F, maxS]) }, `${name}_${which}_table`), indices: at(), axis: i32(1) }, `${name}_${which}_cols`);
    return g.op('reshape', { x: cols, shape: i32([1, 1, F, -1]) }, `${name}_${which}_s`); // (1, 1, D/2, S)
  };
  if (typeof S === 'number' && !x.pack) return full(S);
  const [cos, sin] = full(maxS);
  return [pick(cos, 'cos'), pick(sin, 'sin')];
}

// MASKED where `cond` holds, else 0: cast and scale rather than select, whose type coremltools infers from
// its two branches alone (ops/defs/iOS15/control_flow.py, select.type_inference), not from cond's shape.
function maskWhere(g: GraphBuilder, cond: Val, name: string): Val {
  return g.op('mul', { x: g.op('cast', { x: cond, dtype: str(g.dtype) }, `${name}_f`), y: g.f(MASKED) }, name);
}

// Sliding window over all pairs (a mask input, or enumerated lengths): query q sees key k when |k - q| <=
// window/2, computed from positions in the graph (no (S, S) constant); MASKED on top of the padding mask.
function localMask(x: Base): Val {
  const { g } = x;
  const half = x.c.localWindow / 2;
  const p = x.positions();
  const diff = g.op('sub', { x: g.op('expand_dims', { x: p, axes: i32([1]) }, 'pos_k'), y: g.op('expand_dims', { x: p, axes: i32([0]) }, 'pos_q') }, 'pos_diff'); // (S, S)
  const far = g.op('logical_or', { x: g.op('greater', { x: diff, y: i32(half) }, 'pos_after'), y: g.op('less', { x: diff, y: i32(-half) }, 'pos_before') }, 'pos_far');
  const outside = g.op('expand_dims', { x: far, axes: i32([0, 2]) }, 'window_outside'); // (1, S, 1, S)
  return g.op('add', { x: x.mask(), y: maskWhere(g, outside, 'window_mask') }, 'local_mask');
}

// ---- MLP: GeGLU --------------------------------------------------------------------------------------

function mlp(x: Ctx, h: Val, i: number): Val {
  const { g, c } = x;
  const up = conv(x, h, `model.layers.${i}.mlp.Wi`, `layers_${i}_mlp_in`); // (1, 2I, 1, S)
  const [input, gate] = g.opN('split', { x: up, split_sizes: i32([c.intermediate, c.intermediate]), axis: i32(1) }, `layers_${i}_mlp_split`) as [Val, Val];
  const glu = g.op('mul', { x: act(x, input, c.hiddenActivation, `layers_${i}_mlp_act`), y: gate }, `layers_${i}_mlp_glu`);
  return conv(x, glu, `model.layers.${i}.mlp.Wo`, `layers_${i}_mlp_out`);
}

// ---- norms, projections, activations -------------------------------------------------------------------

/** The pre-norm of layer i's attention or MLP: the checkpoint's LayerNorm, or the folded RMS norm. */
function norm(x: Ctx, h: Val, i: number, which: 'attn' | 'mlp'): Val {
  const name = `layers_${i}_${which}_norm`;
  return x.norm === 'layernorm' ? layerNorm(x, h, `model.layers.${i}.${which}_norm`, name) : rmsNorm(x, h, name);
}

// LayerNorm over channels, with the checkpoint's scale and bias.
function layerNorm(x: Base, h: Val, prefix: string, name: string): Val {
  const inputs: Record<string, Val> = { x: h, gamma: W(x, `${prefix}.weight`) };
  if (x.m.weights.has(`${prefix}.bias`)) inputs.beta = W(x, `${prefix}.bias`);
  return x.g.op('layer_norm', { ...inputs, axes: i32([1]), epsilon: x.g.f(x.c.normEps) }, name);
}

// RMS norm without scale (the scale is folded into the readers): x / sqrt(mean(x^2) + eps).
function rmsNorm(x: Base, h: Val, name: string): Val {
  const { g, c } = x;
  if (x.norm === 'rms') {
    const ms = g.op('reduce_mean', { x: g.op('mul', { x: h, y: h }, `${name}_sq`), axes: i32([1]), keep_dims: bool(true) }, `${name}_ms`);
    return g.op('mul', { x: h, y: g.op('rsqrt', { x: ms, epsilon: g.f(c.normEps) }, `${name}_rsqrt`) }, name);
  }
  // l2 form: ||[x, sqrt(C*eps)]|| = sqrt(C * (mean(x^2) + eps)), computed without squaring x in float16.
  const l2 = g.op('reduce_l2_norm', { x: g.op('concat', { values: [h, x.epsChannel()], axis: i32(1) }, `${name}_xeps`), axes: i32([1]), keep_dims: bool(true) }, `${name}_l2`);
  return g.op('mul', { x: g.op('real_div', { x: h, y: l2 }, `${name}_div`), y: g.f(Math.sqrt(c.hidden)) }, name);
}

/** A linear layer as a 1x1 convolution: weight [out, in] viewed as (out, in, 1, 1), bias when the checkpoint has one. */
function conv(x: Base, h: Val, prefix: string, name: string): Val {
  const [out, inp] = x.m.weights.shape(`${prefix}.weight`) as [number, number];
  const inputs: Record<string, Val> = { x: h, weight: W(x, `${prefix}.weight`, [out, inp, 1, 1]) };
  if (x.m.weights.has(`${prefix}.bias`)) inputs.bias = W(x, `${prefix}.bias`);
  return x.g.op('conv', inputs, name);
}

function act(x: Base, h: Val, a: Activation, name: string): Val {
  if (a === 'gelu') return x.g.op('gelu', { x: h, mode: str('EXACT') }, name);
  if (a === 'gelu_tanh') return x.g.op('gelu', { x: h, mode: str('TANH_APPROXIMATION') }, name);
  return x.g.op(a, { x: h }, name);
}

/** A checkpoint tensor as a graph constant, loaded when the graph needs it. */
function W(x: Base, name: string, shape?: number[]): Val {
  return x.g.weight(name, shape ?? x.m.weights.shape(name), () => x.m.weights.get(name).data, undefined, name);
}

// ---- heads ---------------------------------------------------------------------------------------------

function head(x: Base, last: Val, kind: OutputHead, positions: number[] | undefined): { value: Val; name: string } {
  const { g, c } = x;
  const predictionHead = (h: Val): Val => layerNorm(x, act(x, conv(x, h, 'head.dense', 'head_dense'), c.classifierActivation, 'head_act'), 'head.norm', 'head_norm');
  const atPositions = (h: Val): Val => (positions ? g.op('gather', { x: h, indices: i32(positions), axis: i32(3) }, 'at_positions') : h);
  switch (kind) {
    case 'mlm':
      return { value: decoder(x, g.tap('head_hidden', predictionHead(atPositions(last)))), name: 'logits' }; // (1, V, 1, S) or (1, V/K, K, S)
    case 'tokcls':
      return { value: conv(x, predictionHead(atPositions(last)), 'classifier', 'classifier'), name: 'logits' }; // (1, L, 1, S)
    case 'seqcls': {
      const logits = conv(x, predictionHead(pool(x, last, c.classifierPooling)), 'classifier', 'classifier'); // (1, L, 1, 1), packed (1, L, 1, K)
      return { value: x.pack ? perText(x, logits, 'classifier') : g.op('reshape', { x: logits, shape: i32([1, c.labels.length]) }, 'classifier_2d'), name: 'logits' };
    }
    case 'embedding': {
      const spec = x.m.embedding ?? { pooling: 'mean', normalize: false };
      let e = pool(x, last, spec.pooling);
      if (spec.normalize) {
        let l2 = g.op('reduce_l2_norm', { x: e, axes: i32([1]), keep_dims: bool(true) }, 'embedding_l2');
        // An absent text's row is 0: dividing by a floor keeps it 0 instead of 0/0 (no real embedding is that short).
        if (x.pack) l2 = g.op('maximum', { x: l2, y: g.f(1e-4) }, 'embedding_l2_floor');
        e = g.op('real_div', { x: e, y: l2 }, 'embedding_unit');
      }
      return { value: x.pack ? perText(x, e, 'embedding') : g.op('reshape', { x: e, shape: i32([1, c.hidden]) }, 'embedding_2d'), name: 'embedding' };
    }
    case 'none':
      return { value: g.op('identity', { x: atPositions(last) }, 'hidden'), name: 'hidden_states' }; // (1, C, 1, S)
  }
}

/** Most output channels of one convolution: the ANE's limit on N (its weight) and C (its output). */
export const MAX_CHANNELS = 65536;

/** How the decoder of a V-token vocabulary splits: K convolutions of Vc rows (K = 1 up to MAX_CHANNELS). */
export function decoderChunks(V: number): { K: number; Vc: number } {
  const K = Math.ceil(V / MAX_CHANNELS);
  return { K, Vc: Math.ceil(V / K) };
}

// The tied decoder. A vocabulary above MAX_CHANNELS (multilingual variants have 256,000) is split into K
// convolutions of Vc <= MAX_CHANNELS rows, stacked on the H axis as (1, Vc, K, S): logit v is at (v % Vc,
// v / Vc); engine.ts unfoldLogits restores (1, V, 1, S). Rows past V (when K does not divide V) are zero
// with a MASKED bias, so they never rank.
function decoder(x: Base, h: Val): Val {
  const { g } = x;
  const [V, C] = x.m.weights.shape('decoder.weight') as [number, number];
  if (V <= MAX_CHANNELS) return conv(x, h, 'decoder', 'decoder');
  const { K, Vc } = decoderChunks(V);
  const hasBias = x.m.weights.has('decoder.bias');
  const chunks = Array.from({ length: K }, (_, k) => {
    const [lo, hi] = [k * Vc, Math.min(V, (k + 1) * Vc)];
    const rows = (name: string, width: number, fill: number) => () => {
      const out = new Float32Array(Vc * width).fill(fill);
      out.set(x.m.weights.get(name).data.subarray(lo * width, hi * width));
      return out;
    };
    // Tagged as rows of the table, so that --compress stores the chunk compressed as the table is.
    const inputs: Record<string, Val> = { x: h, weight: g.weight(`decoder_w${k}`, [Vc, C, 1, 1], rows('decoder.weight', C, 0), undefined, { weight: 'decoder.weight', lo, hi }) };
    if (hasBias) inputs.bias = g.weight(`decoder_b${k}`, [Vc], rows('decoder.bias', 1, MASKED));
    return g.op('conv', inputs, `decoder_${k}`); // (1, Vc, 1, S)
  });
  return g.op('concat', { values: chunks, axis: i32(2) }, 'decoder'); // (1, Vc, K, S)
}

// (1, N, 1, K) with one column per text -> (1, K, N): one row per text.
function perText(x: Base, t: Val, name: string): Val {
  const { g } = x;
  const N = g.type(t).shape[1] as number;
  const K = x.pack!.K;
  const rows = g.op('transpose', { x: g.op('reshape', { x: t, shape: i32([N, K]) }, `${name}_cols`), perm: i32([1, 0]) }, `${name}_rows`); // (K, N)
  return g.op('reshape', { x: rows, shape: i32([1, K, N]) }, `${name}_per_text`); // (1, K, N)
}

// Pooling over real tokens: which keys are padding is read from the mask column of query 0. Packed, one
// column per text: its first token (cls), or the mean over its tokens by the membership matrix (mean).
function pool(x: Base, h: Val, how: 'cls' | 'mean'): Val {
  const { g, c } = x;
  if (x.pack) {
    if (how === 'cls') return g.op('gather', { x: h, indices: x.pack.starts, axis: i32(3) }, 'pool_cls'); // (1, C, 1, K)
    const sum = g.op('matmul', { x: g.op('reshape', { x: h, shape: i32([c.hidden, -1]) }, 'pool_h2d'), y: x.pack.member }, 'pool_sum'); // (C, K)
    const count = g.op('reduce_sum', { x: x.pack.member, axes: i32([0]), keep_dims: bool(true) }, 'pool_count'); // (1, K)
    const mean = g.op('real_div', { x: sum, y: g.op('maximum', { x: count, y: g.f(1) }, 'pool_count_1') }, 'pool_mean'); // (C, K); an absent text is 0
    return g.op('reshape', { x: mean, shape: i32([1, c.hidden, 1, x.pack.K]) }, 'pool_out'); // (1, C, 1, K)
  }
  if (how === 'cls') return g.slice(h, 3, 0, 1, 'pool_cls');
  const mask = x.mask();
  const col = g.type(mask).shape[3] === 1 ? mask : g.slice(mask, 3, 0, 1, 'pool_mask'); // (1, S, 1, 1)
  const w = g.op('cast', { x: g.op('greater', { x: col, y: g.f(MASKED / 2) }, 'pool_real'), dtype: str(g.dtype) }, 'pool_w');
  const sum = g.op('matmul', { x: g.op('reshape', { x: h, shape: i32([c.hidden, -1]) }, 'pool_h2d'), y: g.op('reshape', { x: w, shape: i32([-1, 1]) }, 'pool_w2d') }, 'pool_sum'); // (C, 1)
  const count = g.op('reduce_sum', { x: w, axes: i32([1]), keep_dims: bool(false) }, 'pool_count'); // (1, 1, 1)
  return g.op('reshape', { x: g.op('real_div', { x: sum, y: g.op('reshape', { x: count, shape: i32([1, 1]) }, 'pool_count2d') }, 'pool_mean'), shape: i32([1, c.hidden, 1, 1]) }, 'pool_out');
}
