// Small pieces that the op definitions share: kernel errors, float views of inputs, output dtypes.

import { ModernBertError } from '../../errors.js';
import type { DType, TensorType } from '../../graph/ir.js';
import { floats, type RtTensor } from '../../runtime/tensor.js';
import type { InferArgs, OpArgs } from '../registry.js';

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
