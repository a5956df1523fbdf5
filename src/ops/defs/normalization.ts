// Norms and reductions: coremltools' ops/defs/iOS15/normalization.py (layer_norm, l2_norm) and
// reduction.py (ReductionAxes: reduce_sum, reduce_mean, reduce_max, reduce_min, reduce_l2_norm). Norms walk
// [outer, n, inner] with the inner axis contiguous: for (1, C, 1, S) over channels every channel step
// touches S consecutive values, which is what makes these loops fast.

import { literal, numel, type TensorType } from '../../ir/graph.js';
import { f16round } from '../../numeric/fp16.js';
import { allocFloat, type RtTensor } from '../../runtime/tensor.js';
import {
  attr,
  BOOL,
  F,
  FI,
  I32,
  likeX,
  register,
  since,
  tensor,
  type InferArgs,
  type Kernel,
  type OnnxArgs,
  type OpArgs,
  type OpDef,
} from '../registry.js';
import { normAxis } from '../shapes.js';
import { f32, fail, sameAsX } from './common.js';

// Views x as [outer, n, inner] around a contiguous set of axes.
function around(x: RtTensor, axes: number[], a: OpArgs): { outer: number; n: number; inner: number } {
  const sorted = [...axes].sort((p, q) => p - q);
  if (sorted.some((v, i) => i > 0 && v !== sorted[i - 1]! + 1)) fail(a, `axes [${axes.join(', ')}] must be contiguous`);
  const first = sorted[0]!;
  const last = sorted[sorted.length - 1]!;
  return {
    outer: numel(x.shape.slice(0, first)),
    n: numel(x.shape.slice(first, last + 1)),
    inner: numel(x.shape.slice(last + 1)),
  };
}

/** The reduced axes: the `axes` input, or every axis when it is absent (coremltools' None). */
const axesOf = (has: boolean, axes: () => number[], rank: number): number[] =>
  has ? axes().map((v) => normAxis(v, rank)) : Array.from({ length: rank }, (_, i) => i);

// ReductionAxes.type_inference: the reduced axes become 1 with keep_dims, else disappear.
const reduceType = (a: InferArgs): TensorType[] => {
  const x = a.t('x');
  const axes = axesOf(a.has('axes'), () => a.ints('axes'), x.shape.length);
  const keep = a.bools('keep_dims')[0]!;
  return [
    {
      dtype: x.dtype,
      shape: keep ? x.shape.map((d, k) => (axes.includes(k) ? 1 : d)) : x.shape.filter((_, k) => !axes.includes(k)),
    },
  ];
};

const reduceKernel =
  (kind: 'sum' | 'mean' | 'max' | 'min' | 'l2'): Kernel =>
  (a) => {
    const x = a.t('x');
    // int32 reductions (MIL's T includes i32) stay int32: segment starts in packed models are reduce_min of ids.
    const isInt = x.dtype === 'int32';
    const xd: ArrayLike<number> = isInt ? x.data : f32(x, a);
    const axes = axesOf(a.has('axes'), () => a.ints('axes'), x.shape.length);
    const keep = a.bools('keep_dims')[0]!;
    const { outer, n, inner } = around(x, axes, a);
    const out = isInt ? new Int32Array(outer * inner) : allocFloat(outer * inner);
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < inner; j++) {
        const base = o * n * inner + j;
        let acc: number;
        if (kind === 'max') {
          acc = -Infinity;
          for (let k = 0; k < n; k++) acc = Math.max(acc, xd[base + k * inner]!);
        } else if (kind === 'min') {
          acc = Infinity;
          for (let k = 0; k < n; k++) acc = Math.min(acc, xd[base + k * inner]!);
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
        out[o * inner + j] = isInt ? Math.trunc(acc) : acc;
      }
    }
    const shape = keep
      ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d))
      : x.shape.filter((_, i) => !axes.includes(i));
    return [{ dtype: x.dtype, shape, data: out }];
  };

// Opset 17's reductions: ReduceSum takes its axes as an input, the others as an attribute; absent axes reduce all.
const reductionOnnx =
  (onnxOp: string) =>
  (a: OnnxArgs): void => {
    const keepdims = { int: a.bools('keep_dims')[0] ? 1 : 0 };
    const axes = a.has('axes') ? a.ints('axes') : undefined;
    if (onnxOp === 'ReduceSum')
      a.node(onnxOp, axes ? [a.input('x'), a.int64s(axes)] : [a.input('x')], { keepdims }, a.out);
    else a.node(onnxOp, [a.input('x')], axes ? { axes: { ints: axes }, keepdims } : { keepdims }, a.out);
  };

const reduction = (op: string, kind: 'sum' | 'mean' | 'max' | 'min' | 'l2', onnxOp: string): OpDef => ({
  op,
  versions: [
    since('iOS15', tensor('x', FI, 'T'), attr('axes', I32, undefined), attr('keep_dims', BOOL, literal('bool', false))),
  ],
  infer: reduceType,
  run: reduceKernel(kind),
  onnx: reductionOnnx(onnxOp),
});

// LayerNormalization (opset 17) normalises the trailing axes from `axis` on: other contiguous axes (ours:
// channels of (1, C, 1, S)) are moved last around it, which onnxruntime's transpose optimiser can cancel.
const layerNormOnnx = (a: OnnxArgs): void => {
  const rank = a.type('x').shape.length;
  const axes = (a.has('axes') ? a.ints('axes') : Array.from({ length: rank }, (_, i) => i))
    .map((v) => normAxis(v, rank))
    .sort((p, q) => p - q);
  if (axes.some((v, i) => i > 0 && v !== axes[i - 1]! + 1)) a.fail(`axes [${axes.join(', ')}] must be contiguous`);
  if (!a.has('gamma')) a.fail('ONNX export needs gamma (LayerNormalization takes a scale)');
  if (a.round) return layerNormRounded(a, a.round, axes);
  const inputs = [a.input('gamma'), ...(a.has('beta') ? [a.input('beta')] : [])];
  const attrs = { epsilon: { float: a.nums('epsilon')[0]! } };
  const trailing = axes[axes.length - 1] === rank - 1;
  if (trailing) {
    a.node('LayerNormalization', [a.input('x'), ...inputs], { axis: { int: axes[0]! }, ...attrs }, a.out);
    return;
  }
  const perm = [...Array.from({ length: rank }, (_, i) => i).filter((i) => !axes.includes(i)), ...axes];
  const inverse = perm.map((_, i) => perm.indexOf(i));
  const moved = a.node('Transpose', [a.input('x')], { perm: { ints: perm } });
  const normed = a.node('LayerNormalization', [moved[0]!, ...inputs], { axis: { int: rank - axes.length }, ...attrs });
  a.node('Transpose', normed, { perm: { ints: inverse } }, a.out);
};

// The `fp16` emulation's layer_norm, step by step as the kernel below computes it: the mean, the centred
// values, their squares and the mean of those rounded to float16; the output (rounded by the lowering) from
// the unrounded centred values.
function layerNormRounded(a: OnnxArgs, round: (v: string) => string, axes: number[]): void {
  const x = a.input('x');
  const shape = a.type('x').shape;
  const mean = (v: string) => round(a.node('ReduceMean', [v], { axes: { ints: axes }, keepdims: { int: 1 } })[0]!);
  const centred = a.node('Sub', [x, mean(x)])[0]!;
  const d = round(centred);
  const variance = mean(round(a.node('Mul', [d, d])[0]!));
  const eps = a.scalar(a.nums('epsilon')[0]!, a.type('x').dtype);
  let y = a.node('Mul', [centred, a.node('Reciprocal', a.node('Sqrt', a.node('Add', [variance, eps])))[0]!])[0]!;
  // gamma and beta span the normalised axes: viewed with ones elsewhere, they broadcast over x.
  const spread = (v: string) =>
    a.node('Reshape', [v, a.int64s(shape.map((dim, k) => (axes.includes(k) ? Number(dim) : 1)))])[0]!;
  if (a.has('gamma')) y = a.node('Mul', [y, spread(a.input('gamma'))])[0]!;
  if (a.has('beta')) y = a.node('Add', [y, spread(a.input('beta'))])[0]!;
  a.node('Identity', [y], {}, a.out);
}

const layerNorm: Kernel = (a) => {
  const x = a.t('x');
  const xd = f32(x, a);
  const axes = axesOf(a.has('axes'), () => a.ints('axes'), x.shape.length);
  const eps = a.nums('epsilon')[0]!;
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

// l2_norm: x / sqrt(sum(x^2) + epsilon) over the last three axes (rank(x) >= 3).
const l2Norm: Kernel = (a) => {
  const x = a.t('x');
  if (x.shape.length < 3) fail(a, `input rank must be at least 3, got ${x.shape.length}`);
  const xd = f32(x, a);
  const eps = a.nums('epsilon')[0]!;
  const n = numel(x.shape.slice(-3));
  const out = allocFloat(xd.length);
  for (let o = 0; o < xd.length; o += n) {
    let s = 0;
    for (let k = 0; k < n; k++) s += xd[o + k]! ** 2;
    const r = 1 / Math.sqrt(s + eps);
    for (let k = 0; k < n; k++) out[o + k] = xd[o + k]! * r;
  }
  return [{ dtype: x.dtype, shape: [...x.shape], data: out }];
};

register(
  {
    op: 'layer_norm',
    versions: [
      since(
        'iOS15',
        tensor('x', F, 'T'),
        attr('axes', I32, undefined),
        attr('gamma', F, undefined, 'T'),
        attr('beta', F, undefined, 'T'),
        attr('epsilon', F, likeX(1e-5), 'T'),
      ),
      since(
        'iOS17',
        tensor('x', F, 'T'),
        attr('axes', I32, undefined),
        attr('gamma', F, undefined, 'U'),
        attr('beta', F, undefined, 'U'),
        attr('epsilon', F, likeX(1e-5), 'U'),
      ),
    ],
    infer: sameAsX,
    run: layerNorm,
    onnx: layerNormOnnx,
  },
  {
    op: 'l2_norm',
    versions: [
      since('iOS15', tensor('x', F, 'T'), attr('epsilon', F, likeX(1e-6), 'T')),
      since('iOS17', tensor('x', F, 'T'), attr('epsilon', F, likeX(1e-6), 'U')),
    ],
    infer: (a) => (a.t('x').shape.length < 3 ? a.fail('input rank must be at least 3') : sameAsX(a)),
    run: l2Norm,
    // x / sqrt(sum of squares over the last three axes + epsilon), as normalization.py l2_norm defines it.
    onnx: (a) => {
      const x = a.input('x');
      const ss = a.node('ReduceSumSquare', [x], { axes: { ints: [-3, -2, -1] }, keepdims: { int: 1 } });
      const norm = a.node('Sqrt', a.node('Add', [ss[0]!, a.scalar(a.nums('epsilon')[0]!, a.type('x').dtype)]));
      a.node('Div', [x, norm[0]!], {}, a.out);
    },
  },
  reduction('reduce_sum', 'sum', 'ReduceSum'),
  reduction('reduce_mean', 'mean', 'ReduceMean'),
  reduction('reduce_max', 'max', 'ReduceMax'),
  reduction('reduce_min', 'min', 'ReduceMin'),
  reduction('reduce_l2_norm', 'l2', 'ReduceL2'),
);
