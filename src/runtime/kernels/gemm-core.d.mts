// Types of gemm-core.mjs, the plain-JavaScript driver that the worker threads share with the calling thread.

/** One thread's share of a product: C[i0..i1, j0..j1] over all of K; the fields mean what GemmArgs's do. */
export interface GemmTask {
  M: number;
  N: number;
  K: number;
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  transA: boolean;
  transB: boolean;
  accumulate: boolean;
  lda: number;
  ldb: number;
  ldc: number;
  /** 0, or the K-chunk after which C is rounded to float16 (a multiple of 4). */
  f16Chunk: number;
  /** Where A already lies packed in the engine's memory (GemmEngine.packA), if it does. */
  packedA?: number;
  i0: number;
  i1: number;
  j0: number;
  j1: number;
}

/** One thread's share of a chunk of attention (queries [q0, q1)): out = V · softmax(K · Q + bias) over the keys. */
export interface AttendTask {
  kind: 'attend';
  /** Keys, head size of q and k, head size of v. */
  Sk: number;
  D: number;
  Dv: number;
  /** K [Sk, D], Q [D, W], V [Dv, Sk] and out [Dv, W], row-major with these row strides. */
  k: Float32Array;
  q: Float32Array;
  v: Float32Array;
  out: Float32Array;
  ldk: number;
  ldq: number;
  ldv: number;
  ldo: number;
  /** Additive mask: [Sk, W] with row stride ldb, or Sk values (perKey); absent for none. */
  bias: Float32Array | undefined;
  perKey: boolean;
  ldb: number;
  q0: number;
  q1: number;
  /** Queries per sub-block (the scores of one sub-block, Sk x block, stay in cache). */
  block: number;
}

/** The compiled kernels: a WebAssembly.Module, opaque here because the project's libs declare no WebAssembly types. */
export interface KernelModule {
  readonly __brand: 'gemm.wasm';
}

/** Compiles the kernels, with a clear error where WebAssembly SIMD is missing. */
export function loadKernelModule(): KernelModule;

/** One thread's kernel instance and the memory that holds its blocks. */
export class GemmEngine {
  constructor(module: KernelModule);
  /** Computes one task (arguments already validated). */
  run(task: GemmTask): void;
  /** Computes one share of a chunk of attention (arguments already validated). */
  attend(task: AttendTask): void;
  /** gelu (erf form) of every element of x into out: float64 inside, rounded once to float32. */
  gelu(out: Float32Array, x: Float32Array): void;
  /** Rounds every element of `a` to the nearest float16 value in place. */
  roundToF16(a: Float32Array): void;
  /** Softmax over axis 1 of x as [outer, n, inner] (+ bias per element, or per position of the axis when perKey) into out. */
  softmax(
    out: Float32Array,
    x: Float32Array,
    bias: Float32Array | undefined,
    perKey: boolean,
    outer: number,
    n: number,
    inner: number,
    half: boolean,
  ): void;
}
