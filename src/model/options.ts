// What a model graph is built from (a config and its weights) and the choices of one build: lengths, float
// type, weight form, head, where padding comes from, deployment target, packing.

import type { Target } from '../ir/target.js';
import type { WeightSource } from '../io/weights.js';
import type { EmbeddingSpec } from './checkpoint.js';
import type { HeadKind, ModernBertConfig } from './config.js';

/**
 * The weight form. 'layernorm' is the checkpoint as trained; 'rms' and 'l2' expect weights from
 * rotation/fold.ts (norm scales folded into the next matrices, a zero-mean and possibly rotated residual
 * stream), normalised without scale: 'rms' squares the stream (x*x), 'l2' divides by an l2 norm so that
 * float16 never squares an outlier.
 */
export type NormStyle = 'layernorm' | 'rms' | 'l2';
export type OutputHead = HeadKind | 'embedding';

/** Every output head a package can have, in the order options list them. */
export const OUTPUT_HEADS: readonly OutputHead[] = ['mlm', 'seqcls', 'tokcls', 'embedding', 'none'];

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
  /**
   * Evaluate a per-token head only at these positions (CPU runs: predict and golden checks); 'input': at the
   * positions of an int32 input `head_positions` (P), so that one graph serves every set of positions.
   */
  positions?: number[] | 'input';
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
  /**
   * How banded local layers cut their key and value windows: 'all-heads' (default) once for all heads,
   * then split (the fewest ops: what `convert` writes for the Neural Engine); 'per-head' each head its own
   * just before its attention, so that one head's windows are alive at a time instead of all of them (the
   * CPU engine: less memory at length). The same arithmetic either way.
   */
  bandWindows?: 'all-heads' | 'per-head';
  /** Float type of the model's inputs and outputs when it differs from `dtype` (iOS 15 has no float16 I/O). */
  ioDtype?: 'fp32' | 'fp16';
  /** Deployment target whose op versions (and their defaults) the graph is written in. */
  target?: Target;
  /** Pack up to this many texts per window: adds the `segment_ids` input (1, S) int32, 1..K, 0 = padding. */
  pack?: number;
  /**
   * With `pack`: every text lies inside one block of this many tokens, half the local window or the whole
   * window (pack-texts.ts packBlocks), and S is a multiple of it, so every layer attends within blocks
   * (blocked.ts): less work for many short texts.
   */
  packBlocks?: number;
}

/**
 * Global attention's default query chunk: our CPU engine's (and ONNX export's). On the CPU a smaller score
 * tensor stays nearer the cache: at 8,192 tokens chunks of 512 ran 1.8x faster than chunks of 1,024
 * (docs/PERFORMANCE.md). The ANE takes at most 16,384 along H and W and 65,536 along C: a chunk's scores
 * (1, S_key, 1, chunk) keep the keys on C and the chunk on W, so any chunk up to 16,384 compiles.
 */
export const DEFAULT_ATTENTION_CHUNK = 512;
/**
 * Global attention's query chunk in the packages `convert` writes. On the Neural Engine each chunk costs
 * ops (a split, and per head an einsum, add, softmax and einsum: the op budget, docs/ANE.md): 1,024 queries
 * is the reference project's whole unchunked score tensor at 1,024 tokens, one chunk per head there and 8
 * at 8,192 (16 MB of float16 scores per head and chunk). A multiple of 32: the ANE pads W to 64 bytes.
 */
export const ANE_ATTENTION_CHUNK = 1024;
/** The ANE's limit on the H and W axes, which a query chunk lies on. */
export const MAX_ATTENTION_CHUNK = 16384;

/** The head a model source provides by default. */
export function defaultHead(m: ModelSource): OutputHead {
  return m.embedding ? 'embedding' : m.config.head;
}
