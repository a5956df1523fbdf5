// Single-precision matrix multiply for the CPU runtime: WebAssembly SIMD kernels (gemm.wat), run on the
// calling thread or split over a pool of worker threads that read and write SharedArrayBuffers in place.
import { availableParallelism } from 'node:os';
import { ModernBertError } from '../../errors.js';
import type { GemmTask } from './gemm-core.mjs';
import { kernelModule, mainEngine } from './instance.js';
import { WorkerPool } from './pool.js';

export interface GemmArgs {
  M: number;
  N: number;
  K: number;
  /** Row-major; may be subarray views at any offset. */
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  /** a holds A^T, i.e. [K, M]. */
  transA?: boolean;
  /** b holds B^T, i.e. [N, K] (the usual weight layout [out, in]). */
  transB?: boolean;
  /** c += A·B instead of c = A·B (float32 accumulation onto c's values). */
  accumulate?: boolean;
  /** Row strides of a, b and c in elements (default: their row lengths), e.g. to take a K-chunk of A in place. */
  lda?: number;
  ldb?: number;
  ldc?: number;
  /**
   * Emulates a float16 accumulator: C is rounded to float16 after every `f16Chunk` values of k (a multiple
   * of 4) and at the end, accumulating in float32 within a chunk. Same result as calling with K-chunks,
   * accumulate: true and roundToF16 between calls, without copying C in and out each time.
   */
  f16Chunk?: number;
}

/**
 * Products under this many multiply-adds run on the calling thread: waking a worker and collecting its
 * result costs a sizeable part of such a product, so the pool pays off only above it (docs/PERFORMANCE.md).
 */
export const PARALLEL_MIN_MACS = 1 << 23;

/** Rows of A / columns of B per micro-kernel tile: thread shares are cut at these multiples. */
const MR = 2;
const NR = 16;

/** Checks the arguments and resolves the defaults into a task for the whole of C. */
function wholeTask(args: GemmArgs): GemmTask {
  const { M, N, K, a, b, c } = args;
  for (const [name, v] of [
    ['M', M],
    ['N', N],
    ['K', K],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0)
      throw new RangeError(`gemm: ${name} must be a non-negative integer, got ${v}`);
  }
  const transA = args.transA ?? false;
  const transB = args.transB ?? false;
  const lda = args.lda ?? (transA ? M : K);
  const ldb = args.ldb ?? (transB ? K : N);
  const ldc = args.ldc ?? N;
  // A stored rows x cols with row stride ld must fit its array; rows of C must not run into each other.
  const need = (name: string, arr: Float32Array, rows: number, cols: number, ld: number): void => {
    if (!Number.isSafeInteger(ld) || ld < cols)
      throw new RangeError(`gemm: ld${name} = ${ld} is less than the ${cols} columns of ${name}`);
    const len = rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
    if (arr.length < len) throw new RangeError(`gemm: ${name} has ${arr.length} elements, needs ${len}`);
  };
  need('a', a, transA ? K : M, transA ? M : K, lda);
  need('b', b, transB ? N : K, transB ? K : N, ldb);
  need('c', c, M, N, ldc);
  const f16Chunk = args.f16Chunk ?? 0;
  if (!Number.isSafeInteger(f16Chunk) || f16Chunk < 0 || f16Chunk % 4 !== 0) {
    throw new RangeError(`gemm: f16Chunk must be 0 or a positive multiple of 4, got ${f16Chunk}`);
  }
  for (const [name, x] of [
    ['a', a],
    ['b', b],
  ] as const) {
    if (overlaps(x, c)) throw new RangeError(`gemm: c overlaps ${name}; C is written while ${name} is still read`);
  }
  return {
    M,
    N,
    K,
    a,
    b,
    c,
    transA,
    transB,
    accumulate: args.accumulate ?? false,
    lda,
    ldb,
    ldc,
    f16Chunk,
    i0: 0,
    i1: M,
    j0: 0,
    j1: N,
  };
}

function overlaps(x: Float32Array, y: Float32Array): boolean {
  return (
    x.buffer === y.buffer && x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength
  );
}

/** C = A·B (or C += A·B) on the calling thread, with the WebAssembly SIMD kernels. */
export function gemmSync(args: GemmArgs): void {
  mainEngine().run(wholeTask(args));
}

/** More kernel workers than this is a typo, not a machine. */
const MAX_THREADS = 1024;

let chosenThreads: number | undefined;

/** Sets the threads of every later product (the library's `threads` option); undefined goes back to the default. */
export function setKernelThreads(n: number | undefined): void {
  if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > MAX_THREADS)) {
    throw new ModernBertError('BAD_ARGUMENT', `\`threads\` must be a whole number from 1 to ${MAX_THREADS}, got ${n}`, {
      option: 'threads',
      value: n,
    });
  }
  chosenThreads = n;
}

/** Threads that `gemm` uses: setKernelThreads's, else env MODERNBERT_ANE_THREADS, else os.availableParallelism(). */
export function kernelThreads(): number {
  if (chosenThreads !== undefined) return chosenThreads;
  const env = process.env['MODERNBERT_ANE_THREADS'];
  if (env !== undefined && env !== '') {
    const n = Number(env);
    // A user's setting, so a bad one is a usage error (exit 2), not an internal one.
    if (!/^\s*\d+\s*$/.test(env) || !Number.isInteger(n) || n < 1 || n > MAX_THREADS) {
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `MODERNBERT_ANE_THREADS must be a whole number from 1 to ${MAX_THREADS} (or unset for all ${availableParallelism()} cores), got '${env}'`,
        { variable: 'MODERNBERT_ANE_THREADS', value: env },
      );
    }
    return n;
  }
  return availableParallelism();
}

let pool: WorkerPool | undefined;

/** The pool of `size` kernel workers, made (or remade after a death) on first use. */
export function workerPool(size: number): WorkerPool {
  if (pool === undefined || !pool.healthy || pool.size !== size) {
    void pool?.close();
    pool = new WorkerPool(size, kernelModule());
  }
  return pool;
}

/**
 * C = A·B (or C += A·B), split over the worker pool when the product is large enough, else inline.
 * Arrays backed by SharedArrayBuffer (see allocF32) are used in place; others are copied for the call.
 */
export async function gemm(args: GemmArgs): Promise<void> {
  const threads = kernelThreads();
  if (threads === 1 || args.M * args.N * args.K < PARALLEL_MIN_MACS) gemmSync(args);
  else await gemmOnPool(args, threads);
}

/**
 * C = A·B (or C += A·B) split over `threads` threads whatever the size (gemm decides when): the calling
 * thread computes the first share while threads - 1 pool workers compute the others.
 */
export function gemmOnPool(args: GemmArgs, threads: number): Promise<void> {
  // One product at a time: the staging buffers are shared by every call.
  return onPoolQueue(() => productOnPool(args, threads));
}

let queue: Promise<unknown> = Promise.resolve();

/** Runs `work` after every pool job queued before it (the pool's workers and staging serve one job at a time). */
export function onPoolQueue(work: () => Promise<void>): Promise<void> {
  const run = queue.then(work);
  queue = run.catch(() => undefined);
  return run;
}

async function productOnPool(args: GemmArgs, threads: number): Promise<void> {
  const whole = wholeTask(args);
  const { M, N, K, transA, transB, lda, ldb, ldc } = whole;
  // Operands that need staging are cut into blocks of at most STAGE_MAX floats (columns of B and C, else
  // rows of A and C), so that the staging buffers stay small whatever the length (they live as long as the
  // process): the (2,304, 8,192) activations of a long input would otherwise keep ~200 MB of them.
  const big = (x: Float32Array, floats: number) => !(x.buffer instanceof SharedArrayBuffer) && floats > STAGE_MAX;
  if ((big(whole.b, K * N) || big(whole.c, M * N)) && N > NR) {
    const step = Math.max(NR, Math.floor(STAGE_MAX / Math.max(K, M) / NR) * NR);
    for (let j = 0; j < N; j += step) {
      const n = Math.min(step, N - j);
      await productOnPool(
        { ...args, N: n, b: whole.b.subarray(transB ? j * ldb : j), c: whole.c.subarray(j), lda, ldb, ldc },
        threads,
      );
    }
    return;
  }
  if (big(whole.a, M * K) && M > MR) {
    const step = Math.max(MR, Math.floor(STAGE_MAX / K / MR) * MR);
    for (let i = 0; i < M; i += step) {
      const m = Math.min(step, M - i);
      await productOnPool(
        { ...args, M: m, a: whole.a.subarray(transA ? i : i * lda), c: whole.c.subarray(i * ldc), lda, ldb, ldc },
        threads,
      );
    }
    return;
  }
  const a = staged(0, whole.a, transA ? K : M, transA ? M : K, lda, true);
  const b = staged(1, whole.b, transB ? N : K, transB ? K : N, ldb, true);
  const c = staged(2, whole.c, M, N, ldc, whole.accumulate);
  const task = { ...whole, a: a.data, b: b.data, c: c.data, lda: a.ld, ldb: b.ld, ldc: c.ld };
  // Split the longer side of C, so that the operand every thread packs in full is the smaller one.
  const tasks =
    M >= N
      ? ranges(M, threads, MR).map(([i0, i1]) => ({ ...task, i0, i1 }))
      : ranges(N, threads, NR).map(([j0, j1]) => ({ ...task, j0, j1 }));
  const [first, ...rest] = tasks;
  const others = rest.length > 0 ? workerPool(threads - 1).run(rest) : Promise.resolve();
  try {
    if (first !== undefined) mainEngine().run(first);
  } finally {
    await others;
  }
  if (c.data !== whole.c) copyRows(c.data, N, whole.c, ldc, M, N);
}

/** Largest operand, in floats, copied into one staging buffer (8 MB). */
export const STAGE_MAX = 1 << 21;

/** Floats held by the staging buffers now (what a long input leaves behind; for tests and benchmarks). */
export function stagingFloats(): number {
  return staging.reduce((n, b) => n + (b?.length ?? 0), 0);
}

/**
 * Grow-only shared buffers for operands that are not shared already, one per operand (A, B, C). A fresh
 * SharedArrayBuffer per call would stay alive until every worker that saw it collects garbage, which idle
 * workers rarely do: reusing three buffers keeps memory flat over a forward pass.
 */
let staging: Float32Array[] = [];

/**
 * Matrix `x` (rows x cols, row stride ld) itself when workers can see it, else a compact copy (row stride
 * cols) in staging buffer `slot`, with its values when `fill` (C is only read when accumulating). Products
 * use slots 0-2 (A, B, C); fused attention (attention.ts) uses the next ones.
 */
export function staged(
  slot: number,
  x: Float32Array,
  rows: number,
  cols: number,
  ld: number,
  fill: boolean,
): { data: Float32Array; ld: number } {
  if (x.buffer instanceof SharedArrayBuffer) return { data: x, ld };
  const n = rows * cols;
  let buf = staging[slot];
  if (buf === undefined || buf.length < n) {
    buf = allocF32(Math.ceil(n * 1.25));
    staging[slot] = buf;
  }
  const view = buf.subarray(0, n);
  if (fill) copyRows(x, ld, view, cols, rows, cols);
  return { data: view, ld: cols };
}

/** Copies rows x cols from `src` (row stride lds) to `dst` (row stride ldd). */
function copyRows(src: Float32Array, lds: number, dst: Float32Array, ldd: number, rows: number, cols: number): void {
  if (lds === cols && ldd === cols) dst.set(src.subarray(0, rows * cols));
  else for (let r = 0; r < rows; r++) dst.set(src.subarray(r * lds, r * lds + cols), r * ldd);
}

/** Cuts [0, n) into at most `parts` ranges whose starts are multiples of `align`. */
export function ranges(n: number, parts: number, align: number): [number, number][] {
  const step = Math.ceil(n / parts / align) * align;
  const out: [number, number][] = [];
  for (let s = 0; s < n; s += step) out.push([s, Math.min(n, s + step)]);
  return out;
}

/** A zeroed Float32Array on a SharedArrayBuffer: workers read and write it without copies. */
export function allocF32(n: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(n * 4));
}

/** Terminates the worker pool (optional: idle workers never keep the process alive). */
export async function shutdownKernels(): Promise<void> {
  const p = pool;
  pool = undefined;
  staging = [];
  await p?.close();
}
