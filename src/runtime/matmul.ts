// Matrix products for the interpreter, with the accumulation rule of the arithmetic mode.

import { gemm } from './kernels/index.js';
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
  // The kernel rounds C to float16 after every ACC16_CHUNK values of k, inside the WebAssembly GEMM:
  // the same result as one K-chunked call per chunk with a rounding between them, without a call (and a
  // pool round trip) per chunk, which made fp16-acc16 ~2.6x slower than fp16 on synth-base.
  p.c.fill(0);
  await gemm({ ...p, accumulate: true, f16Chunk: ACC16_CHUNK });
}
