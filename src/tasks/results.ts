// What each task gives for one text, in transformers.js's shapes and names (src/pipelines/*.js of
// huggingface/transformers.js), so that code moves over: fill-mask `{ score, token, token_str, sequence }`,
// text-classification `{ label, score }`, token-classification `{ entity, score, index, word, start, end }`
// or, grouped, `{ entity_group, score, word, start, end }`, feature-extraction a tensor `{ data, dims }`.

/** The names of the tasks, as transformers names them. */
export type TaskName = 'fill-mask' | 'text-classification' | 'token-classification' | 'feature-extraction';

/** One candidate for a [MASK]. */
export interface FillMaskItem {
  /** Its probability. */
  score: number;
  /** Its token id. */
  token: number;
  /** The token's text, as the tokenizer decodes it (a word's leading space included, as in transformers). */
  token_str: string;
  /** The input with this token in place of the [MASK] (special tokens left out). */
  sequence: string;
  /** Which [MASK] of the text it fills, 0 for the first (transformers.js fills only the first). */
  mask: number;
}

/** One label of a text and its probability. */
export interface TextClassificationItem {
  label: string;
  score: number;
}

/** One token's most likely label (aggregation_strategy 'none'). */
export interface TokenClassificationItem {
  /** The label. */
  entity: string;
  score: number;
  /** The token's position in the encoded input ([CLS] is 0). */
  index: number;
  /** The text it labels: `text.slice(start, end)`. */
  word: string;
  /** Its span in the input text, in UTF-16 code units (JavaScript string indices). */
  start: number;
  end: number;
}

/** A run of tokens (or words) grouped into one entity (aggregation_strategy 'simple', 'first', 'average', 'max'). */
export interface EntityGroup {
  /** The label without its B-/I- prefix. */
  entity_group: string;
  /** The mean score of its parts. */
  score: number;
  /** The text it spans: `text.slice(start, end)`. */
  word: string;
  start: number;
  end: number;
}

/** How token-classification groups tokens, as transformers' TokenClassificationPipeline. */
export type AggregationStrategy = 'none' | 'simple' | 'first' | 'average' | 'max';

/** How feature-extraction pools a text's token vectors: 'none' keeps one vector per token. */
export type Pooling = 'mean' | 'cls' | 'none';

/** A float32 tensor, row-major, as transformers.js's Tensor: `data` holds `dims` values in all. */
export interface Features<List = number[][]> {
  type: 'float32';
  data: Float32Array;
  dims: number[];
  /** The values as nested arrays (`dims.length` deep). */
  tolist(): List;
}
