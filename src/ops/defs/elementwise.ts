// Elementwise ops: coremltools' ops/defs/iOS15/elementwise_binary.py (arithmetic, comparisons, logical),
// elementwise_unary.py (abs, exp, sqrt, rsqrt, clip, cast, ...) and iOS17/elementwise_unary.py (cast, clip).

import { binaryArith, mapBroadcast, type BinaryKind } from '../../runtime/broadcast.js';
import { allocData, allocFloat } from '../../runtime/tensor.js';
import {
  attr,
  BOOL,
  constInput,
  F,
  FI,
  FIB,
  FIB17,
  likeX,
  register,
  since,
  STR,
  tensor,
  type InferArgs,
  type Kernel,
  type OnnxLowering,
  type OpDef,
} from '../registry.js';
import { broadcastShapes } from '../shapes.js';
import { f32, floatOut, ONNX_TYPE, onnxSame, sameAsX } from './common.js';
import type { DType, TensorType } from '../../ir/graph.js';

// elementwise_binary.type_inference: broadcast x with y (infer_type_with_broadcast), dtype promoted (x and y share T).
const broadcastXY = (a: InferArgs, dtype?: DType): TensorType[] => {
  const x = a.t('x');
  const y = a.t('y');
  return [{ dtype: dtype ?? x.dtype, shape: broadcastShapes(x.shape, y.shape, a.fail) }];
};

// Integer operands give integer results (truncated), as MIL's int32 arithmetic does.
const arith =
  (f: (x: number, y: number) => number, kind?: BinaryKind): Kernel =>
  (a) => {
    const x = a.t('x');
    const y = a.t('y');
    if (x.data instanceof Float32Array || y.data instanceof Float32Array) {
      return kind
        ? [binaryArith(kind, x, y, a.op.name)]
        : [mapBroadcast([x, y], floatOut(x.data instanceof Float32Array ? x : y), (v) => f(v[0]!, v[1]!), a.op.name)];
    }
    return [mapBroadcast([x, y], x.dtype, (v) => Math.trunc(f(v[0]!, v[1]!)) | 0, a.op.name)];
  };

// ONNX's binary ops broadcast as MIL's do (numpy rules), so each is one node over (x, y).
const binary = (op: string, run: Kernel, onnxOp: string): OpDef => ({
  op,
  versions: [since('iOS15', tensor('x', FI, 'T'), tensor('y', FI, 'T'))],
  infer: (a) => broadcastXY(a),
  run,
  onnx: onnxSame(onnxOp, 'x', 'y'),
});

const compare = (op: string, f: (x: number, y: number) => boolean, onnx: OnnxLowering, dtypes = FI): OpDef => ({
  op,
  versions: [since('iOS15', tensor('x', dtypes, 'T'), tensor('y', dtypes, 'T'))],
  infer: (a) => broadcastXY(a, 'bool'),
  run: (a) => [mapBroadcast([a.t('x'), a.t('y')], 'bool', (v) => (f(v[0]!, v[1]!) ? 1 : 0), a.op.name)],
  onnx,
});

/** A float unary op computed value by value. */
export const unaryKernel =
  (f: (x: number) => number): Kernel =>
  (a) => {
    const x = a.t('x');
    const xd = f32(x, a);
    const out = allocFloat(xd.length);
    for (let i = 0; i < xd.length; i++) out[i] = f(xd[i]!);
    return [{ dtype: x.dtype, shape: [...x.shape], data: out }];
  };

const unary = (op: string, f: (x: number) => number, onnx: OnnxLowering, dtypes = F): OpDef => ({
  op,
  versions: [since('iOS15', tensor('x', dtypes, 'T'))],
  infer: sameAsX,
  run: unaryKernel(f),
  onnx,
});

// erf with |error| < 1.2e-7 relative to erfc (Numerical Recipes' erfcc, Chebyshev fit).
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r : r - 1;
}

// cast's dtype strings (elementwise_unary.py cast.supported_dtypes; int8/uint8/int16 from iOS 17).
const CAST_TO: Record<string, DType> = {
  fp16: 'fp16',
  fp32: 'fp32',
  int32: 'int32',
  bool: 'bool',
  int16: 'int16',
  int8: 'int8',
  uint8: 'uint8',
};

const castKernel: Kernel = (a) => {
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

register(
  binary(
    'add',
    arith((x, y) => x + y, 'add'),
    'Add',
  ),
  binary(
    'sub',
    arith((x, y) => x - y, 'sub'),
    'Sub',
  ),
  binary(
    'mul',
    arith((x, y) => x * y, 'mul'),
    'Mul',
  ),
  binary(
    'real_div',
    arith((x, y) => x / y, 'div'),
    'Div',
  ),
  binary('maximum', arith(Math.max), 'Max'),
  binary('minimum', arith(Math.min), 'Min'),
  binary('pow', arith(Math.pow), 'Pow'),
  compare('greater', (x, y) => x > y, onnxSame('Greater', 'x', 'y')),
  compare('greater_equal', (x, y) => x >= y, onnxSame('GreaterOrEqual', 'x', 'y')),
  compare('less', (x, y) => x < y, onnxSame('Less', 'x', 'y')),
  compare('less_equal', (x, y) => x <= y, onnxSame('LessOrEqual', 'x', 'y')),
  compare('equal', (x, y) => x === y, onnxSame('Equal', 'x', 'y')),
  compare(
    'not_equal',
    (x, y) => x !== y,
    (a) => void a.node('Not', a.node('Equal', [a.input('x'), a.input('y')]), {}, a.out),
  ),
  // elementwise_binary.py logical_*: bool operands only.
  compare('logical_or', (x, y) => x !== 0 || y !== 0, onnxSame('Or', 'x', 'y'), BOOL),
  compare('logical_and', (x, y) => x !== 0 && y !== 0, onnxSame('And', 'x', 'y'), BOOL),
  {
    op: 'logical_not',
    versions: [since('iOS15', tensor('x', BOOL))],
    infer: sameAsX,
    run: (a) => [mapBroadcast([a.t('x')], 'bool', (v) => (v[0] ? 0 : 1), a.op.name)],
    onnx: onnxSame('Not', 'x'),
  },
  // elementwise_unary_with_int: abs and square also take int32.
  unary('abs', Math.abs, onnxSame('Abs', 'x'), FI),
  unary(
    'square',
    (v) => v * v,
    (a) => void a.node('Mul', [a.input('x'), a.input('x')], {}, a.out),
    FI,
  ),
  unary('exp', Math.exp, onnxSame('Exp', 'x')),
  unary('sqrt', Math.sqrt, onnxSame('Sqrt', 'x')),
  unary('tanh', Math.tanh, onnxSame('Tanh', 'x')),
  unary('erf', erf, onnxSame('Erf', 'x')),
  {
    op: 'rsqrt',
    versions: [
      since('iOS15', tensor('x', F, 'T'), attr('epsilon', F, likeX(1e-12), 'T')),
      since('iOS17', tensor('x', F, 'T'), attr('epsilon', F, likeX(1e-12), 'U')),
    ],
    infer: sameAsX,
    run: (a) => {
      const eps = a.nums('epsilon')[0]!;
      return unaryKernel((v) => 1 / Math.sqrt(v + eps))(a);
    },
    // 1 / sqrt(x + epsilon), as elementwise_unary.py rsqrt defines it.
    onnx: (a) => {
      const x = a.input('x');
      const sum = a.node('Add', [x, a.scalar(a.nums('epsilon')[0]!, a.type('x').dtype)]);
      a.node('Reciprocal', a.node('Sqrt', sum), {}, a.out);
    },
  },
  {
    // Re-registered for iOS 17 with the same inputs (its semantics for alpha > beta changed).
    op: 'clip',
    versions: [
      since('iOS15', tensor('x', F, 'T'), constInput('alpha', F, 'T'), constInput('beta', F, 'T')),
      since('iOS17', tensor('x', F, 'T'), constInput('alpha', F, 'T'), constInput('beta', F, 'T')),
    ],
    infer: sameAsX,
    run: (a) => {
      const [lo, hi] = [a.nums('alpha')[0]!, a.nums('beta')[0]!];
      return unaryKernel((v) => Math.min(Math.max(v, lo), hi))(a);
    },
    onnx: onnxSame('Clip', 'x', 'alpha', 'beta'),
  },
  {
    op: 'cast',
    versions: [
      since('iOS15', tensor('x', FIB, 'T'), constInput('dtype', STR)),
      since('iOS17', tensor('x', FIB17, 'T'), constInput('dtype', STR)),
    ],
    // cast.type_inference: x's shape in the named dtype.
    infer: (a) => {
      const to = a.str('dtype');
      const dtype = Object.hasOwn(CAST_TO, to) ? CAST_TO[to]! : a.fail(`cast to "${to}" is not supported`);
      return [{ dtype, shape: a.t('x').shape }];
    },
    run: castKernel,
    onnx: (a) => void a.node('Cast', [a.input('x')], { to: { int: ONNX_TYPE[a.outTypes[0]!.dtype] } }, a.out),
  },
);
