// CPU implementations of the MIL ops, in float32 with the float16 rules of runtime/numerics.ts where an
// op's inside matters (layer_norm, gelu, softmax, reduce_l2_norm, matrix products). Each op returns fresh
// tensors; the interpreter rounds float outputs to float16 in the float16 modes.

import { ModernBertError } from '../errors.js';
import { numel, type DType, type Op } from '../graph/ir.js';
import { binaryArith, mapBroadcast, type BinaryKind } from './broadcast.js';
import { f16round } from '../numeric/fp16.js';
import { matmul } from './matmul.js';
import type { Numerics } from './numerics.js';
import { allocData, allocFloat, floats, stridesOf, type RtTensor } from './tensor.js';

/** What an op implementation sees of its inputs. */
export interface OpArgs {
  op: Op;
  num: Numerics;
  has(key: string): boolean;
  /** A tensor input (a value, or a literal as a tensor). */
  t(key: string): RtTensor;
  tuple(key: string): RtTensor[];
  ints(key: string): number[];
  nums(key: string): number[];
  bools(key: string): boolean[];
  str(key: string): string;
}

export type OpImpl = (a: OpArgs) => RtTensor[] | Promise<RtTensor[]>;

const fail = (a: OpArgs, msg: string): never => {
  throw new ModernBertError('SHAPE_MISMATCH', `${a.op.op} "${a.op.name}": ${msg}`, { op: a.op.name });
};
const normAxis = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);
const f32 = (t: RtTensor, a: OpArgs) => floats(t, `${a.op.op} "${a.op.name}" input`);
const one = (t: RtTensor): RtTensor[] => [t];
const floatOut = (x: RtTensor): DType => (x.dtype === 'fp16' || x.dtype === 'fp32' ? x.dtype : 'fp32');

// ---- elementwise ---------------------------------------------------------------------------------------

// Integer operands give integer results (truncated), as MIL's int32 arithmetic does.
const binary = (f: (x: number, y: number) => number, kind?: BinaryKind): OpImpl => (a) => {
  const x = a.t('x');
  const y = a.t('y');
  if (x.data instanceof Float32Array || y.data instanceof Float32Array) {
    return kind ? [binaryArith(kind, x, y, a.op.name)] : [mapBroadcast([x, y], floatOut(x.data instanceof Float32Array ? x : y), (v) => f(v[0]!, v[1]!), a.op.name)];
  }
  return [mapBroadcast([x, y], x.dtype, (v) => Math.trunc(f(v[0]!, v[1]!)) | 0, a.op.name)];
};

const compare = (f: (x: number, y: number) => boolean): OpImpl => (a) =>
  one(mapBroadcast([a.t('x'), a.t('y')], 'bool', (v) => (f(v[0]!, v[1]!) ? 1 : 0), a.op.name));

const unary = (f: (x: number) => number): OpImpl => (a) => {
  const x = a.t('x');
  const xd = f32(x, a);
  const out = allocFloat(xd.length);
  for (let i = 0; i < xd.length; i++) out[i] = f(xd[i]!);
  return [{ dtype: x.dtype, shape: [...x.shape], data: out }];
};

// erf with |error| < 1.2e-7 relative to erfc (Numerical Recipes' erfcc, Chebyshev fit).
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

const SQRT1_2 = Math.SQRT1_2;
const GELU_TANH_C = Math.sqrt(2 / Math.PI);

const gelu: OpImpl = (a) => {
  const x = a.t('x');
  const xd = f32(x, a);
  const mode = a.has('mode') ? a.str('mode') : 'EXACT';
  const out = allocFloat(xd.length);
  // Pessimistic float16: each step of 0.5 * x * (1 + erf(x / sqrt 2)) is rounded.
  const r = a.num.fusedExact ? (v: number) => v : f16round;
  if (mode === 'EXACT') {
    for (let i = 0; i < xd.length; i++) {
      const v = xd[i]!;
      out[i] = r(r(0.5 * v) * r(1 + r(erf(r(v * SQRT1_2)))));
    }
  } else if (mode === 'TANH_APPROXIMATION') {
    for (let i = 0; i < xd.length; i++) {
      const v = xd[i]!;
      out[i] = r(r(0.5 * v) * r(1 + r(Math.tanh(r(GELU_TANH_C * r(v + r(0.044715 * r(v * r(v * v)))))))));
    }
  } else if (mode === 'SIGMOID_APPROXIMATION') {
    for (let i = 0; i < xd.length; i++) out[i] = r(xd[i]! / (1 + Math.exp(-1.702 * xd[i]!)));
  } else fail(a, `unknown gelu mode ${mode}`);
  return [{ dtype: x.dtype, shape: [...x.shape], data: out }];
};

// ---- layout ---------------------------------------------------------------------------------------------

const reshapeTo = (x: RtTensor, shape: number[]): RtTensor[] => [{ dtype: x.dtype, shape, data: x.data }];

const reshape: OpImpl = (a) => {
  const x = a.t('x');
  const target = a.ints('shape').map((d, i) => (d === 0 ? x.shape[i]! : d));
  const known = target.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
  const n = numel(x.shape);
  const shape = target.map((d) => (d === -1 ? n / known : d));
  if (numel(shape) !== n || !shape.every(Number.isInteger)) fail(a, `cannot reshape [${x.shape.join(', ')}] to [${target.join(', ')}]`);
  return reshapeTo(x, shape);
};

const expandDims: OpImpl = (a) => {
  const x = a.t('x');
  const axesIn = a.ints('axes');
  const rank = x.shape.length + axesIn.length;
  const axes = axesIn.map((d) => normAxis(d, rank));
  const shape: number[] = [];
  let k = 0;
  for (let d = 0; d < rank; d++) shape.push(axes.includes(d) ? 1 : x.shape[k++]!);
  return reshapeTo(x, shape);
};

const squeeze: OpImpl = (a) => {
  const x = a.t('x');
  const axes = a.has('axes') ? a.ints('axes').map((d) => normAxis(d, x.shape.length)) : x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
  return reshapeTo(x, x.shape.filter((_, i) => !axes.includes(i)));
};

/** Generic N-d transpose (a copy unless only size-1 axes move). */
export function transposeTensor(x: RtTensor, perm: number[]): RtTensor {
  const shape = perm.map((p) => x.shape[p]!);
  const moved = perm.filter((p) => x.shape[p] !== 1);
  if (moved.every((p, i) => i === 0 || p > moved[i - 1]!)) return { dtype: x.dtype, shape, data: x.data };
  const inStrides = stridesOf(x.shape);
  const s = perm.map((p) => inStrides[p]!);
  const out = allocData(x.dtype, x.data.length);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = x.data[src]!;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      src += s[d]!;
      if (idx[d]! < shape[d]!) break;
      src -= s[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return { dtype: x.dtype, shape, data: out };
}

const transpose: OpImpl = (a) => {
  const x = a.t('x');
  return [transposeTensor(x, a.ints('perm').map((p) => normAxis(p, x.shape.length)))];
};

// Copies a box [begin, begin + size) with steps `stride` out of x.
function sliceBox(x: RtTensor, begin: number[], size: number[], stride: number[]): RtTensor {
  const rank = x.shape.length;
  const inStrides = stridesOf(x.shape);
  const out = allocData(x.dtype, numel(size));
  if (out.length === 0) return { dtype: x.dtype, shape: size, data: out };
  // The innermost contiguous run is copied with subarray/set when its stride is 1.
  const inner = size[rank - 1]!;
  const innerStep = stride[rank - 1]!;
  const idx = new Array<number>(rank).fill(0);
  let o = 0;
  for (;;) {
    let src = 0;
    for (let d = 0; d < rank - 1; d++) src += (begin[d]! + idx[d]! * stride[d]!) * inStrides[d]!;
    src += begin[rank - 1]!;
    if (innerStep === 1) (out as Float32Array).set((x.data as Float32Array).subarray(src, src + inner), o);
    else for (let j = 0; j < inner; j++) out[o + j] = x.data[src + j * innerStep]!;
    o += inner;
    let d = rank - 2;
    for (; d >= 0; d--) {
      if (++idx[d]! < size[d]!) break;
      idx[d] = 0;
    }
    if (d < 0) break;
  }
  return { dtype: x.dtype, shape: size, data: out };
}

const sliceByIndex: OpImpl = (a) => {
  const x = a.t('x');
  const r = x.shape.length;
  const begin = a.ints('begin');
  const end = a.ints('end');
  const stride = a.has('stride') ? a.ints('stride') : Array<number>(r).fill(1);
  const bm = a.has('begin_mask') ? a.bools('begin_mask') : Array<boolean>(r).fill(false);
  const em = a.has('end_mask') ? a.bools('end_mask') : Array<boolean>(r).fill(false);
  const sq = a.has('squeeze_mask') ? a.bools('squeeze_mask') : Array<boolean>(r).fill(false);
  const b0: number[] = [];
  const size: number[] = [];
  for (let k = 0; k < r; k++) {
    const d = x.shape[k]!;
    const st = stride[k]!;
    if (st <= 0) fail(a, 'only positive strides are supported');
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
    const b = bm[k] ? 0 : clamp(begin[k]!);
    const e = sq[k] ? b + 1 : em[k] ? d : clamp(end[k]!);
    b0.push(b);
    size.push(Math.max(0, Math.ceil((e - b) / st)));
  }
  const out = sliceBox(x, b0, size, stride);
  return [{ ...out, shape: size.filter((_, k) => !sq[k]) }];
};

const split: OpImpl = (a) => {
  const x = a.t('x');
  const axis = normAxis(a.ints('axis')[0]!, x.shape.length);
  const d = x.shape[axis]!;
  const sizes = a.has('split_sizes') ? a.ints('split_sizes') : Array<number>(a.ints('num_splits')[0]!).fill(d / a.ints('num_splits')[0]!);
  if (sizes.reduce((p, q) => p + q, 0) !== d) fail(a, `split sizes ${sizes.join('+')} do not add up to ${d}`);
  const outs: RtTensor[] = [];
  let start = 0;
  for (const s of sizes) {
    const begin = x.shape.map((_, k) => (k === axis ? start : 0));
    const size = x.shape.map((v, k) => (k === axis ? s : v));
    outs.push(sliceBox(x, begin, size, Array<number>(x.shape.length).fill(1)));
    start += s;
  }
  return outs;
};

const concat: OpImpl = (a) => {
  const vs = a.tuple('values');
  const rank = vs[0]!.shape.length;
  const axis = normAxis(a.ints('axis')[0]!, rank);
  if (a.has('interleave') && a.bools('interleave')[0]) fail(a, 'interleave=True is not supported');
  const shape = [...vs[0]!.shape];
  shape[axis] = vs.reduce((s, v) => s + v.shape[axis]!, 0);
  for (const v of vs) {
    if (v.shape.length !== rank || v.shape.some((d, k) => k !== axis && d !== shape[k])) {
      fail(a, `cannot concatenate [${v.shape.join(', ')}] with [${vs[0]!.shape.join(', ')}] on axis ${axis}`);
    }
  }
  const outer = shape.slice(0, axis).reduce((p, q) => p * q, 1);
  const innerOut = numel(shape.slice(axis));
  const out = allocData(vs[0]!.dtype, outer * innerOut);
  let offset = 0;
  for (const v of vs) {
    const chunk = numel(v.shape.slice(axis));
    for (let o = 0; o < outer; o++) (out as Float32Array).set((v.data as Float32Array).subarray(o * chunk, (o + 1) * chunk), o * innerOut + offset);
    offset += chunk;
  }
  return [{ dtype: vs[0]!.dtype, shape, data: out }];
};

const gather: OpImpl = (a) => {
  const x = a.t('x');
  const idx = a.t('indices');
  const axis = normAxis(a.has('axis') ? a.ints('axis')[0]! : 0, x.shape.length);
  if (a.has('batch_dims') && a.ints('batch_dims')[0] !== 0) fail(a, 'batch_dims other than 0 are not supported');
  const d = x.shape[axis]!;
  const outer = numel(x.shape.slice(0, axis));
  const inner = numel(x.shape.slice(axis + 1));
  const nIdx = idx.data.length;
  const out = allocData(x.dtype, outer * nIdx * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < nIdx; j++) {
      let k = idx.data[j]!;
      if (k < 0) k += d;
      if (!(k >= 0 && k < d)) {
        throw new ModernBertError('BAD_INPUT', `${a.op.op} "${a.op.name}": index ${idx.data[j]} is out of range 0..${d - 1}`, { op: a.op.name });
      }
      const src = (o * d + k) * inner;
      (out as Float32Array).set((x.data as Float32Array).subarray(src, src + inner), (o * nIdx + j) * inner);
    }
  }
  return [{ dtype: x.dtype, shape: [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)], data: out }];
};

const cast: OpImpl = (a) => {
  const x = a.t('x');
  const to = a.str('dtype') as DType;
  const out = allocData(to, x.data.length);
  const wrap: Partial<Record<DType, (v: number) => number>> = {
    int16: (v) => (v << 16) >> 16,
    int8: (v) => (v << 24) >> 24,
    uint8: (v) => v & 0xff,
    int32: (v) => v | 0,
    bool: (v) => (v !== 0 ? 1 : 0),
  };
  const f = wrap[to] ?? ((v: number) => v);
  const isInt = to !== 'fp32' && to !== 'fp16';
  for (let i = 0; i < out.length; i++) out[i] = f(isInt ? Math.trunc(x.data[i]!) : x.data[i]!);
  return [{ dtype: to, shape: [...x.shape], data: out }];
};

const select: OpImpl = (a) => {
  const cond = a.t('cond');
  const x = a.t('a');
  const y = a.t('b');
  const dtype = x.data instanceof Float32Array || y.data instanceof Float32Array ? floatOut(x.data instanceof Float32Array ? x : y) : x.dtype;
  return [mapBroadcast([cond, x, y], dtype, (v) => (v[0] ? v[1]! : v[2]!), a.op.name)];
};

const range1d: OpImpl = (a) => {
  const [start, end, step] = ['start', 'end', 'step'].map((k) => a.nums(k)[0]!) as [number, number, number];
  const n = Math.max(0, Math.ceil((end - start) / step));
  const t = a.t('start');
  const out = allocData(t.dtype, n);
  for (let i = 0; i < n; i++) out[i] = start + i * step;
  return [{ dtype: t.dtype, shape: [n], data: out }];
};

const shapeOp: OpImpl = (a) => {
  const x = a.t('x');
  return [{ dtype: 'int32', shape: [x.shape.length], data: Int32Array.from(x.shape) }];
};

const fillLike: OpImpl = (a) => {
  const ref = a.t('ref_tensor');
  const v = a.has('value') ? a.t('value') : { dtype: 'fp32' as DType, shape: [], data: Float32Array.of(0) };
  const out = allocData(v.dtype, numel(ref.shape));
  out.fill(v.data[0]!);
  return [{ dtype: v.dtype, shape: [...ref.shape], data: out }];
};

// ---- reductions and norms --------------------------------------------------------------------------------

// Views x as [outer, n, inner] around a contiguous set of axes.
function around(x: RtTensor, axes: number[], a: OpArgs): { outer: number; n: number; inner: number } {
  const sorted = [...axes].sort((p, q) => p - q);
  if (sorted.some((v, i) => i > 0 && v !== sorted[i - 1]! + 1)) fail(a, `axes [${axes.join(', ')}] must be contiguous`);
  const first = sorted[0]!;
  const last = sorted[sorted.length - 1]!;
  return { outer: numel(x.shape.slice(0, first)), n: numel(x.shape.slice(first, last + 1)), inner: numel(x.shape.slice(last + 1)) };
}

const reduceAxes = (a: OpArgs, x: RtTensor) => (a.has('axes') ? a.ints('axes').map((v) => normAxis(v, x.shape.length)) : x.shape.map((_, i) => i));

const reduce = (kind: 'sum' | 'mean' | 'max' | 'l2'): OpImpl => (a) => {
  const x = a.t('x');
  const xd = f32(x, a);
  const axes = reduceAxes(a, x);
  const keep = a.has('keep_dims') ? a.bools('keep_dims')[0]! : false;
  const { outer, n, inner } = around(x, axes, a);
  const out = allocFloat(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < inner; j++) {
      const base = o * n * inner + j;
      let acc: number;
      if (kind === 'max') {
        acc = -Infinity;
        for (let k = 0; k < n; k++) acc = Math.max(acc, xd[base + k * inner]!);
      } else if (kind === 'l2') {
        // Scaled by the largest magnitude first, so no square overflows (the overflow-safe l2 norm).
        let m = 0;
        for (let k = 0; k < n; k++) m = Math.max(m, Math.abs(xd[base + k * inner]!));
        let s = 0;
        if (m > 0 && Number.isFinite(m)) for (let k = 0; k < n; k++) s += (xd[base + k * inner]! / m) ** 2;
        acc = m > 0 && Number.isFinite(m) ? m * Math.sqrt(s) : m;
      } else {
        acc = 0;
        for (let k = 0; k < n; k++) acc += xd[base + k * inner]!;
        if (kind === 'mean') acc /= n;
      }
      out[o * inner + j] = acc;
    }
  }
  const shape = keep ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
  return [{ dtype: x.dtype, shape, data: out }];
};

// Norm and softmax walk [outer, n, inner] with the inner axis contiguous: for (1, C, 1, S) over channels,
// every channel step touches S consecutive values, which is what makes these loops fast.

const layerNorm: OpImpl = (a) => {
  const x = a.t('x');
  const xd = f32(x, a);
  const axes = a.ints('axes').map((v) => normAxis(v, x.shape.length));
  const eps = a.has('epsilon') ? a.nums('epsilon')[0]! : 1e-5;
  const gamma = a.has('gamma') ? f32(a.t('gamma'), a) : undefined;
  const beta = a.has('beta') ? f32(a.t('beta'), a) : undefined;
  const { outer, n, inner } = around(x, axes, a);
  const out = allocFloat(xd.length);
  // Pessimistic float16: the mean, the squares and their mean are stored in float16 (overflow past 65504).
  const half = !a.num.fusedExact;
  const mean = new Float64Array(inner);
  const vari = new Float64Array(inner);
  const sq = new Float32Array(inner);
  for (let o = 0; o < outer; o++) {
    const base = o * n * inner;
    mean.fill(0);
    vari.fill(0);
    for (let k = 0; k < n; k++) for (let j = 0, r = base + k * inner; j < inner; j++) mean[j]! += xd[r + j]!;
    for (let j = 0; j < inner; j++) mean[j] = half ? f16round(mean[j]! / n) : mean[j]! / n;
    for (let k = 0; k < n; k++) {
      const r = base + k * inner;
      for (let j = 0; j < inner; j++) {
        const d = half ? f16round(xd[r + j]! - mean[j]!) : xd[r + j]! - mean[j]!;
        sq[j] = d * d;
      }
      if (half) a.num.round(sq);
      for (let j = 0; j < inner; j++) vari[j]! += sq[j]!;
    }
    for (let j = 0; j < inner; j++) {
      const v = half ? f16round(vari[j]! / n) : vari[j]! / n;
      vari[j] = 1 / Math.sqrt(v + eps);
    }
    for (let k = 0; k < n; k++) {
      const r = base + k * inner;
      const g = gamma ? gamma[k]! : 1;
      const bb = beta ? beta[k]! : 0;
      for (let j = 0; j < inner; j++) out[r + j] = (xd[r + j]! - mean[j]!) * vari[j]! * g + bb;
    }
  }
  return [{ dtype: x.dtype, shape: [...x.shape], data: out }];
};

/**
 * Softmax of x (+ bias, when given) over `axis`. The bias is the additive attention mask, fused here so the
 * S x S scores are not written once more; it has x's shape, or one value per position of `axis` (a key
 * mask). In the float16 modes x + bias is rounded first, as the separate add op would round it.
 */
export function softmaxWithBias(x: RtTensor, bias: RtTensor | undefined, axisIn: number, num: Numerics, what: string): RtTensor {
  const xd = floats(x, what);
  const axis = normAxis(axisIn, x.shape.length);
  const outer = numel(x.shape.slice(0, axis));
  const n = x.shape[axis]!;
  const inner = numel(x.shape.slice(axis + 1));
  const bd = bias ? floats(bias, what) : undefined;
  const perKey = bd !== undefined && bd.length !== xd.length;
  if (perKey && bd.length !== n) throw new ModernBertError('SHAPE_MISMATCH', `${what}: a mask of ${bd.length} values does not fit scores [${x.shape.join(', ')}]`);
  const half = num.half;
  const out = allocFloat(xd.length);
  // Pass 1: the (biased) scores into `out`, and the max per column.
  const m = new Float64Array(inner);
  const s = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    const base = o * n * inner;
    m.fill(-Infinity);
    s.fill(0);
    for (let k = 0; k < n; k++) {
      const r = base + k * inner;
      const bk = perKey ? bd[k]! : 0;
      for (let j = 0; j < inner; j++) {
        let v = xd[r + j]! + (bd === undefined ? 0 : perKey ? bk : bd[r + j]!);
        if (half && bd !== undefined) v = f16round(v);
        out[r + j] = v;
        if (v > m[j]!) m[j] = v;
      }
    }
    for (let k = 0; k < n; k++) {
      const r = base + k * inner;
      for (let j = 0; j < inner; j++) {
        // exp(-104) is 0 in float32: masked scores (-1e4) cost no exp.
        const d = out[r + j]! - m[j]!;
        const e = d < -104 ? 0 : Math.exp(d);
        out[r + j] = e;
        s[j]! += e;
      }
    }
    for (let j = 0; j < inner; j++) s[j] = 1 / s[j]!;
    for (let k = 0; k < n; k++) for (let j = 0, r = base + k * inner; j < inner; j++) out[r + j]! *= s[j]!;
  }
  return { dtype: x.dtype, shape: [...x.shape], data: out };
}

const softmax: OpImpl = (a) => [softmaxWithBias(a.t('x'), undefined, a.has('axis') ? a.ints('axis')[0]! : -1, a.num, `${a.op.op} "${a.op.name}"`)];

// ---- matrix products --------------------------------------------------------------------------------------

const conv: OpImpl = async (a) => {
  const x = a.t('x');
  const w = a.t('weight');
  const [nb, cin, h, wd] = x.shape as [number, number, number, number];
  const [cout, win, kh, kw] = w.shape as [number, number, number, number];
  if (kh !== 1 || kw !== 1 || win !== cin) fail(a, `only 1x1 convolutions with matching channels are supported (x [${x.shape.join(', ')}], weight [${w.shape.join(', ')}])`);
  if (a.has('groups') && a.ints('groups')[0] !== 1) fail(a, 'grouped convolutions are not supported');
  if (a.has('strides') && a.ints('strides').some((s) => s !== 1)) fail(a, 'strides other than 1 are not supported');
  const hw = h * wd;
  const out = allocFloat(nb * cout * hw);
  const bias = a.has('bias') ? f32(a.t('bias'), a) : undefined;
  const xd = f32(x, a);
  for (let b = 0; b < nb; b++) {
    const c = out.subarray(b * cout * hw, (b + 1) * cout * hw);
    await matmul({ M: cout, N: hw, K: cin, a: f32(w, a), b: xd.subarray(b * cin * hw, (b + 1) * cin * hw), c }, a.num);
    if (bias) for (let o = 0; o < cout; o++) for (let s = 0; s < hw; s++) c[o * hw + s]! += bias[o]!;
  }
  return [{ dtype: x.dtype, shape: [nb, cout, h, wd], data: out }];
};

const linear: OpImpl = async (a) => {
  const x = a.t('x');
  const w = a.t('weight');
  const [nOut, nIn] = w.shape as [number, number];
  const rows = numel(x.shape) / nIn;
  const out = allocFloat(rows * nOut);
  await matmul({ M: rows, N: nOut, K: nIn, a: f32(x, a), b: f32(w, a), c: out, transB: true }, a.num);
  if (a.has('bias')) {
    const bias = f32(a.t('bias'), a);
    for (let r = 0; r < rows; r++) for (let o = 0; o < nOut; o++) out[r * nOut + o]! += bias[o]!;
  }
  return [{ dtype: x.dtype, shape: [...x.shape.slice(0, -1), nOut], data: out }];
};

const matmulOp: OpImpl = async (a) => {
  const x = a.t('x');
  const y = a.t('y');
  const tx = a.has('transpose_x') && a.bools('transpose_x')[0]!;
  const ty = a.has('transpose_y') && a.bools('transpose_y')[0]!;
  if (x.shape.length < 2 || y.shape.length < 2) fail(a, 'operands must have rank 2 or more');
  const xr = x.shape.length;
  const yr = y.shape.length;
  const M = tx ? x.shape[xr - 1]! : x.shape[xr - 2]!;
  const K = tx ? x.shape[xr - 2]! : x.shape[xr - 1]!;
  const K2 = ty ? y.shape[yr - 1]! : y.shape[yr - 2]!;
  const N = ty ? y.shape[yr - 2]! : y.shape[yr - 1]!;
  if (K !== K2) fail(a, `inner dimensions ${K} and ${K2} differ`);
  const bx = numel(x.shape.slice(0, -2));
  const by = numel(y.shape.slice(0, -2));
  if (bx !== by && bx !== 1 && by !== 1) fail(a, 'batch dimensions must match or be 1');
  const batch = Math.max(bx, by);
  const out = allocFloat(batch * M * N);
  for (let b = 0; b < batch; b++) {
    const xs = f32(x, a).subarray((bx === 1 ? 0 : b) * M * K, ((bx === 1 ? 0 : b) + 1) * M * K);
    const ys = f32(y, a).subarray((by === 1 ? 0 : b) * K * N, ((by === 1 ? 0 : b) + 1) * K * N);
    await matmul({ M, N, K, a: xs, b: ys, c: out.subarray(b * M * N, (b + 1) * M * N), transA: tx, transB: ty }, a.num);
  }
  const batchShape = (bx >= by ? x.shape : y.shape).slice(0, -2);
  return [{ dtype: x.dtype, shape: [...batchShape, M, N], data: out }];
};

// Two-operand einsum as a batched product: labels in both inputs and the output are batch dims,
// in both inputs only are contracted, in one input and the output are free.
const einsum: OpImpl = async (a) => {
  const [x, y] = a.tuple('values') as [RtTensor, RtTensor];
  const eq = a.str('equation');
  const m = /^(\w+),(\w+)->(\w+)$/.exec(eq);
  if (!m) return fail(a, `unsupported equation "${eq}"`);
  const [lx, ly, lo] = [m[1]!, m[2]!, m[3]!];
  if (lx.length !== x.shape.length || ly.length !== y.shape.length) fail(a, `equation "${eq}" does not fit the operand ranks`);
  const size = new Map<string, number>();
  [...lx].forEach((l, i) => size.set(l, x.shape[i]!));
  for (const [i, l] of [...ly].entries()) {
    const prev = size.get(l);
    if (prev !== undefined && prev !== y.shape[i]) fail(a, `label ${l} is ${prev} in one operand and ${y.shape[i]} in the other`);
    size.set(l, y.shape[i]!);
  }
  const batch = [...lo].filter((l) => lx.includes(l) && ly.includes(l));
  const contract = [...lx].filter((l) => ly.includes(l) && !lo.includes(l));
  const freeX = [...lx].filter((l) => !ly.includes(l));
  const freeY = [...ly].filter((l) => !lx.includes(l));
  if ([...lo].some((l) => !batch.includes(l) && !freeX.includes(l) && !freeY.includes(l))) fail(a, `equation "${eq}" is not supported`);
  const prod = (ls: string[]) => ls.reduce((p, l) => p * size.get(l)!, 1);
  const [B, M, K, N] = [prod(batch), prod(freeX), prod(contract), prod(freeY)];
  const xp = transposeTensor(x, [...batch, ...freeX, ...contract].map((l) => lx.indexOf(l)));
  const yp = transposeTensor(y, [...batch, ...contract, ...freeY].map((l) => ly.indexOf(l)));
  const out = allocFloat(B * M * N);
  for (let b = 0; b < B; b++) {
    await matmul({ M, N, K, a: f32(xp, a).subarray(b * M * K, (b + 1) * M * K), b: f32(yp, a).subarray(b * K * N, (b + 1) * K * N), c: out.subarray(b * M * N, (b + 1) * M * N) }, a.num);
  }
  const produced = [...batch, ...freeX, ...freeY];
  const res: RtTensor = { dtype: x.dtype, shape: produced.map((l) => size.get(l)!), data: out };
  return [transposeTensor(res, [...lo].map((l) => produced.indexOf(l)))];
};

/** Every op the interpreter runs. */
export const OPS: Record<string, OpImpl> = {
  add: binary((x, y) => x + y, 'add'),
  sub: binary((x, y) => x - y, 'sub'),
  mul: binary((x, y) => x * y, 'mul'),
  real_div: binary((x, y) => x / y, 'div'),
  maximum: binary(Math.max),
  minimum: binary(Math.min),
  pow: binary(Math.pow),
  greater: compare((x, y) => x > y),
  greater_equal: compare((x, y) => x >= y),
  less: compare((x, y) => x < y),
  less_equal: compare((x, y) => x <= y),
  equal: compare((x, y) => x === y),
  not_equal: compare((x, y) => x !== y),
  logical_or: compare((x, y) => x !== 0 || y !== 0),
  logical_and: compare((x, y) => x !== 0 && y !== 0),
  logical_not: (a) => [mapBroadcast([a.t('x')], 'bool', (v) => (v[0] ? 0 : 1), a.op.name)],
  abs: unary(Math.abs),
  exp: unary(Math.exp),
  sqrt: unary(Math.sqrt),
  square: unary((v) => v * v),
  tanh: unary(Math.tanh),
  erf: unary(erf),
  relu: unary((v) => (v > 0 ? v : 0)),
  sigmoid: unary((v) => 1 / (1 + Math.exp(-v))),
  silu: unary((v) => v / (1 + Math.exp(-v))),
  identity: (a) => [a.t('x')],
  rsqrt: (a) => {
    const eps = a.has('epsilon') ? a.nums('epsilon')[0]! : 1e-12;
    return unary((v) => 1 / Math.sqrt(v + eps))(a);
  },
  clip: (a) => {
    const [lo, hi] = [a.nums('alpha')[0]!, a.nums('beta')[0]!];
    return unary((v) => Math.min(Math.max(v, lo), hi))(a);
  },
  gelu,
  reshape,
  expand_dims: expandDims,
  squeeze,
  transpose,
  slice_by_index: sliceByIndex,
  split,
  concat,
  gather,
  cast,
  select,
  range_1d: range1d,
  shape: shapeOp,
  fill_like: fillLike,
  reduce_sum: reduce('sum'),
  reduce_mean: reduce('mean'),
  reduce_max: reduce('max'),
  reduce_l2_norm: reduce('l2'),
  layer_norm: layerNorm,
  softmax,
  conv,
  linear,
  matmul: matmulOp,
  einsum,
};
