// The op graph: a MIL program in memory. The model definition builds it, the CPU interpreter runs it
// (in float32 or float16 emulation), the Core ML writer serialises it and the reader rebuilds it from a
// package. Op types, input names and literal types are MIL's own, so export is a one-to-one mapping.

/** Element types that a value can carry (MIL's names in parentheses: fp16, fp32, int32, ...). */
export type DType = 'fp32' | 'fp16' | 'int32' | 'int16' | 'int8' | 'uint8' | 'bool' | CompressedDType;

/**
 * Types that only compressed weights use (the inputs of the constexpr ops, ops/defs/compression.ts): iOS 16's
 * uint32 `shape`, and the sub-byte types that iOS 18's blobs pack least-significant bit first.
 */
export type CompressedDType = 'uint32' | 'int4' | 'uint1' | 'uint2' | 'uint3' | 'uint4' | 'uint6';

/** A dimension: a size, or a symbol (for example 'S') bound when the graph runs. */
export type Dim = number | string;

export interface TensorType {
  dtype: DType;
  shape: Dim[];
}

/** A named SSA value produced by an op, a graph input or a constant. */
export interface Value {
  name: string;
  type: TensorType;
}

/** Data of a tensor at run time: floats of any precision are held as float32, bools as 0/1 bytes. */
/** Int8Array: integer weights stored one byte each (compressed weights), widened where they run. */
export type TensorData = Float32Array | Int32Array | Uint8Array | Int8Array;

/** A small immediate argument, written inline in the op (MIL's const inputs such as axes or epsilon). */
export interface Literal {
  kind: 'literal';
  dtype: DType | 'string';
  /** [] for a scalar. */
  shape: number[];
  value: number[] | boolean[] | string;
}

/** An op input: a value by name, a tuple of values (concat's `values`), or an inline literal. */
export type Arg = string | string[] | Literal;

export interface Op {
  /** MIL op type: 'conv', 'layer_norm', 'einsum', ... */
  op: string;
  /** Unique op name (MIL's `name` attribute). */
  name: string;
  /** MIL input name to argument. */
  inputs: Record<string, Arg>;
  outputs: Value[];
}

/** Where a tensor's values lie, as they are, in a file: what a runtime can read in place of a copy. */
export interface StoredTensor {
  /** The file's real path (symbolic links resolved). */
  path: string;
  /** Byte offset of the first value in the file. */
  offset: number;
  byteLength: number;
  /** Element type of the stored values, row-major in the tensor's shape. */
  dtype: 'fp32' | 'fp16' | 'bf16';
}

/** A named constant tensor (weights): static shape, data produced on demand so that it can be streamed. */
export interface Const {
  name: string;
  type: TensorType;
  /** The data, in float32 for every float dtype (already rounded when the dtype is fp16). */
  load(): TensorData;
  /**
   * Consts with the same key hold the same bytes, and the writer stores them once (one blob, as coremltools
   * shares a weight across functions): the tied embedding table's compressed indices feed two constexpr ops.
   */
  storageKey?: string;
  /** The checkpoint tensor this Const holds, when it holds one as is (compression picks these). */
  weight?: string;
  /** Rows [lo, hi) of a checkpoint tensor, then zero rows to the Const's first dimension (the split decoder's chunks). */
  rowsOf?: RowSlice;
  /** Where `load()`'s values lie as they are in a file (row-major in this shape), for runtimes that read files in place. */
  stored?: StoredTensor;
}

/** Rows [lo, hi) of checkpoint tensor `weight`. */
export interface RowSlice {
  weight: string;
  lo: number;
  hi: number;
}

export interface Graph {
  inputs: Value[];
  consts: Map<string, Const>;
  ops: Op[];
  /** Names of the values returned, in order. */
  outputs: string[];
  /** Internal values worth reading back (hidden states, residual stream), by role: 'hidden_states.3' -> value name. */
  taps: Map<string, string>;
}

/** Number of elements of a static shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** A literal scalar or vector, with its dtype. */
export function literal(dtype: Literal['dtype'], value: number | boolean | string | number[] | boolean[]): Literal {
  if (typeof value === 'string') return { kind: 'literal', dtype, shape: [], value };
  if (Array.isArray(value))
    return { kind: 'literal', dtype, shape: [value.length], value: value as number[] | boolean[] };
  return { kind: 'literal', dtype, shape: [], value: [value] as number[] | boolean[] };
}

/** True when an argument is an inline literal. */
export function isLiteral(arg: Arg | undefined): arg is Literal {
  return typeof arg === 'object' && arg !== null && !Array.isArray(arg) && arg.kind === 'literal';
}
