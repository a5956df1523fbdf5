// Attention over one chunk of queries as one kernel (float32): scores, mask, softmax and the weighted sum
// per cache-sized block of queries, on the calling thread and the pool's workers. The interpreter uses it
// for the einsum -> add -> softmax -> einsum ops of a global layer's query chunk, whose (S_k, chunk) score
// tensors were otherwise written and read three times (16 MB each at 8,192 keys) and single-threaded in
// the softmax; the graph itself keeps the four ops.
import type { AttendTask } from './gemm-core.mjs';
import { mainEngine } from './instance.js';
import { kernelThreads, onPoolQueue, PARALLEL_MIN_MACS, ranges, staged, workerPool } from './gemm.js';
import { SOFTMAX_MAX_SLAB } from './softmax.js';

export interface AttendArgs {
  /** Keys, head size of q and k, head size of v, queries. */
  Sk: number;
  D: number;
  Dv: number;
  W: number;
  /** K [Sk, D], Q [D, W], V [Dv, Sk] (contiguous, row-major). */
  k: Float32Array;
  q: Float32Array;
  v: Float32Array;
  /** Additive mask [Sk, W], or Sk values (one per key), or none. */
  bias?: Float32Array;
  /** out [Dv, W] = V · softmax(K · Q + bias) over the keys. */
  out: Float32Array;
}

/** Scores of one sub-block, in floats: 256K (1 MB), about one core's L2, whatever the number of keys. */
const BLOCK_FLOATS = 1 << 18;

/** Queries per sub-block for Sk keys: a multiple of 16 (the GEMM's tile width), at least 16. */
export function attendBlock(Sk: number, W: number): number {
  return Math.min(Math.max(16, Math.floor(BLOCK_FLOATS / Sk / 16) * 16), W);
}

/** Whether the fused kernel takes these sizes (the SIMD softmax needs 8+ queries and a bounded slab). */
export function attendFits(Sk: number, W: number): boolean {
  return W >= 8 && Sk >= 1 && Sk * (attendBlock(Sk, W) + 16) <= SOFTMAX_MAX_SLAB;
}

/** out = V · softmax(K · Q + bias) over the keys, bit for bit as the separate float32 ops compute it. */
export async function attend(args: AttendArgs): Promise<void> {
  const { Sk, D, Dv, W } = args;
  const perKey = args.bias !== undefined && args.bias.length !== Sk * W;
  const block = attendBlock(Sk, W);
  const task: AttendTask = {
    kind: 'attend',
    Sk,
    D,
    Dv,
    k: args.k,
    q: args.q,
    v: args.v,
    out: args.out,
    ldk: D,
    ldq: W,
    ldv: Sk,
    ldo: W,
    bias: args.bias,
    perKey,
    ldb: W,
    q0: 0,
    q1: W,
    block,
  };
  const threads = kernelThreads();
  const shares = ranges(W, threads, 16).filter(([a, b]) => b - a >= 8);
  if (threads === 1 || shares.length < 2 || Sk * W * (D + Dv) < PARALLEL_MIN_MACS) {
    mainEngine().attend(task);
    return;
  }
  await onPoolQueue(async () => {
    // Workers see only shared memory: operands outside the arena's shared slabs are copied into the
    // staging buffers (a few MB at 8,192 keys, against ~2 x Sk x W x D multiply-adds per call).
    const sh = {
      k: stage(0, args.k),
      q: stage(1, args.q),
      v: stage(2, args.v),
      bias: args.bias === undefined ? undefined : stage(3, args.bias),
      out: stage(4, args.out, false),
    };
    const shared: AttendTask = { ...task, ...sh };
    const [first, ...rest] = shares.map(([q0, q1]) => ({ ...shared, q0, q1 }));
    const others = workerPool(threads - 1).run(rest);
    try {
      mainEngine().attend(first!);
    } finally {
      await others;
    }
    if (sh.out !== args.out) args.out.set(sh.out);
  });
}

/** `x` itself if it is shared, else a copy in the shared staging buffers of gemm.ts (with x's values when `fill`). */
function stage(operand: number, x: Float32Array, fill = true): Float32Array {
  // Slots after the products' three (A, B, C): K, Q, V, mask, out.
  return staged(3 + operand, x, 1, x.length, x.length, fill).data;
}
