// Softmax over one axis with the WebAssembly SIMD kernel (softmax_cols in gemm.wat).
import { mainEngine } from './instance.js';

/** Largest [n, inner] slab, in floats, that the kernel takes: its copy lives in the calling thread's kernel memory. */
export const SOFTMAX_MAX_SLAB = 1 << 23;

/**
 * Softmax over axis 1 of x viewed as [outer, n, inner], plus bias (x's size, or n values when perKey), into
 * out; `half` rounds x + bias to float16 first. Needs n * inner <= SOFTMAX_MAX_SLAB.
 */
export function softmaxSimd(
  out: Float32Array,
  x: Float32Array,
  bias: Float32Array | undefined,
  perKey: boolean,
  outer: number,
  n: number,
  inner: number,
  half: boolean,
): void {
  mainEngine().softmax(out, x, bias, perKey, outer, n, inner, half);
}
