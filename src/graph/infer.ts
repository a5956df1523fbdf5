// Output types of MIL ops, from their input types and literal arguments. Used by the graph builder to
// type every value it creates (the Core ML writer needs them) and by the reader to re-check packages.

import { ModernBertError } from '../errors.js';
import { isLiteral, type Arg, type Dim, type DType, type Literal, type TensorType } from './ir.js';

/** Types of an op's inputs: a tensor type per value input, a list for tuples, the literal itself for immediates. */
export type InputTypes = Record<string, TensorType | TensorType[] | Literal>;

const fail = (op: string, msg: string): never => {
  throw new ModernBertError('SHAPE_MISMATCH', `${op}: ${msg}`, { op });
};

function t(inputs: InputTypes, key: string, op: string): TensorType {
  const v = inputs[key];
  if (v === undefined || Array.isArray(v) || isLiteral(v as Arg)) return fail(op, `input "${key}" must be a tensor value`);
  return v as TensorType;
}

function ints(inputs: InputTypes, key: string, op: string): number[] {
  const v = inputs[key];
  if (!isLiteral(v as Arg)) return fail(op, `input "${key}" must be a literal`);
  return (v as Literal).value as number[];
}

function optInts(inputs: InputTypes, key: string): number[] | undefined {
  const v = inputs[key];
  return isLiteral(v as Arg) ? ((v as Literal).value as number[]) : undefined;
}

function optBools(inputs: InputTypes, key: string): boolean[] | undefined {
  const v = inputs[key];
  return isLiteral(v as Arg) ? ((v as Literal).value as boolean[]) : undefined;
}

const axis = (a: number, rank: number) => (a < 0 ? a + rank : a);

/** Broadcasts two shapes (numpy rules); symbols broadcast only against 1 or themselves. */
export function broadcastShapes(a: Dim[], b: Dim[], op = 'broadcast'): Dim[] {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da === db || db === 1) out.push(da);
    else if (da === 1) out.push(db);
    else fail(op, `cannot broadcast [${a.join(', ')}] with [${b.join(', ')}]`);
  }
  return out;
}

/** Product of a shape's dims, as a number times the list of symbols. */
function factor(shape: Dim[]): { n: number; syms: string[] } {
  let n = 1;
  const syms: string[] = [];
  for (const d of shape) typeof d === 'number' ? (n *= d) : syms.push(d);
  return { n, syms };
}

function reshapeType(x: TensorType, shape: number[], op: string): Dim[] {
  const inF = factor(x.shape);
  const known = shape.filter((d) => d !== -1 && d !== 0).reduce((a, b) => a * b, 1);
  const out: Dim[] = shape.map((d, i) => (d === 0 ? x.shape[i]! : d));
  const minus = shape.indexOf(-1);
  if (minus < 0) {
    if (inF.syms.length === 0 && known !== inF.n) fail(op, `cannot reshape [${x.shape.join(', ')}] to [${shape.join(', ')}]`);
    return out;
  }
  if (inF.syms.length === 0) {
    if (inF.n % known !== 0) fail(op, `cannot reshape [${x.shape.join(', ')}] to [${shape.join(', ')}]`);
    out[minus] = inF.n / known;
  } else if (inF.syms.length === 1 && inF.n === known) {
    out[minus] = inF.syms[0]!;
  } else {
    fail(op, `cannot infer -1 of [${shape.join(', ')}] from symbolic shape [${x.shape.join(', ')}]`);
  }
  return out;
}

function einsumType(eq: string, a: TensorType, b: TensorType, op: string): TensorType {
  const m = /^(\w+),(\w+)->(\w+)$/.exec(eq);
  if (!m) return fail(op, `unsupported einsum equation "${eq}"`);
  const dims = new Map<string, Dim>();
  const bind = (labels: string, shape: Dim[]) => {
    if (labels.length !== shape.length) fail(op, `equation "${eq}" does not fit rank ${shape.length}`);
    [...labels].forEach((l, i) => {
      const d = shape[i]!;
      const prev = dims.get(l);
      if (prev === undefined || prev === 1) dims.set(l, d);
      else if (d !== 1 && d !== prev) fail(op, `label ${l} is ${prev} and ${d}`);
    });
  };
  bind(m[1]!, a.shape);
  bind(m[2]!, b.shape);
  return { dtype: a.dtype, shape: [...m[3]!].map((l) => dims.get(l) ?? fail(op, `output label ${l} unknown`)) };
}

type Infer = (i: InputTypes, op: string) => TensorType[];

const same: Infer = (i, op) => [t(i, 'x', op)];
const binary: Infer = (i, op) => {
  const x = t(i, 'x', op);
  const yArg = i.y;
  const y: TensorType = isLiteral(yArg as Arg) ? { dtype: x.dtype, shape: (yArg as Literal).shape } : t(i, 'y', op);
  return [{ dtype: x.dtype, shape: broadcastShapes(x.shape, y.shape, op) }];
};
const compare: Infer = (i, op) => [{ dtype: 'bool', shape: binary(i, op)[0]!.shape }];
const reduce: Infer = (i, op) => {
  const x = t(i, 'x', op);
  const axes = (optInts(i, 'axes') ?? x.shape.map((_, k) => k)).map((a) => axis(a, x.shape.length));
  const keep = optBools(i, 'keep_dims')?.[0] ?? false;
  const shape = keep ? x.shape.map((d, k) => (axes.includes(k) ? 1 : d)) : x.shape.filter((_, k) => !axes.includes(k));
  return [{ dtype: x.dtype, shape }];
};

/** Output-type rules, one per MIL op that the model definition emits or a package may hold. */
export const INFER: Record<string, Infer> = {
  add: binary, sub: binary, mul: binary, real_div: binary, maximum: binary, minimum: binary, pow: binary,
  greater: compare, greater_equal: compare, less: compare, less_equal: compare, equal: compare, not_equal: compare,
  logical_or: compare, logical_and: compare,
  gelu: same, relu: same, silu: same, sigmoid: same, tanh: same, erf: same, exp: same, abs: same,
  sqrt: same, rsqrt: same, square: same, softmax: same, layer_norm: same, clip: same, logical_not: same,
  reduce_sum: reduce, reduce_mean: reduce, reduce_max: reduce, reduce_l2_norm: reduce,
  identity: same,
  cast: (i, op) => {
    const x = t(i, 'x', op);
    const d = i.dtype as Literal;
    const map: Record<string, DType> = { fp16: 'fp16', fp32: 'fp32', int32: 'int32', int16: 'int16', bool: 'bool', int8: 'int8', uint8: 'uint8' };
    const dtype = map[d.value as string] ?? fail(op, `cast to ${String(d.value)} is not supported`);
    return [{ dtype, shape: x.shape }];
  },
  select: (i, op) => {
    const c = t(i, 'cond', op);
    const shapeOf = (k: string): Dim[] => {
      const v = i[k];
      return isLiteral(v as Arg) ? (v as Literal).shape : t(i, k, op).shape;
    };
    const a = i.a;
    const b = i.b;
    const dtype = !isLiteral(a as Arg) ? t(i, 'a', op).dtype : !isLiteral(b as Arg) ? t(i, 'b', op).dtype : ((a as Literal).dtype as DType);
    return [{ dtype, shape: broadcastShapes(broadcastShapes(c.shape, shapeOf('a'), op), shapeOf('b'), op) }];
  },
  gather: (i, op) => {
    const x = t(i, 'x', op);
    const idx = i.indices;
    const idxShape = isLiteral(idx as Arg) ? (idx as Literal).shape : t(i, 'indices', op).shape;
    const a = axis(optInts(i, 'axis')?.[0] ?? 0, x.shape.length);
    return [{ dtype: x.dtype, shape: [...x.shape.slice(0, a), ...idxShape, ...x.shape.slice(a + 1)] }];
  },
  transpose: (i, op) => {
    const x = t(i, 'x', op);
    const perm = ints(i, 'perm', op).map((p) => axis(p, x.shape.length));
    return [{ dtype: x.dtype, shape: perm.map((p) => x.shape[p]!) }];
  },
  expand_dims: (i, op) => {
    const x = t(i, 'x', op);
    const rank = x.shape.length + ints(i, 'axes', op).length;
    const axes = ints(i, 'axes', op).map((a) => axis(a, rank));
    const out: Dim[] = [];
    let k = 0;
    for (let d = 0; d < rank; d++) out.push(axes.includes(d) ? 1 : x.shape[k++]!);
    return [{ dtype: x.dtype, shape: out }];
  },
  squeeze: (i, op) => {
    const x = t(i, 'x', op);
    const axes = (optInts(i, 'axes') ?? x.shape.flatMap((d, k) => (d === 1 ? [k] : []))).map((a) => axis(a, x.shape.length));
    return [{ dtype: x.dtype, shape: x.shape.filter((_, k) => !axes.includes(k)) }];
  },
  reshape: (i, op) => {
    const x = t(i, 'x', op);
    return [{ dtype: x.dtype, shape: reshapeType(x, ints(i, 'shape', op), op) }];
  },
  conv: (i, op) => {
    const x = t(i, 'x', op);
    const w = t(i, 'weight', op);
    if (x.shape.length !== 4 || w.shape.length !== 4) fail(op, 'only 2-D convolutions over (N, C, H, W) are supported');
    if (w.shape[2] !== 1 || w.shape[3] !== 1) fail(op, 'only 1x1 convolutions are supported');
    if (x.shape[1] !== w.shape[1]) fail(op, `input has ${x.shape[1]} channels, weight expects ${w.shape[1]}`);
    return [{ dtype: x.dtype, shape: [x.shape[0]!, w.shape[0]!, x.shape[2]!, x.shape[3]!] }];
  },
  linear: (i, op) => {
    const x = t(i, 'x', op);
    const w = t(i, 'weight', op);
    if (x.shape[x.shape.length - 1] !== w.shape[1]) fail(op, `input width ${x.shape[x.shape.length - 1]} does not match weight [${w.shape.join(', ')}]`);
    return [{ dtype: x.dtype, shape: [...x.shape.slice(0, -1), w.shape[0]!] }];
  },
  matmul: (i, op) => {
    const x = t(i, 'x', op);
    const y = t(i, 'y', op);
    const tx = optBools(i, 'transpose_x')?.[0] ?? false;
    const ty = optBools(i, 'transpose_y')?.[0] ?? false;
    if (x.shape.length < 2 || y.shape.length < 2) fail(op, 'operands must have rank 2 or more');
    const xs = x.shape;
    const ys = y.shape;
    const m = tx ? xs[xs.length - 1]! : xs[xs.length - 2]!;
    const kx = tx ? xs[xs.length - 2]! : xs[xs.length - 1]!;
    const ky = ty ? ys[ys.length - 1]! : ys[ys.length - 2]!;
    const n = ty ? ys[ys.length - 2]! : ys[ys.length - 1]!;
    if (kx !== ky) fail(op, `inner dimensions ${kx} and ${ky} differ`);
    const batch = broadcastShapes(xs.slice(0, -2), ys.slice(0, -2), op);
    return [{ dtype: x.dtype, shape: [...batch, m, n] }];
  },
  split: (i, op) => {
    const x = t(i, 'x', op);
    const a = axis(ints(i, 'axis', op)[0]!, x.shape.length);
    const sizes = optInts(i, 'split_sizes') ?? (() => {
      const n = ints(i, 'num_splits', op)[0]!;
      const d = x.shape[a];
      if (typeof d !== 'number' || d % n !== 0) return fail(op, `cannot split dim ${String(d)} into ${n}`);
      return Array<number>(n).fill(d / n);
    })();
    if (typeof x.shape[a] === 'number' && sizes.reduce((p, q) => p + q, 0) !== x.shape[a]) fail(op, `split sizes ${sizes.join('+')} != ${x.shape[a]}`);
    return sizes.map((s) => ({ dtype: x.dtype, shape: x.shape.map((d, k) => (k === a ? s : d)) }));
  },
  slice_by_index: (i, op) => {
    const x = t(i, 'x', op);
    const r = x.shape.length;
    const begin = ints(i, 'begin', op);
    const end = ints(i, 'end', op);
    const stride = optInts(i, 'stride') ?? Array<number>(r).fill(1);
    const bm = optBools(i, 'begin_mask') ?? Array<boolean>(r).fill(false);
    const em = optBools(i, 'end_mask') ?? Array<boolean>(r).fill(false);
    const sq = optBools(i, 'squeeze_mask') ?? Array<boolean>(r).fill(false);
    const shape: Dim[] = [];
    for (let k = 0; k < r; k++) {
      const d = x.shape[k]!;
      if ((bm[k] || begin[k] === 0) && em[k] && stride[k] === 1) {
        if (!sq[k]) shape.push(d);
        continue;
      }
      if (typeof d !== 'number') return fail(op, `cannot slice symbolic dimension ${d} with explicit bounds`);
      const norm = (v: number) => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
      const b = bm[k] ? 0 : norm(begin[k]!);
      const e = em[k] ? d : norm(end[k]!);
      const len = Math.max(0, Math.ceil((e - b) / stride[k]!));
      if (!sq[k]) shape.push(len);
    }
    return [{ dtype: x.dtype, shape }];
  },
  concat: (i, op) => {
    const vs = i.values;
    if (!Array.isArray(vs) || vs.length === 0) return fail(op, '"values" must be a non-empty tuple');
    const first = vs[0]!;
    const a = axis(ints(i, 'axis', op)[0]!, first.shape.length);
    let total: Dim = 0;
    for (const v of vs) {
      const d = v.shape[a]!;
      total = typeof total === 'number' && typeof d === 'number' ? total + d : fail(op, 'cannot concatenate along a symbolic dimension');
    }
    return [{ dtype: first.dtype, shape: first.shape.map((d, k) => (k === a ? total : d)) }];
  },
  einsum: (i, op) => {
    const vs = i.values;
    if (!Array.isArray(vs) || vs.length !== 2) return fail(op, '"values" must hold two tensors');
    const eq = (i.equation as Literal).value as string;
    return [einsumType(eq, vs[0]!, vs[1]!, op)];
  },
  range_1d: (i, op) => {
    // Only static ranges have an inferable length; a range up to a run-time size gets its type from the builder.
    const [start, end, step] = ['start', 'end', 'step'].map((k) => i[k]);
    if (!isLiteral(start as Arg) || !isLiteral(end as Arg) || !isLiteral(step as Arg)) return fail(op, 'the length of a dynamic range must be given');
    const [a, b, s] = [start, end, step].map((v) => ((v as Literal).value as number[])[0]!);
    return [{ dtype: (start as Literal).dtype as DType, shape: [Math.max(0, Math.ceil((b! - a!) / s!))] }];
  },
  shape: (i, op) => [{ dtype: 'int32', shape: [t(i, 'x', op).shape.length] }],
  fill_like: (i, op) => {
    const ref = t(i, 'ref_tensor', op);
    const v = i.value as Literal | undefined;
    return [{ dtype: (v?.dtype as DType | undefined) ?? 'fp32', shape: ref.shape }];
  },
};

/** Output types of one op; throws UNSUPPORTED for an op without a rule. */
export function inferTypes(op: string, inputs: InputTypes, name = op): TensorType[] {
  const rule = INFER[op];
  if (!rule) throw new ModernBertError('UNSUPPORTED', `op "${op}" is not supported`, { op: name });
  return rule(inputs, `${op} "${name}"`);
}
