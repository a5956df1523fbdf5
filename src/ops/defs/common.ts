// Small pieces that the op definitions share: kernel errors, float views of inputs, output dtypes.

import { ModernBertError } from '../../errors.js';
import type { DType, TensorType } from '../../ir/graph.js';
import { floats, type RtTensor } from '../../runtime/tensor.js';
import type { InferArgs, OnnxArgs, OpArgs } from '../registry.js';

/** A kernel error naming the op. */
export const fail = (a: OpArgs, msg: string): never => {
  throw new ModernBertError('SHAPE_MISMATCH', `${a.op.op} "${a.op.name}": ${msg}`, { op: a.op.name });
};

/** The float data of a kernel input. */
export const f32 = (t: RtTensor, a: OpArgs): Float32Array => floats(t, `${a.op.op} "${a.op.name}" input`);

/** Float outputs keep a float input's type; an integer input's float result is fp32. */
export const floatOut = (x: RtTensor): DType => (x.dtype === 'fp16' || x.dtype === 'fp32' ? x.dtype : 'fp32');

/** Type inference of ops whose output has the type of `x` (coremltools: `return self.x.sym_type`). */
export const sameAsX = (a: InferArgs): TensorType[] => [a.t('x')];

/** ONNX TensorProto.DataType codes of our dtypes (onnx.proto). */
// The compressed weights' types never reach ONNX (onnx/fold-constexpr.ts expands their constexpr ops first):
// 0 is ONNX's UNDEFINED, which onnxruntime refuses, should one ever slip through.
export const ONNX_TYPE: Record<DType, number> = {
  fp32: 1,
  uint8: 2,
  int8: 3,
  int16: 5,
  int32: 6,
  bool: 9,
  fp16: 10,
  uint32: 0,
  int4: 0,
  uint1: 0,
  uint2: 0,
  uint3: 0,
  uint4: 0,
  uint6: 0,
};
/** ONNX's int64, which no MIL value of ours has but some ONNX forms need. */
export const ONNX_TYPE_INT64 = 7;

/** ONNX's largest int64 slice end, as a JavaScript number (ONNX clamps ends to the axis). */
export const ONNX_END = Number.MAX_SAFE_INTEGER;

/** The ONNX lowering of an op that maps to one ONNX node over the same inputs (`keys`, in ONNX's order). */
export const onnxSame =
  (opType: string, ...keys: string[]) =>
  (a: OnnxArgs): void => {
    a.node(
      opType,
      keys.map((k) => a.input(k)),
      {},
      a.out,
    );
  };
