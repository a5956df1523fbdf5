// fp16-acc16 products: the in-kernel float16 accumulator must give exactly what numerics.ts defines, a float32
// partial sum of ACC16_CHUNK products added to a float16 running sum (here written out as K-chunked float32
// products with a float16 rounding after each), whether the product runs inline or on the worker pool.

import { describe, expect, it } from 'vitest';
import { roundToF16 } from '../src/numeric/fp16.js';
import { gemmSync } from '../src/runtime/kernels/index.js';
import { matmul } from '../src/runtime/matmul.js';
import { ACC16_CHUNK, numericsFor } from '../src/runtime/numerics.js';

function rand(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return roundToF16(new Float32Array([(s / 2 ** 32 - 0.5) * scale]))[0]!;
  });
}

/**
 * The definition, in scalar code: for each K-chunk, C += A_chunk·B_chunk in float32 (k in order), then C
 * rounds to float16. Also returns, per element, how far another float32 summation order inside the chunks
 * can move the result: one float16 spacing of the largest running sum per chunk.
 */
function reference(
  M: number,
  N: number,
  K: number,
  a: Float32Array,
  b: Float32Array,
  transA: boolean,
  transB: boolean,
): { c: Float32Array; slack: Float64Array } {
  const c = new Float32Array(M * N);
  const slack = new Float64Array(M * N);
  const spacing = (v: number) => Math.max(2 ** -24, 2 ** (Math.floor(Math.log2(Math.abs(v) || 1)) - 10));
  const at = (i: number, k: number) => (transA ? a[k * M + i]! : a[i * K + k]!);
  const bt = (k: number, j: number) => (transB ? b[j * K + k]! : b[k * N + j]!);
  for (let k0 = 0; k0 < K; k0 += ACC16_CHUNK) {
    const k1 = Math.min(K, k0 + ACC16_CHUNK);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = k0; k < k1; k++) s = Math.fround(s + Math.fround(at(i, k) * bt(k, j)));
        c[i * N + j] = Math.fround(c[i * N + j]! + s);
        slack[i * N + j] += spacing(2 * Math.abs(c[i * N + j]!));
      }
    }
    roundToF16(c);
  }
  return { c, slack };
}

/** The previous implementation: one float32 GEMM call per K-chunk, accumulating onto C, rounded after each. */
function chunkedCalls(
  M: number,
  N: number,
  K: number,
  a: Float32Array,
  b: Float32Array,
  transA: boolean,
  transB: boolean,
): Float32Array {
  const c = new Float32Array(M * N);
  for (let k0 = 0; k0 < K; k0 += ACC16_CHUNK) {
    const kc = Math.min(ACC16_CHUNK, K - k0);
    const ak = transA ? { a: a.subarray(k0 * M), lda: M } : { a: a.subarray(k0), lda: K };
    const bk = transB ? { b: b.subarray(k0), ldb: K } : { b: b.subarray(k0 * N), ldb: N };
    gemmSync({ M, N, K: kc, ...ak, ...bk, c, transA, transB, accumulate: true });
    roundToF16(c);
  }
  return c;
}

describe('fp16-acc16 matrix products', () => {
  const num = numericsFor('fp16-acc16');
  // Small products run inline; 64·96·768 multiply-adds go to the worker pool.
  for (const [M, N, K] of [
    [5, 7, 200],
    [3, 4, 33],
    [64, 96, 768],
  ] as const) {
    for (const [transA, transB] of [
      [false, false],
      [false, true],
      [true, false],
    ] as const) {
      it(`${M}x${K} by ${K}x${N}${transA ? ', A transposed' : ''}${transB ? ', B transposed' : ''}: a float16 running sum every ${ACC16_CHUNK} products`, async () => {
        // Large values, so that the running sum's float16 rounding is visible.
        const a = rand(M * K, 1, 64);
        const b = rand(K * N, 2, 64);
        const want = reference(M, N, K, a, b, transA, transB);
        const got = new Float32Array(M * N).fill(123); // stale contents must not leak in
        await matmul({ M, N, K, a, b, c: got, transA, transB }, num);
        expect(got).toEqual(chunkedCalls(M, N, K, a, b, transA, transB));
        // The kernel sums a chunk's products in its own (SIMD) order: each chunk's float16 rounding may then
        // land on a neighbouring value.
        for (let i = 0; i < want.c.length; i++)
          expect(Math.abs(got[i]! - want.c[i]!)).toBeLessThanOrEqual(want.slack[i]!);
        // And it is really accumulating in float16: the float32 product differs.
        const exact = new Float32Array(M * N);
        await matmul({ M, N, K, a, b, c: exact, transA, transB }, numericsFor('fp32'));
        expect(Array.from(exact).some((v, i) => v !== got[i])).toBe(true);
      });
    }
  }
});
