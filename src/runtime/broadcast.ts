// Numpy-style broadcasting of elementwise ops over row-major data.

import { ModernBertError } from '../errors.js';
import type { DType, TensorData } from '../graph/ir.js';
import { allocData, stridesOf, type RtTensor } from './tensor.js';

/** The broadcast shape of several shapes. */
export function broadcastShape(shapes: number[][], op: string): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const v = s[s.length - rank + i] ?? 1;
      if (v === d || v === 1) continue;
      if (d !== 1) throw new ModernBertError('SHAPE_MISMATCH', `${op}: cannot broadcast ${shapes.map((x) => `[${x.join(', ')}]`).join(' and ')}`, { op });
      d = v;
    }
    out.push(d);
  }
  return out;
}

// Strides of `shape` read through the broadcast `out` shape (0 where a dim is broadcast).
function readStrides(shape: number[], out: number[]): number[] {
  const s = stridesOf(shape);
  const off = out.length - shape.length;
  return out.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : s[i - off]!));
}

/** Applies f elementwise over broadcast inputs, writing an output of dtype `dtype`. */
export function mapBroadcast(inputs: RtTensor[], dtype: DType, f: (v: number[]) => number, op: string): RtTensor {
  const shape = broadcastShape(inputs.map((t) => t.shape), op);
  const n = shape.reduce((a, b) => a * b, 1);
  const out = allocData(dtype, n);
  const rank = shape.length;
  if (rank === 0) {
    out[0] = f(inputs.map((t) => t.data[0]!));
    return { dtype, shape, data: out };
  }
  const strides = inputs.map((t) => readStrides(t.shape, shape));
  const inner = shape[rank - 1]!;
  const innerStride = strides.map((s) => s[rank - 1]!);
  const idx = new Array<number>(rank - 1).fill(0);
  const base = new Array<number>(inputs.length).fill(0);
  const vals = new Array<number>(inputs.length);
  const datas: TensorData[] = inputs.map((t) => t.data);
  for (let o = 0; o < n; o += inner) {
    for (let j = 0; j < inner; j++) {
      for (let q = 0; q < datas.length; q++) vals[q] = datas[q]![base[q]! + j * innerStride[q]!]!;
      out[o + j] = f(vals);
    }
    // Advance the multi-index over the outer dims.
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]!++;
      for (let q = 0; q < base.length; q++) base[q]! += strides[q]![d]!;
      if (idx[d]! < shape[d]!) break;
      for (let q = 0; q < base.length; q++) base[q]! -= strides[q]![d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return { dtype, shape, data: out };
}

/** Binary float op with a fast path for equal shapes and scalar operands. */
export function binaryFloat(x: RtTensor, y: RtTensor, f: (a: number, b: number) => number, op: string): RtTensor {
  const xd = x.data;
  const yd = y.data;
  const sameShape = x.shape.length === y.shape.length && x.shape.every((d, i) => d === y.shape[i]);
  if (sameShape) {
    const out = new Float32Array(xd.length);
    for (let i = 0; i < out.length; i++) out[i] = f(xd[i]!, yd[i]!);
    return { dtype: x.dtype, shape: [...x.shape], data: out };
  }
  if (yd.length === 1 && y.shape.length <= x.shape.length) {
    const b = yd[0]!;
    const out = new Float32Array(xd.length);
    for (let i = 0; i < out.length; i++) out[i] = f(xd[i]!, b);
    return { dtype: x.dtype, shape: [...x.shape], data: out };
  }
  return mapBroadcast([x, y], x.dtype === 'fp16' || x.dtype === 'fp32' ? x.dtype : y.dtype, (v) => f(v[0]!, v[1]!), op);
}
