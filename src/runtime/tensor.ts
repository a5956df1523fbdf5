// Run-time tensors of the interpreter: a dtype, a concrete shape and row-major data.

import { ModernBertError } from '../errors.js';
import type { DType, TensorData } from '../graph/ir.js';
import { sharedFloat32 } from '../weights.js';

// Long-lived arrays at least this long (weights) live on SharedArrayBuffers, so the kernel workers read
// them in place. Short-lived activations stay on ordinary buffers: a SharedArrayBuffer that a worker has
// seen is only freed when that worker's heap is collected, which an idle worker rarely does.
const SHARED_MIN = 1 << 14;

/** A zeroed float32 array for an activation: a recycled one of the same length when the pool holds one. */
export function allocFloat(n: number): Float32Array {
  const a = n >= POOL_MIN ? pool.get(n)?.pop() : undefined;
  if (a === undefined) return new Float32Array(n);
  pooledFloats -= n;
  return a.fill(0);
}

// Activations freed by the interpreter, by length, for the next op that needs the same length: a fresh
// array costs a page fault per 4 KB at first touch (measured 16 ns per float under load at 8,192 tokens,
// 3x a SIMD gelu's whole work), and the garbage collector frees dropped ones late, which raised peak RSS.
const POOL_MIN = 1 << 16;
/**
 * Most floats the pool holds (64 MB); arrays freed beyond it are left to the garbage collector. What the
 * pool holds counts in peak RSS: with 256 MB, synth-base-4L at 8,192 tokens peaked 100+ MB higher.
 */
const POOL_MAX = 1 << 24;
const pool = new Map<number, Float32Array[]>();
let pooledFloats = 0;

/**
 * Hands a dead activation to the pool. The caller guarantees that nothing reads `a` any more (no value,
 * view or caller holds it); arrays on shared memory, views and small arrays are not taken.
 */
export function recycleFloat(a: Float32Array): void {
  const n = a.length;
  if (n < POOL_MIN || a.buffer instanceof SharedArrayBuffer || a.byteOffset !== 0 || a.buffer.byteLength !== 4 * n || pooledFloats + n > POOL_MAX) return;
  let list = pool.get(n);
  if (list === undefined) pool.set(n, (list = []));
  list.push(a);
  pooledFloats += n;
}

/** Empties the pool (the interpreter does after each run, so that idle memory goes back to the collector). */
export function drainFloatPool(): void {
  pool.clear();
  pooledFloats = 0;
}

/** Floats the pool holds now (for tests). */
export function pooledFloatCount(): number {
  return pooledFloats;
}

/** `a` itself if it is shared (or small), else a shared copy: for weights, which live as long as the model. */
export function shareable(a: Float32Array): Float32Array {
  if (a.length < SHARED_MIN || a.buffer instanceof SharedArrayBuffer) return a;
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

/** Arrays whose values are already float16 values: the float16 modes use them without a rounded copy. */
export const F16_EXACT = new WeakSet<Float32Array>();
