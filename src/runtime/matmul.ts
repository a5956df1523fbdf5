// Matrix products for the interpreter, with the accumulation rule of the arithmetic mode.

import { gemm, type GemmArgs } from './kernels/index.js';
import { ACC16_CHUNK, type Numerics } from './numerics.js';

/** C = A·B over row-major arrays (the kernels' arguments without accumulation; row strides for views in place). */
export type Product = Pick<GemmArgs, 'M' | 'N' | 'K' | 'a' | 'b' | 'c' | 'transA' | 'transB' | 'lda' | 'ldb' | 'ldc'>;

/** Largest C (in floats) computed in one kernel call: the kernels stage a non-shared C in a buffer kept for reuse. */
const MAX_C_BLOCK = 1 << 22;

/** C = A·B with the numerics' accumulation (float32, or a float16 running sum in fp16-acc16). */
export async function matmul(p: Product, num: Numerics): Promise<void> {
  // A large C (the decoder's logits) in row blocks: rows of A and of C are contiguous, and the kernels'
  // staging buffer for C stays at 16 MB instead of growing to the whole logits tensor.
  if (!p.transA && p.lda === undefined && p.ldc === undefined && p.M * p.N > MAX_C_BLOCK && p.M > 1) {
    const rows = Math.max(1, Math.floor(MAX_C_BLOCK / p.N));
    for (let i = 0; i < p.M; i += rows) {
      const m = Math.min(rows, p.M - i);
      await matmul(
        { ...p, M: m, a: p.a.subarray(i * p.K, (i + m) * p.K), c: p.c.subarray(i * p.N, (i + m) * p.N) },
        num,
      );
    }
    return;
  }
  if (num.precision !== 'fp16-acc16' || p.K <= ACC16_CHUNK) {
    await gemm(p);
    return;
  }
  // The kernel rounds C to float16 after every ACC16_CHUNK values of k, inside the WebAssembly GEMM:
  // the same result as one K-chunked call per chunk with a rounding between them, without a call (and a
  // pool round trip) per chunk, which cost more than the products themselves (docs/PERFORMANCE.md).
  p.c.fill(0);
  await gemm({ ...p, accumulate: true, f16Chunk: ACC16_CHUNK });
}
