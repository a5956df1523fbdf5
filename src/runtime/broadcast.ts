// Numpy-style broadcasting of elementwise ops over row-major data.

import { ModernBertError } from '../errors.js';
import type { DType, TensorData } from '../ir/graph.js';
import { allocData, allocFloat, stridesOf, type RtTensor } from './tensor.js';

/** The broadcast shape of several shapes. */
function broadcastShape(shapes: number[][], op: string): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const v = s[s.length - rank + i] ?? 1;
      if (v === d || v === 1) continue;
      if (d !== 1)
        throw new ModernBertError(
          'SHAPE_MISMATCH',
          `${op}: cannot broadcast ${shapes.map((x) => `[${x.join(', ')}]`).join(' and ')}`,
          { op },
        );
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
  const shape = broadcastShape(
    inputs.map((t) => t.shape),
    op,
  );
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

export type BinaryKind = 'add' | 'sub' | 'mul' | 'div';

const KERNELS: Record<BinaryKind, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
};

// out[i] = x[i] op y[i % ylen]: y repeats along x (equal shapes, a scalar, or y broadcast over leading dims).
// One loop per op keeps each monomorphic, which V8 compiles to tight code.
function tiled(kind: BinaryKind, x: ArrayLike<number>, y: ArrayLike<number>, out: Float32Array): void {
  const n = out.length;
  const m = y.length;
  for (let o = 0; o < n; o += m) {
    const len = Math.min(m, n - o);
    switch (kind) {
      case 'add':
        for (let j = 0; j < len; j++) out[o + j] = x[o + j]! + y[j]!;
        break;
      case 'sub':
        for (let j = 0; j < len; j++) out[o + j] = x[o + j]! - y[j]!;
        break;
      case 'mul':
        for (let j = 0; j < len; j++) out[o + j] = x[o + j]! * y[j]!;
        break;
      case 'div':
        for (let j = 0; j < len; j++) out[o + j] = x[o + j]! / y[j]!;
        break;
    }
  }
}

// Whether y's shape, right-aligned against out's, is out's trailing dims preceded only by 1s.
function isSuffix(y: number[], out: number[]): boolean {
  const off = out.length - y.length;
  if (off < 0) return false;
  let k = 0;
  while (k < y.length && y[k] === 1) k++;
  for (let i = k; i < y.length; i++) if (y[i] !== out[off + i]) return false;
  return true;
}

/** Arithmetic on float tensors with numpy broadcasting; fast paths for the shapes the model produces. */
export function binaryArith(kind: BinaryKind, x: RtTensor, y: RtTensor, op: string): RtTensor {
  const shape = broadcastShape([x.shape, y.shape], op);
  const n = shape.reduce((a, b) => a * b, 1);
  const dtype = x.dtype === 'fp16' || x.dtype === 'fp32' ? x.dtype : y.dtype;
  if (x.data.length === n && isSuffix(y.shape, shape)) {
    const out = allocFloat(n);
    tiled(kind, x.data, y.data, out);
    return { dtype, shape, data: out };
  }
  if (y.data.length === n && isSuffix(x.shape, shape) && (kind === 'add' || kind === 'mul')) {
    const out = allocFloat(n);
    tiled(kind, y.data, x.data, out);
    return { dtype, shape, data: out };
  }
  const f = KERNELS[kind];
  return mapBroadcast([x, y], dtype, (v) => f(v[0]!, v[1]!), op);
}
