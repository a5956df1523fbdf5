// Float16 emulation in ONNX: the arithmetic of our interpreter's `fp16` and `fp16-fused` modes
// (runtime/numerics.ts), written as float32 nodes with a float16 round trip (Cast to FLOAT16 and back to
// FLOAT) after every op that computes new values. onnxruntime's CPU Cast rounds to nearest even, overflows
// to infinity and keeps subnormals exactly as roundToF16 does (bench/commands.mjs --check-cast measures it
// over 4M values), and its optimiser keeps the pair (it is not an identity). Inside the ops that the `fp16`
// mode rounds step by step (layer_norm, gelu), the lowerings call `round` on each step (ops/defs/*.ts).
// `fp16-acc16` (float16 running sums inside matrix products) has no ONNX form: it stays on our interpreter.

import type { Precision } from '../runtime/numerics.js';

/** The precisions that lower to ONNX: float32, and the float16 emulations whose ops round only at their edges. */
export type OnnxPrecision = Exclude<Precision, 'fp16-acc16'>;

/** Whether a precision has an ONNX form. */
export function lowersToOnnx(p: Precision): p is OnnxPrecision {
  return p !== 'fp16-acc16';
}

/**
 * Ops whose float outputs are some of their inputs' values, moved or picked (reshapes, slices, gathers,
 * max and min, relu, abs): in float16 emulation their inputs are already rounded, so rounding again would
 * change nothing and only cost a pass over the data.
 */
export const MOVES_VALUES: ReadonlySet<string> = new Set([
  'reshape',
  'transpose',
  'expand_dims',
  'squeeze',
  'identity',
  'split',
  'concat',
  'gather',
  'tile',
  'slice_by_index',
  'slice_by_size',
  'select',
  'maximum',
  'minimum',
  'reduce_max',
  'reduce_min',
  'relu',
  'abs',
]);

/** ONNX FLOAT and FLOAT16 (TensorProto.DataType). */
const FLOAT = 1;
const FLOAT16 = 10;

type Emit = (
  opType: string,
  inputs: readonly string[],
  attrs?: Record<string, { int: number }>,
  outputs?: readonly string[],
) => string[];

/** Emits x rounded to float16 and back (into `out` when given); returns the rounded value's name. */
export function roundTrip(emit: Emit, x: string, out?: string): string {
  const half = emit('Cast', [x], { to: { int: FLOAT16 } })[0]!;
  return emit('Cast', [half], { to: { int: FLOAT } }, out === undefined ? undefined : [out])[0]!;
}
