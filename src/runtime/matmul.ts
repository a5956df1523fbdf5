// Matrix products for the interpreter, with the accumulation rule of the arithmetic mode.

import { ACC16_CHUNK, type Numerics } from './numerics.js';

export interface Product {
  M: number;
  N: number;
  K: number;
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  transA?: boolean;
  transB?: boolean;
}

/** C = A·B with the numerics' accumulation (float32, or a float16 running sum in fp16-acc16). */
export async function matmul(p: Product, num: Numerics): Promise<void> {
  if (num.precision !== 'fp16-acc16' || p.K <= ACC16_CHUNK) {
    gemmJs(p, false);
    return;
  }
  p.c.fill(0);
  for (let k0 = 0; k0 < p.K; k0 += ACC16_CHUNK) {
    const k1 = Math.min(p.K, k0 + ACC16_CHUNK);
    gemmJs(sliceK(p, k0, k1), true);
    num.round(p.c);
  }
}

// The K-range [k0, k1) of a product, as a product over subarrays where the layout allows, else copies.
function sliceK(p: Product, k0: number, k1: number): Product {
  const kk = k1 - k0;
  const a = p.transA ? p.a.subarray(k0 * p.M, k1 * p.M) : copyCols(p.a, p.M, p.K, k0, k1);
  const b = p.transB ? copyCols(p.b, p.N, p.K, k0, k1) : p.b.subarray(k0 * p.N, k1 * p.N);
  return { ...p, K: kk, a, b };
}

function copyCols(src: Float32Array, rows: number, cols: number, c0: number, c1: number): Float32Array {
  const w = c1 - c0;
  const out = new Float32Array(rows * w);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * cols + c0, r * cols + c1), r * w);
  return out;
}

// Plain JavaScript product (row-major), used until the WebAssembly kernels are wired in.
function gemmJs(p: Product, accumulate: boolean): void {
  const { M, N, K, c } = p;
  const a = p.transA ? transpose(p.a, K, M) : p.a;
  const b = p.transB ? transpose(p.b, N, K) : p.b;
  if (!accumulate) c.fill(0, 0, M * N);
  for (let i = 0; i < M; i++) {
    const ci = i * N;
    for (let k = 0; k < K; k++) {
      const aik = a[i * K + k]!;
      const bk = k * N;
      for (let j = 0; j < N; j++) c[ci + j]! += aik * b[bk + j]!;
    }
  }
}

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let q = 0; q < cols; q++) out[q * rows + r] = src[r * cols + q]!;
  return out;
}
