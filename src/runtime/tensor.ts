// Run-time tensors of the interpreter: a dtype, a concrete shape and row-major data.

import { ModernBertError } from '../errors.js';
import { numel, type DType, type TensorData } from '../graph/ir.js';

export interface RtTensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

/** The array type that holds a dtype: float32 for floats, int32 for integers, bytes for bools. */
export function allocData(dtype: DType, n: number): TensorData {
  if (dtype === 'fp32' || dtype === 'fp16') return new Float32Array(n);
  if (dtype === 'bool') return new Uint8Array(n);
  return new Int32Array(n);
}

/** A tensor with freshly allocated zeroed data. */
export function zeros(dtype: DType, shape: number[]): RtTensor {
  return { dtype, shape, data: allocData(dtype, numel(shape)) };
}

/** Float data of a tensor, or a clear error when it is not a float tensor. */
export function floats(t: RtTensor, what: string): Float32Array {
  if (!(t.data instanceof Float32Array)) throw new ModernBertError('BAD_INPUT', `${what} must be a float tensor, got ${t.dtype}`);
  return t.data;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}
