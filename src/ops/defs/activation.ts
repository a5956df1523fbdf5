// Activations: coremltools' ops/defs/iOS15/activation.py (gelu, relu, sigmoid, silu, softmax). Their
// type_inference returns x's type. In the float16 modes gelu rounds each step and softmax rounds its
// (biased) input, as runtime/numerics.ts describes.

import { ModernBertError } from '../../errors.js';
import { literal, numel } from '../../ir/graph.js';
import type { Numerics } from '../../runtime/numerics.js';
import { f16round } from '../../numeric/fp16.js';
import { geluSimd, SOFTMAX_MAX_SLAB, softmaxSimd } from '../../runtime/kernels/index.js';
import { allocFloat, floats, type RtTensor } from '../../runtime/tensor.js';
import {
  attr,
  F,
  I32,
  register,
  since,
  STR,
  tensor,
  type Kernel,
  type OnnxArgs,
  type OnnxLowering,
  type OpDef,
} from '../registry.js';
import { normAxis } from '../shapes.js';
import { f32, fail, onnxSame, sameAsX } from './common.js';
import { erf, unaryKernel } from './elementwise.js';

const SQRT1_2 = Math.SQRT1_2;
const GELU_TANH_C = Math.sqrt(2 / Math.PI);

const gelu: Kernel = (a) => {
  const x = a.t('x');
  const xd = f32(x, a);
  const mode = a.str('mode');
  const out = allocFloat(xd.length);
  // Pessimistic float16: each step of 0.5 * x * (1 + erf(x / sqrt 2)) is rounded.
  const r = a.num.fusedExact ? (v: number) => v : f16round;
  if (mode === 'EXACT' && !a.num.half) {
    // Float32: the same arithmetic in SIMD (float64 lanes; its exp, not Math.exp, so the last bit may differ).
    geluSimd(out, xd);
  } else if (mode === 'EXACT') {
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

/**
 * Softmax of x (+ bias, when given) over `axis`. The bias is the additive attention mask, fused here so the
 * S x S scores are not written once more; it has x's shape, or one value per position of `axis` (a key
 * mask). In the float16 modes x + bias is rounded first, as the separate add op would round it.
 */
export function softmaxWithBias(
  x: RtTensor,
  bias: RtTensor | undefined,
  axisIn: number,
  num: Numerics,
  what: string,
): RtTensor {
  const xd = floats(x, what);
  const axis = normAxis(axisIn, x.shape.length);
  const outer = numel(x.shape.slice(0, axis));
  const n = x.shape[axis]!;
  const inner = numel(x.shape.slice(axis + 1));
  const bd = bias ? floats(bias, what) : undefined;
  const perKey = bd !== undefined && bd.length !== xd.length;
  if (perKey && bd.length !== n)
    throw new ModernBertError(
      'SHAPE_MISMATCH',
      `${what}: a mask of ${bd.length} values does not fit scores [${x.shape.join(', ')}]`,
    );
  const out = allocFloat(xd.length);
  // The SIMD kernel for attention's wide slabs (rows padded to 4 columns); the scalar loop for narrow ones.
  if (inner >= 8 && n * (inner + 3) <= SOFTMAX_MAX_SLAB) softmaxSimd(out, xd, bd, perKey, outer, n, inner, num.half);
  else softmaxScalar(out, xd, bd, perKey, outer, n, inner, num.half);
  return { dtype: x.dtype, shape: [...x.shape], data: out };
}

/** The scalar softmax (float64 sums) over axis 1 of x as [outer, n, inner], into out; the SIMD kernel's reference. */
export function softmaxScalar(
  out: Float32Array,
  xd: Float32Array,
  bd: Float32Array | undefined,
  perKey: boolean,
  outer: number,
  n: number,
  inner: number,
  half: boolean,
): void {
  // Pass 1: the (biased) scores into `out`, and the max per column.
  const m = new Float64Array(inner);
  const s = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    const base = o * n * inner;
    m.fill(-Infinity);
    s.fill(0);
    for (let k = 0; k < n; k++) {
      const r = base + k * inner;
      const bk = perKey && bd ? bd[k]! : 0;
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
}

// gelu in ONNX opset 17 operators (Gelu itself is opset 20): each mode as activation.py writes its formula.
// onnxruntime fuses the EXACT pattern x * 0.5 * (1 + erf(x / sqrt 2)) into one Gelu kernel.
// In the `fp16` emulation each step is rounded as the kernel rounds it (a.round; the output by the lowering).
const geluOnnx = (a: OnnxArgs): void => {
  const x = a.input('x');
  const dt = a.type('x').dtype;
  const r = a.round ?? ((v: string) => v);
  const c = (v: number) => a.scalar(v, dt);
  const mul = (p: string, q: string) => r(a.node('Mul', [p, q])[0]!);
  const mode = a.str('mode');
  if (mode === 'SIGMOID_APPROXIMATION') {
    a.node('Mul', [x, a.node('Sigmoid', [a.node('Mul', [x, c(1.702)])[0]!])[0]!], {}, a.out);
    return;
  }
  const inner =
    mode === 'EXACT'
      ? r(a.node('Erf', [mul(x, c(SQRT1_2))])[0]!)
      : mode === 'TANH_APPROXIMATION'
        ? r(a.node('Tanh', [mul(c(GELU_TANH_C), r(a.node('Add', [x, mul(c(0.044715), mul(x, mul(x, x)))])[0]!))])[0]!)
        : a.fail(`unknown gelu mode ${mode}`);
  a.node('Mul', [mul(x, c(0.5)), r(a.node('Add', [inner, c(1)])[0]!)], {}, a.out);
};

const unary = (op: string, f: (x: number) => number, onnx: OnnxLowering): OpDef => ({
  op,
  versions: [since('iOS15', tensor('x', F, 'T'))],
  infer: sameAsX,
  run: unaryKernel(f),
  onnx,
});

register(
  {
    op: 'gelu',
    versions: [since('iOS15', tensor('x', F, 'T'), attr('mode', STR, literal('string', 'EXACT')))],
    infer: sameAsX,
    run: gelu,
    onnx: geluOnnx,
  },
  {
    op: 'softmax',
    versions: [since('iOS15', tensor('x', F, 'T'), attr('axis', I32, literal('int32', -1)))],
    infer: sameAsX,
    run: (a) => [softmaxWithBias(a.t('x'), undefined, a.ints('axis')[0]!, a.num, `${a.op.op} "${a.op.name}"`)],
    // Softmax-13 normalises along one axis, as MIL's does.
    onnx: (a) => void a.node('Softmax', [a.input('x')], { axis: { int: a.ints('axis')[0]! } }, a.out),
  },
  unary('relu', (v) => (v > 0 ? v : 0), onnxSame('Relu', 'x')),
  unary('sigmoid', (v) => 1 / (1 + Math.exp(-v)), onnxSame('Sigmoid', 'x')),
  unary(
    'silu',
    (v) => v / (1 + Math.exp(-v)),
    (a) => void a.node('Mul', [a.input('x'), a.node('Sigmoid', [a.input('x')])[0]!], {}, a.out),
  ),
);
