// Types of variants-list.mjs, for test/variants.test.ts.

export type Head =
  | 'mlm'
  | 'mlm-bias'
  | 'seqcls-cls'
  | 'seqcls-mean'
  | 'tokcls'
  | 'embedding-mean'
  | 'embedding-cls'
  | 'embedding-normalized'
  | 'none';

/** One value of each flag (and the head). */
export interface Combination {
  head: Head;
  norm: 'l2' | 'rms' | 'no-fold';
  rotation: 'none' | 'hadamard' | 'learned';
  input: 'ids' | 'mask';
  lengths: 'one' | 'enumerated';
  target: 'iOS15' | 'iOS16' | 'iOS17' | 'iOS18';
  weights: 'fp16' | 'fp32';
  pack: 'none' | 'pack';
  /** `convert --compress` form (compressed rows only). */
  compress?: Compression;
}

export type Compression = 'pal8' | 'pal6' | 'pal4' | 'pal3' | 'pal2' | 'pal4-grouped' | 'int8' | 'int4';

/** What the script converts: a named package and its flags, or a refusal it expects. */
export interface Conversion {
  /** Package name, e.g. '07-seqcls-cls'. */
  name: string;
  /** Flags of `convert` (without the checkpoint and --out). */
  args: string[];
  fidelity: boolean;
  tokenizer: boolean;
  /** The refusal rule when the converter refuses it on purpose, else null; `error` matches its message. */
  refused: string | null;
  error: RegExp | null;
}

export interface Variant extends Combination, Conversion {}

export const HEADS: Head[];
export const FACTORS: { [K in Exclude<keyof Combination, 'head'>]: Combination[K][] };
export const COMPRESSIONS: Compression[];
export const TRIPLES: (keyof Combination)[][];
export function refusal(v: Combination): { reason: string; error: RegExp } | null;
export function variantArgs(v: Combination & { fidelity?: boolean; tokenizer?: boolean }): string[];
export function requiredPairs(): Set<string>;
export function uncoveredPairs(list: Variant[], required?: Set<string>): string[];
export function variantList(): Variant[];

/** A variant of the body-and-heads layouts: a head's checkpoint and the flags of one layout. */
export interface LayoutVariant extends Conversion {
  head: Head | 'mlm-70k';
  /** The split-decoder rows: their target and compressed form, as the covering rows name them. */
  target?: string;
  compress?: string;
  layout: 'split' | 'functions' | 'add-head' | 'buckets' | 'functions-pack' | 'buckets-pack' | 'split-decoder';
}
export function layoutVariants(): LayoutVariant[];
