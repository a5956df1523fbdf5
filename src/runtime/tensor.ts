// Run-time tensors of the interpreter: a dtype, a concrete shape and row-major data.

import { ModernBertError } from '../errors.js';
import type { DType, TensorData } from '../ir/graph.js';
import { sharedFloat32 } from '../io/weights.js';
import { arenaFloat, blockOf } from './arena.js';

// Long-lived arrays at least this long (weights) live on SharedArrayBuffers, so the kernel workers read
// them in place, and so do the long activations, from the run's arena slabs. Short ones outside the arena
// stay on ordinary buffers: a SharedArrayBuffer that a worker has seen is only freed when that worker's heap
// is collected, which an idle worker rarely does (the few slabs are kept and reused instead).
const SHARED_MIN = 1 << 14;

/** A zeroed float32 array for an activation: from the run's arena (runtime/arena.ts) when long enough. */
export function allocFloat(n: number): Float32Array {
  return arenaFloat(n) ?? new Float32Array(n);
}

/**
 * `a` itself if it is shared (or small), else a shared copy: for weights, which live as long as the model.
 * An array in the run's arena is shared but not long-lived: it is copied too.
 */
export function shareable(a: Float32Array): Float32Array {
  if (a.length < SHARED_MIN || (a.buffer instanceof SharedArrayBuffer && blockOf(a) === undefined)) return a;
  const out = sharedFloat32(a.length);
  out.set(a);
  return out;
}

export interface RtTensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

/** The array type that holds a dtype: float32 for floats, int32 for integers, bytes for bools. */
export function allocData(dtype: DType, n: number): TensorData {
  if (dtype === 'fp32' || dtype === 'fp16') return allocFloat(n);
  if (dtype === 'bool') return new Uint8Array(n);
  return new Int32Array(n);
}

/** Float data of a tensor, or a clear error when it is not a float tensor. */
export function floats(t: RtTensor, what: string): Float32Array {
  if (!(t.data instanceof Float32Array))
    throw new ModernBertError('BAD_INPUT', `${what} must be a float tensor, got ${t.dtype}`);
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

/** Arrays whose values are already float16 values: the float16 modes use them without a rounded copy. */
export const F16_EXACT = new WeakSet<Float32Array>();
