import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { roundToF16 } from '../src/numeric/fp16.js';
import {
  allocF32,
  gemm,
  gemmOnPool,
  gemmSync,
  kernelThreads,
  PARALLEL_MIN_MACS,
  shutdownKernels,
  STAGE_MAX,
  stagingFloats,
  type GemmArgs,
} from '../src/runtime/kernels/gemm.js';
import { roundToF16InPlace } from '../src/runtime/kernels/round-f16.js';
import { softmaxSimd } from '../src/runtime/kernels/softmax.js';
import { attend, attendBlock, attendFits } from '../src/runtime/kernels/attention.js';
import { softmaxScalar } from '../src/ops/defs/activation.js';
import { erf } from '../src/ops/defs/elementwise.js';
import { geluSimd } from '../src/runtime/kernels/gelu.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Deterministic pseudo-random floats in [-1, 1). */
function rand(n: number, seed: number, into: Float32Array = new Float32Array(n)): Float32Array {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    into[i] = (s >>> 0) / 2 ** 31 - 1;
  }
  return into;
}

/**
 * Checks c against a float64 reference of c0 (+)= op(A)·op(B): each element within 1e-5 of the sum of
 * |products| (plus |c0| when accumulating); elements outside C's rows (ldc gaps) must be untouched.
 */
function check(args: Required<Omit<GemmArgs, 'c' | 'f16Chunk'>>, c: Float32Array, c0: Float32Array): void {
  const { M, N, K, a, b, transA, transB, accumulate, lda, ldb, ldc } = args;
  let worst = 0;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let sum = accumulate ? c0[i * ldc + j]! : 0;
      let mag = Math.abs(sum);
      for (let k = 0; k < K; k++) {
        const x = transA ? a[k * lda + i]! : a[i * lda + k]!;
        const y = transB ? b[j * ldb + k]! : b[k * ldb + j]!;
        sum += x * y;
        mag += Math.abs(x * y);
      }
      worst = Math.max(worst, Math.abs(c[i * ldc + j]! - sum) / (mag + 1e-30));
    }
  }
  expect(worst).toBeLessThan(1e-5);
  for (let i = 0; i < c.length; i++) {
    const row = Math.floor(i / ldc);
    if (row >= M || i % ldc >= N) expect(c[i]).toBe(c0[i]);
  }
}

type Run = (args: GemmArgs) => void | Promise<void>;

/** Multiplies random operands with `run` and checks the result, C starting from random values. */
async function trial(
  run: Run,
  M: number,
  N: number,
  K: number,
  opts: Partial<GemmArgs> & { shared?: boolean; offset?: number } = {},
): Promise<void> {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const lda = opts.lda ?? (transA ? M : K);
  const ldb = opts.ldb ?? (transB ? K : N);
  const ldc = opts.ldc ?? N;
  const off = opts.offset ?? 0;
  const make = (n: number, seed: number): Float32Array => {
    const whole = opts.shared ? allocF32(n + off) : new Float32Array(n + off);
    return rand(n, seed, whole.subarray(off));
  };
  const a = make((transA ? K : M) * lda, M * 7 + K);
  const b = make((transB ? N : K) * ldb, N * 13 + K);
  const c = make(M * ldc, M + N);
  const c0 = c.slice();
  const args = { M, N, K, a, b, transA, transB, accumulate: opts.accumulate ?? false, lda, ldb, ldc };
  await run({ ...args, c });
  check(args, c, c0);
}

const odd = [1, 3, 17, 63, 65, 129];
const sync: Run = (args) => gemmSync(args);

describe('gemm kernels', () => {
  afterAll(shutdownKernels);

  it('ships every .wasm assembled from its .wat (gemm, exp-sums)', () => {
    execFileSync(process.execPath, [`${root}scripts/assemble-wasm.mjs`, '--check'], { stdio: 'pipe' });
  });

  it('multiplies odd shapes, all transposes, on the calling thread', async () => {
    for (const M of odd) {
      for (const N of [1, 16, 17, 65]) {
        for (const K of [1, 3, 63, 257]) {
          for (const transA of [false, true]) {
            for (const transB of [false, true]) await trial(sync, M, N, K, { transA, transB });
          }
        }
      }
    }
  });

  it('accumulates onto C exactly as a float32 sum starting from C', async () => {
    for (const [M, N, K] of [
      [3, 17, 5],
      [65, 33, 300],
      [130, 129, 17],
    ] as const) {
      for (const transB of [false, true]) await trial(sync, M, N, K, { transB, accumulate: true });
    }
    // Accumulating K-chunks taken in place with lda/ldb equals one product over all of K.
    const [M, N, K] = [37, 41, 96];
    const a = rand(M * K, 1);
    const b = rand(N * K, 2);
    const whole = new Float32Array(M * N);
    gemmSync({ M, N, K, a, b, c: whole, transB: true });
    const chunked = new Float32Array(M * N);
    for (let k0 = 0; k0 < K; k0 += 32) {
      gemmSync({
        M,
        N,
        K: 32,
        a: a.subarray(k0),
        lda: K,
        b: b.subarray(k0),
        ldb: K,
        c: chunked,
        transB: true,
        accumulate: true,
      });
    }
    for (let i = 0; i < M * N; i++) expect(Math.abs(chunked[i]! - whole[i]!)).toBeLessThan(1e-5 * K);
  });

  it('emulates a float16 accumulator exactly as K-chunked calls with rounding between them', async () => {
    const [M, N, K] = [37, 41, 200]; // 200 = 6 chunks of 32 and a partial one
    for (const transB of [false, true]) {
      for (const chunk of [32, 96, 300]) {
        const a = rand(M * K, 3);
        const b = rand(N * K, 4);
        const start = roundToF16(rand(M * N, 5));
        const want = start.slice();
        for (let k0 = 0; k0 < K; k0 += chunk) {
          const kc = Math.min(chunk, K - k0);
          const bk = transB ? b.subarray(k0) : b.subarray(k0 * N);
          gemmSync({
            M,
            N,
            K: kc,
            a: a.subarray(k0),
            lda: K,
            b: bk,
            ldb: transB ? K : N,
            transB,
            c: want,
            accumulate: true,
          });
          roundToF16(want);
        }
        const fused = start.slice();
        gemmSync({ M, N, K, a, b, transB, c: fused, accumulate: true, f16Chunk: chunk });
        expect(fused).toEqual(want);
        const pooled = allocF32(M * N);
        pooled.set(start);
        await gemmOnPool({ M, N, K, a, b, transB, c: pooled, accumulate: true, f16Chunk: chunk }, 2);
        expect(pooled).toEqual(want);
      }
    }
    expect(() =>
      gemmSync({
        M: 1,
        N: 1,
        K: 1,
        a: new Float32Array(1),
        b: new Float32Array(1),
        c: new Float32Array(1),
        f16Chunk: 6,
      }),
    ).toThrow(/f16Chunk/);
  });

  it('reads subarray views at odd offsets and row strides, and leaves the gaps of C alone', async () => {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        await trial(sync, 19, 35, 21, { transA, transB, offset: 5, lda: 40, ldb: 37, ldc: 50 });
        await trial(sync, 19, 35, 21, { transA, transB, offset: 3, shared: true, accumulate: true });
      }
    }
  });

  it('handles empty products', async () => {
    await trial(sync, 0, 5, 3);
    await trial(sync, 4, 0, 3);
    await trial(sync, 4, 5, 0);
    await trial(sync, 4, 5, 0, { accumulate: true });
  });

  it('splits products over worker threads, for any thread count and either split side', async () => {
    for (const threads of [2, 3]) {
      const pool: Run = (args) => gemmOnPool(args, threads);
      for (const [M, N, K] of [
        [1, 1, 1],
        [65, 17, 129],
        [17, 129, 63],
        [200, 3, 5],
        [3, 200, 5],
      ] as const) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            await trial(pool, M, N, K, { transA, transB, shared: true, offset: 7 });
            await trial(pool, M, N, K, { transA, transB, accumulate: true });
          }
        }
      }
      await trial(pool, 40, 33, 20, { lda: 25, ldb: 40, ldc: 41, offset: 2, accumulate: true });
    }
  });

  it('runs large products on the pool and small ones inline, shared or not', async () => {
    const prev = process.env['MODERNBERT_ANE_THREADS'];
    process.env['MODERNBERT_ANE_THREADS'] = '2';
    try {
      expect(kernelThreads()).toBe(2);
      const big = [256, 200, 176] as const;
      expect(big[0] * big[1] * big[2]).toBeGreaterThan(PARALLEL_MIN_MACS);
      await trial(gemm, ...big, { transB: true, shared: true });
      await trial(gemm, ...big, { transA: true, accumulate: true });
      await trial(gemm, 30, 20, 10, { shared: true });
      await trial(gemm, 30, 20, 10, { accumulate: true });
      process.env['MODERNBERT_ANE_THREADS'] = '1';
      await trial(gemm, ...big);
      process.env['MODERNBERT_ANE_THREADS'] = 'two';
      expect(() => kernelThreads()).toThrow(/MODERNBERT_ANE_THREADS/);
    } finally {
      if (prev === undefined) delete process.env['MODERNBERT_ANE_THREADS'];
      else process.env['MODERNBERT_ANE_THREADS'] = prev;
    }
  });

  it('cuts products whose unshared operands exceed the staging limit into blocks, so staging stays bounded', async () => {
    await shutdownKernels(); // drops the staging buffers
    // B (100 x 24,000), C (4 x 600,000) and A (24,000 x 100) each above STAGE_MAX floats, not shared.
    await trial((x) => gemmOnPool(x, 2), 4, 24_000, 100, { offset: 3 });
    await trial((x) => gemmOnPool(x, 2), 6, 24_000, 100, { transB: true, accumulate: true, ldb: 101 });
    await trial((x) => gemmOnPool(x, 2), 4, 600_000, 1, { ldc: 600_003 });
    await trial((x) => gemmOnPool(x, 2), 24_000, 4, 100, { transA: true, accumulate: true });
    await trial((x) => gemmOnPool(x, 2), 24_000, 6, 100, { lda: 104 });
    expect(2.4e6).toBeGreaterThan(STAGE_MAX);
    expect(stagingFloats()).toBeGreaterThan(0);
    expect(stagingFloats()).toBeLessThanOrEqual(3 * 1.25 * STAGE_MAX + 3);
  });

  it('rejects arrays too short for their shape, and C overlapping an input', () => {
    const x = new Float32Array(12);
    expect(() => gemmSync({ M: 3, N: 4, K: 5, a: x, b: new Float32Array(20), c: new Float32Array(12) })).toThrow(
      /a has 12 elements, needs 15/,
    );
    expect(() =>
      gemmSync({ M: 3, N: 4, K: 4, a: x, b: new Float32Array(16), c: new Float32Array(12), lda: 3 }),
    ).toThrow(/lda/);
    expect(() => gemmSync({ M: 2, N: 2, K: 2, a: x.subarray(0, 4), b: x.subarray(8), c: x.subarray(2, 6) })).toThrow(
      /overlaps a/,
    );
    expect(() => gemmSync({ M: 1.5, N: 2, K: 2, a: x, b: x, c: new Float32Array(4) })).toThrow(/M must be/);
  });

  it('allocates zeroed shared arrays', () => {
    const x = allocF32(10);
    expect(x.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Array.from(x)).toEqual(new Array(10).fill(0));
  });

  it.skipIf(!existsSync(`${root}dist/runtime/kernels/index.js`))(
    'lets a process exit with idle workers, and keeps it alive under an awaited product',
    () => {
      // The CLI runs dist/ (built by `npm test` before vitest). The second product runs on started workers: a
      // top-level await that they did not keep alive would end the process with exit code 13 before printing.
      const script = `
      import { allocF32, gemm } from '${root}dist/runtime/kernels/index.js';
      const a = allocF32(512 * 512).fill(1), c = allocF32(512 * 512);
      await gemm({ M: 512, N: 512, K: 512, a, b: a, c });
      await new Promise((resolve) => setTimeout(resolve, 100));
      await gemm({ M: 512, N: 512, K: 512, a, b: a, c, accumulate: true });
      console.log(c[0]);`;
      const dir = mkdtempSync(join(tmpdir(), 'kernels-exit-'));
      const file = join(dir, 'main.mjs');
      writeFileSync(file, script);
      const r = spawnSync(process.execPath, [file], {
        env: { ...process.env, MODERNBERT_ANE_THREADS: '2' },
        encoding: 'utf8',
        timeout: 30_000,
      });
      rmSync(dir, { recursive: true });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('1024');
      expect(r.status).toBe(0);
    },
  );
});

describe('roundToF16InPlace', () => {
  it('is bit-identical to roundToF16 at every float16 value, tie and neighbour, and on random floats', () => {
    const xs: number[] = [
      0,
      -0,
      Infinity,
      -Infinity,
      NaN,
      65504,
      65519.99,
      65520,
      65536,
      1e30,
      2 ** -24,
      2 ** -25,
      2 ** -26,
      3 * 2 ** -26,
      1e-45,
    ];
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    const next = (x: number, up: boolean): number => {
      f[0] = x;
      u[0] = u[0]! + (up === x >= 0 ? 1 : -1);
      return f[0]!;
    };
    // Every finite float16 magnitude h, the midpoint to the next one (a tie) and the float32 neighbours of both.
    for (let h = 0; h < 0x7c00; h++) {
      const lo = h === 0 ? 0 : h < 0x400 ? h * 2 ** -24 : (1 + (h & 0x3ff) / 1024) * 2 ** ((h >> 10) - 15);
      const hn = h + 1;
      const hi = hn < 0x400 ? hn * 2 ** -24 : (1 + (hn & 0x3ff) / 1024) * 2 ** ((hn >> 10) - 15);
      const mid = (lo + hi) / 2;
      for (const x of [lo, mid, next(mid, true), next(mid, false), next(lo, true)]) xs.push(x, -x);
    }
    const rnd = new Uint32Array(1 << 20);
    let s = 12345;
    for (let i = 0; i < rnd.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      rnd[i] = Math.imul(s ^ (s >>> 15), 2654435761) >>> 0;
    }
    const input = new Float32Array(xs.length + rnd.length + 3); // + 3: a length that is not a multiple of 4
    input.set(xs);
    new Uint32Array(input.buffer).set(rnd, xs.length);
    const want = roundToF16(input.slice());
    const got = roundToF16InPlace(input.slice());
    const wantBits = new Uint32Array(want.buffer);
    const gotBits = new Uint32Array(got.buffer);
    let mismatches = 0;
    for (let i = 0; i < input.length; i++) if (wantBits[i] !== gotBits[i]) mismatches++;
    expect(mismatches).toBe(0);
    // Also in place on a view at an odd offset, past one internal chunk.
    const big = rand(200_001, 9);
    const view = big.subarray(1);
    const expected = roundToF16(view.slice());
    roundToF16InPlace(view);
    expect(Array.from(view.subarray(0, 1000))).toEqual(Array.from(expected.subarray(0, 1000)));
    expect(new Uint32Array(view.slice().buffer)).toEqual(new Uint32Array(expected.buffer));
  });
});

describe('softmaxSimd', () => {
  /** Scores in [-10, 10) with a tenth of them masked (-1e4), as attention's are. */
  const scores = (n: number, seed: number) => rand(n, seed).map((v, i) => (i % 10 === 3 ? -1e4 : 10 * v));

  it('matches the scalar softmax (float64 exp and sums) within 2e-6 relative, over padded rows, biases and float16 inputs', () => {
    for (const [outer, n, inner, bias, half] of [
      [1, 300, 512, 'key', false],
      [1, 48, 1000, 'full', false],
      [3, 37, 130, 'full', true],
      [2, 50, 9, 'key', true],
      [1, 100, 12, 'none', false],
      [1, 1, 8, 'none', false],
    ] as const) {
      const size = outer * n * inner;
      const x = scores(size, n + inner);
      const b =
        bias === 'none'
          ? undefined
          : bias === 'key'
            ? scores(n, 5).map((v) => (v < 0 ? -1e4 : 0))
            : scores(size, 7).map((v) => (v < -5 ? -1e4 : 0));
      const [want, got] = [new Float32Array(size), new Float32Array(size)];
      softmaxScalar(want, x, b, bias === 'key', outer, n, inner, half);
      softmaxSimd(got, x, b, bias === 'key', outer, n, inner, half);
      let worst = 0;
      for (let i = 0; i < size; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / Math.max(want[i]!, 1e-30));
      expect(worst, `[${outer}, ${n}, ${inner}] ${bias}${half ? ' half' : ''}`).toBeLessThan(2e-6);
    }
  });

  it('gives exact zeros for masked scores and keeps NaN', () => {
    const x = new Float32Array([0, 1, 2, NaN, -1e4, 3, 4, 5]); // 2 rows of 4 columns
    const out = new Float32Array(8);
    softmaxSimd(out, x, undefined, false, 1, 2, 4, false);
    expect(out[4]).toBe(0);
    expect(Number.isNaN(out[3]!)).toBe(true);
    expect(out[0]! + out[4]!).toBeCloseTo(1, 7);
  });
});

describe('attend (fused attention of one query chunk)', () => {
  /** out = V · softmax(K · Q + bias) with the separate kernels, as einsum, add, softmax and einsum run. */
  function separate(
    Sk: number,
    D: number,
    Dv: number,
    W: number,
    k: Float32Array,
    q: Float32Array,
    v: Float32Array,
    bias: Float32Array | undefined,
  ): Float32Array {
    const scores = new Float32Array(Sk * W);
    gemmSync({ M: Sk, N: W, K: D, a: k, b: q, c: scores });
    const probs = new Float32Array(Sk * W);
    softmaxSimd(probs, scores, bias, bias !== undefined && bias.length === Sk, 1, Sk, W, false);
    const out = new Float32Array(Dv * W);
    gemmSync({ M: Dv, N: W, K: Sk, a: v, b: probs, c: out });
    return out;
  }

  it('is bit for bit the separate kernels, over sub-blocks, a short last block, thread shares and each mask form', async () => {
    await shutdownKernels(); // drops the staging buffers
    // 4,096 keys: sub-blocks of 64 queries; 200 queries leave a last block of 8 (joined to the one before).
    // 1,003 keys and a head of 30: padding of the keys (to 4) and of K's depth inside the kernel's memory;
    // 2,048 keys x 100 queries: a full mask on the pool's threads.
    for (const [Sk, D, Dv, W, mask] of [
      [4096, 64, 64, 200, 'key'],
      [1000, 16, 32, 40, 'full'],
      [300, 64, 64, 512, 'none'],
      [64, 8, 8, 9, 'key'],
      [1003, 30, 24, 37, 'full'],
      [1003, 30, 24, 21, 'key'],
      [2048, 64, 64, 100, 'full'],
    ] as const) {
      const k = rand(Sk * D, 1).map((x) => 2 * x);
      const q = rand(D * W, 2).map((x) => 2 * x);
      const v = rand(Dv * Sk, 3);
      const bias =
        mask === 'none' ? undefined : rand(mask === 'key' ? Sk : Sk * W, 4).map((x) => (x < -0.3 ? -1e4 : 0));
      const out = new Float32Array(Dv * W);
      await attend({ Sk, D, Dv, W, k, q, v, bias, out });
      expect(new Uint32Array(out.buffer), `${Sk} keys, ${W} queries, mask ${mask}`).toEqual(
        new Uint32Array(separate(Sk, D, Dv, W, k, q, v, bias).buffer),
      );
    }
    expect(stagingFloats()).toBeGreaterThan(0); // the large cases ran on the pool
  });

  it('takes slabs the SIMD softmax takes: 8 queries or more, scores of a sub-block within its slab', () => {
    expect(attendFits(8192, 512)).toBe(true);
    expect(attendFits(8192, 7)).toBe(false);
    expect(attendBlock(8192, 512)).toBe(32);
    expect(attendBlock(100, 40)).toBe(40);
  });
});

describe('geluSimd (gelu of the float32 engine)', () => {
  it('equals the scalar float64 loop bit for bit, special values and odd lengths included', () => {
    const n = 200_003; // over three of the driver's 64K chunks, and odd
    const x = rand(n, 9);
    for (let i = 0; i < n; i++) x[i] = x[i]! * (i % 3 === 0 ? 20 : i % 3 === 1 ? 200 : 4);
    x.set([
      0,
      -0,
      1e-30,
      -1e-30,
      8,
      -8,
      40,
      -40,
      1e4,
      -1e4,
      Infinity,
      -Infinity,
      NaN,
      3e38,
      -3e38,
      1e-45,
      -37.6,
      -37.7,
    ]);
    const want = x.map((v) => 0.5 * v * (1 + erf(v * Math.SQRT1_2)));
    const got = new Float32Array(n);
    geluSimd(got, x);
    // Exact values (toEqual tells -0 from 0), NaN where the loop gives NaN whatever its sign bit (x64 and
    // Arm make different default NaNs).
    expect(got).toEqual(want);
    expect(Number.isNaN(got[11]!) && Number.isNaN(got[12]!) && Object.is(got[1], -0)).toBe(true);
  });
});
