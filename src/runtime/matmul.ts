// Matrix products for the interpreter, with the accumulation rule of the arithmetic mode.

import { gemm, type GemmArgs } from './kernels/index.js';
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
    await gemm(p);
    return;
  }
  p.c.fill(0);
  for (let k0 = 0; k0 < p.K; k0 += ACC16_CHUNK) {
    const k1 = Math.min(p.K, k0 + ACC16_CHUNK);
    await gemm({ ...sliceK(p, k0, k1), accumulate: true });
    num.round(p.c);
  }
}

// The K-range [k0, k1) of a product, as views with row strides (no copies).
function sliceK(p: Product, k0: number, k1: number): GemmArgs {
  const K = k1 - k0;
  const a = p.transA ? { a: p.a.subarray(k0 * p.M), lda: p.M } : { a: p.a.subarray(k0), lda: p.K };
  const b = p.transB ? { b: p.b.subarray(k0), ldb: p.K } : { b: p.b.subarray(k0 * p.N), ldb: p.N };
  return { ...p, K, ...a, ...b };
}
