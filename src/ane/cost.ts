// What one op costs: floating-point operations and bytes moved, counted from its tensors' shapes. Matrix
// products count 2 per multiply-add (the convention of the reference project's 3.0 TFLOP/s, whose 378 GFLOP
// for ModernBERT-base at 1,024 tokens are the products alone); elementwise work counts a few per element, so
// that shares and totals include it, and layout ops (reshape, slice, concat, gather, ...) count none.

import { ModernBertError } from '../errors.js';
import type { Dim, Graph, Op, TensorType } from '../ir/graph.js';
import { isLiteral } from '../ir/graph.js';
import { valueTypes } from '../ir/value-types.js';
import { storedBytes } from '../coreml/tensor-bytes.js';

/** The cost of one op. */
export interface OpCost {
  flops: number;
  /** Bytes read from non-constant inputs plus bytes written. */
  bytes: number;
  /** Bytes of the constants the op reads (weights, tables), as stored. */
  weightBytes: number;
}

/** Sizes for symbolic dims: one number for every symbol, or a size per symbol (a missing one counts as 1). */
export type SymbolSizes = number | Readonly<Record<string, number>>;

/** A shape with its symbols replaced by sizes. */
export function resolveShape(shape: readonly Dim[], sizes: SymbolSizes): number[] {
  return shape.map((d) => (typeof d === 'number' ? d : typeof sizes === 'number' ? sizes : (sizes[d] ?? 1)));
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Bytes of `n` elements of a dtype, as a tensor holds them (sub-byte types packed). */
function tensorBytes(type: TensorType, sizes: SymbolSizes): number {
  return storedBytes(type.dtype, numel(resolveShape(type.shape, sizes)));
}

/** FLOPs per output element of ops that are not matrix products (layout ops: none). */
const PER_ELEMENT: Record<string, number> = {
  add: 1,
  sub: 1,
  mul: 1,
  real_div: 1,
  maximum: 1,
  minimum: 1,
  pow: 1,
  greater: 1,
  greater_equal: 1,
  less: 1,
  less_equal: 1,
  equal: 1,
  not_equal: 1,
  logical_or: 1,
  logical_and: 1,
  logical_not: 1,
  abs: 1,
  square: 1,
  exp: 1,
  sqrt: 1,
  tanh: 1,
  erf: 1,
  rsqrt: 1,
  clip: 2,
  relu: 1,
  sigmoid: 1,
  silu: 2,
  select: 1,
  cast: 1,
  gelu: 8,
};

/** FLOPs per input element of reductions and norms. */
const PER_INPUT: Record<string, number> = {
  softmax: 5,
  layer_norm: 5,
  l2_norm: 3,
  reduce_sum: 1,
  reduce_mean: 1,
  reduce_max: 1,
  reduce_min: 1,
  reduce_l2_norm: 2,
};

/** Names of the tensor values an op reads (tuple members included; literals are not values). */
export function valueInputs(op: Op): { key: string; name: string }[] {
  return Object.entries(op.inputs).flatMap(([key, arg]) =>
    typeof arg === 'string' ? [{ key, name: arg }] : Array.isArray(arg) ? arg.map((name) => ({ key, name })) : [],
  );
}

/**
 * The cost of `op`. `constant(name)` says whether a value is constant data (a Const, or the output of a
 * constexpr op that decompresses one) and gives its stored bytes.
 */
export function opCost(
  op: Op,
  types: ReadonlyMap<string, TensorType>,
  sizes: SymbolSizes,
  constant: (name: string) => number | undefined,
): OpCost {
  let bytes = 0;
  let weightBytes = 0;
  const shape = (name: string) => resolveShape(types.get(name)?.shape ?? [], sizes);
  for (const { name } of valueInputs(op)) {
    const stored = constant(name);
    if (stored !== undefined) weightBytes += stored;
    else bytes += tensorBytes(types.get(name) ?? { dtype: 'fp16', shape: [] }, sizes);
  }
  for (const o of op.outputs) bytes += tensorBytes(o.type, sizes);
  const out = op.outputs[0] ? resolveShape(op.outputs[0].type.shape, sizes) : [];
  let flops = 0;
  if (op.op === 'conv' && typeof op.inputs.weight === 'string') {
    const w = shape(op.inputs.weight); // (out, in / groups, kh, kw)
    flops = 2 * numel(out) * numel(w.slice(1)) + (op.inputs.bias ? numel(out) : 0);
  } else if ((op.op === 'matmul' || op.op === 'linear') && typeof op.inputs.x === 'string') {
    const x = shape(op.inputs.x);
    const transposed = isLiteral(op.inputs.transpose_x) && op.inputs.transpose_x.value[0] === true;
    const k = op.op === 'linear' ? x.at(-1)! : transposed ? x.at(-2)! : x.at(-1)!;
    flops = 2 * numel(out) * (k ?? 1);
  } else if (op.op === 'einsum' && isLiteral(op.inputs.equation) && Array.isArray(op.inputs.values)) {
    flops = 2 * numel(out) * contracted(String(op.inputs.equation.value), op.inputs.values.map(shape));
  } else if (PER_ELEMENT[op.op] !== undefined) {
    flops = PER_ELEMENT[op.op]! * numel(out);
  } else if (PER_INPUT[op.op] !== undefined && typeof op.inputs.x === 'string') {
    flops = PER_INPUT[op.op]! * numel(shape(op.inputs.x));
  }
  return { flops, bytes, weightBytes };
}

/** The product of the sizes of an einsum's summed indices (those absent from its output). */
function contracted(equation: string, shapes: number[][]): number {
  const [lhs, rhs] = equation.split('->');
  const size = new Map<string, number>();
  (lhs ?? '').split(',').forEach((term, i) => [...term].forEach((ch, d) => size.set(ch, shapes[i]?.[d] ?? 1)));
  let k = 1;
  for (const [ch, n] of size) if (!(rhs ?? '').includes(ch)) k *= n;
  return k;
}

/** The matrix products, which hold nearly all of a transformer's work. */
export const MATRIX_OPS: ReadonlySet<string> = new Set(['conv', 'linear', 'matmul', 'einsum']);

/** FLOPs of the matrix products of one forward pass of `g`, its symbolic dimensions bound by `sizes` (e.g. {S: 128}). */
export function matrixFlops(g: Graph, sizes: Readonly<Record<string, number>> = {}): number {
  for (const v of g.inputs) {
    const free = v.type.shape.find((d) => typeof d === 'string' && sizes[d] === undefined);
    if (free !== undefined)
      throw new ModernBertError('BAD_ARGUMENT', `input ${v.name} has the symbolic dimension ${free}; give its size`, {
        dim: free,
      });
  }
  const types = new Map([...valueTypes(g)].map(([n, v]) => [n, v.type]));
  return g.ops
    .filter((op) => MATRIX_OPS.has(op.op))
    .reduce((s, op) => s + opCost(op, types, sizes, () => undefined).flops, 0);
}
