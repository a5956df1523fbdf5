// The activations of one interpreter run, carved from a few large slabs (an arena) and handed back as values
// die. Why: one ArrayBuffer per activation makes gigabytes of fresh allocations in one long forward pass;
// V8 frees dead buffers late (after a collection and a sweep that needs the event loop) and the C allocator
// keeps much of what it gets back, so peak RSS runs far above the values alive at any moment. First fit in
// one large slab, with the parts of a block that no live view covers handed back (the interpreter's Env),
// writes little more slab than the live peak, and nothing is allocated after the first layer
// (docs/PERFORMANCE.md, "Numbers behind the code's choices", has the measurements). The slabs are SharedArrayBuffers, seen by the kernels as
// ordinary Float32Array views and read by the kernel workers in place; the run is found through
// AsyncLocalStorage, so concurrent runs never share a slab, and kernels called outside a run get ordinary
// arrays. A dropped slab's memory goes back once every thread that saw it (the workers too) has collected
// its garbage, as for any SharedArrayBuffer.

import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Arrays shorter than this (128 KB) stay ordinary allocations: the arena is for the S-sized ones, down to the
 * per-chunk arrays that global attention makes at long lengths.
 */
export const ARENA_MIN = 1 << 15;
/**
 * Floats per slab (256 MB; only the pages written count in RSS); a longer array gets a slab of its own
 * length. One slab holds a long input's whole peak, so that no large array has to start a second slab and
 * leave the first one's tail unused.
 */
const SLAB_FLOATS = 1 << 26;
/** Idle slabs are kept this long after a run for the next one, then left to the garbage collector. */
const IDLE_MS = 2000;

/** A live block of a slab, in floats. */
export interface Block {
  readonly slab: Slab;
  readonly offset: number;
  readonly length: number;
}

class Slab {
  readonly floats: Float32Array;
  /** Free ranges [offset, length], by offset, adjacent ones merged. */
  free: [number, number][];
  /** Starts of the live blocks, sorted, and the blocks by start. */
  private starts: number[] = [];
  private readonly live = new Map<number, Block>();
  /** Floats below this have been written since the slab was made; blocks there are zeroed when handed out. */
  private touched = 0;

  constructor(readonly size: number) {
    // Shared, so that the kernel workers read and write activations in place (no staging copies: 22 MB of
    // them and their copying at 8,192 tokens on synth-base-4L).
    this.floats = new Float32Array(new SharedArrayBuffer(size * 4));
    this.free = [[0, size]];
  }

  /** A zeroed block of n floats from the first free range that holds it, or undefined. */
  take(n: number): Float32Array | undefined {
    const k = this.free.findIndex(([, len]) => len >= n);
    if (k < 0) return undefined;
    const [offset, len] = this.free[k]!;
    if (len === n) this.free.splice(k, 1);
    else this.free[k] = [offset + n, len - n];
    const block: Block = { slab: this, offset, length: n };
    this.live.set(offset, block);
    this.starts.splice(insertAt(this.starts, offset), 0, offset);
    const out = this.floats.subarray(offset, offset + n);
    if (offset < this.touched) out.fill(0, 0, Math.min(n, this.touched - offset));
    this.touched = Math.max(this.touched, offset + n);
    return out;
  }

  /** The live block that holds float `at`, if any. */
  blockAt(at: number): Block | undefined {
    const k = insertAt(this.starts, at + 1) - 1;
    const block = k < 0 ? undefined : this.live.get(this.starts[k]!);
    return block !== undefined && at < block.offset + block.length ? block : undefined;
  }

  /** Takes a block back, merging it with free neighbours. */
  give(block: Block): void {
    if (!this.forget(block)) return;
    this.giveRange(block.offset, block.length);
  }

  /**
   * Keeps only the ranges `keep` of a live block (sorted, disjoint, inside it), each as a block of its own,
   * and takes the rest back; returns the new blocks.
   */
  trim(block: Block, keep: readonly (readonly [number, number])[]): Block[] {
    if (!this.forget(block)) return [];
    const out: Block[] = [];
    let at = block.offset;
    for (const [offset, length] of keep) {
      if (offset > at) this.giveRange(at, offset - at);
      const b: Block = { slab: this, offset, length };
      this.live.set(offset, b);
      this.starts.splice(insertAt(this.starts, offset), 0, offset);
      out.push(b);
      at = offset + length;
    }
    if (at < block.offset + block.length) this.giveRange(at, block.offset + block.length - at);
    return out;
  }

  /** Drops a live block from the books (false if it is not live). */
  private forget(block: Block): boolean {
    if (this.live.get(block.offset) !== block) return false;
    this.live.delete(block.offset);
    this.starts.splice(insertAt(this.starts, block.offset), 1);
    return true;
  }

  /** Adds [offset, offset + length) to the free ranges, merging it with free neighbours. */
  private giveRange(offset: number, length: number): void {
    const k = insertAt(
      this.free.map(([o]) => o),
      offset,
    );
    this.free.splice(k, 0, [offset, length]);
    for (const j of [k, k - 1]) {
      const a = this.free[j];
      const b = this.free[j + 1];
      if (a !== undefined && b !== undefined && a[0] + a[1] === b[0]) this.free.splice(j, 2, [a[0], a[1] + b[1]]);
    }
  }

  /** Floats in live blocks. */
  liveFloats(): number {
    let n = 0;
    for (const b of this.live.values()) n += b.length;
    return n;
  }

  /** Forgets every block (the run that used them is over). */
  clear(): void {
    this.live.clear();
    this.starts = [];
    this.free = [[0, this.size]];
  }
}

/** Index of the first element of sorted `xs` that is >= x. */
function insertAt(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Slabs of one run. */
class Arena {
  readonly slabs: Slab[] = [];

  alloc(n: number): Float32Array {
    for (const s of this.slabs) {
      const a = s.take(n);
      if (a !== undefined) return a;
    }
    // The smallest idle slab that fits: taking a long one for a short array would leave the long array none.
    let k = -1;
    idle.forEach((s, j) => {
      if (s.size >= n && (k < 0 || s.size < idle[k]!.size)) k = j;
    });
    const slab = k >= 0 ? idle.splice(k, 1)[0]! : new Slab(Math.max(SLAB_FLOATS, n));
    slabOf.set(slab.floats.buffer, slab);
    this.slabs.push(slab);
    return slab.take(n)!;
  }
}

const current = new AsyncLocalStorage<Arena>();
/** Slab of each slab buffer (to find the block of a view). */
const slabOf = new WeakMap<ArrayBufferLike, Slab>();
/** Slabs of finished runs, kept briefly for the next run. */
let idle: Slab[] = [];
let idleTimer: NodeJS.Timeout | undefined;
/** Runs under way. */
let active = 0;

/**
 * Runs `fn` with an arena: allocFloat inside it (awaits included) carves S-sized arrays from the arena's
 * slabs. When it settles every block is forgotten: what `fn` returns must not view the arena (copy it out).
 */
export async function withArena<T>(fn: () => Promise<T>): Promise<T> {
  const arena = new Arena();
  active++;
  clearTimeout(idleTimer);
  try {
    return await current.run(arena, fn);
  } finally {
    for (const s of arena.slabs) s.clear();
    idle.push(...arena.slabs);
    // Dropped only when no run has started for a while: a run that finds them gone makes new ones.
    if (--active === 0) {
      idleTimer = setTimeout(dropIdleSlabs, IDLE_MS);
      idleTimer.unref();
    }
  }
}

/** An array of n floats from the current run's arena (zeroed), or undefined outside a run or for short arrays. */
export function arenaFloat(n: number): Float32Array | undefined {
  return n >= ARENA_MIN ? current.getStore()?.alloc(n) : undefined;
}

/** The live arena block that `a` (an array or any view of one) lies in, or undefined. */
export function blockOf(a: ArrayBufferView): Block | undefined {
  const slab = slabOf.get(a.buffer);
  return slab?.blockAt(a.byteOffset / 4);
}

/** Hands a block back to its slab: the caller guarantees that nothing reads it any more. */
export function releaseBlock(block: Block): void {
  block.slab.give(block);
}

/**
 * Hands back the parts of a block outside `keep` (float offsets in the slab, sorted, disjoint, inside the
 * block), where nothing reads any more, and returns the blocks that now hold the kept ranges.
 */
export function trimBlock(block: Block, keep: readonly (readonly [number, number])[]): Block[] {
  return block.slab.trim(block, keep);
}

/** Lets idle slabs go to the garbage collector now (also done a moment after each run). */
function dropIdleSlabs(): void {
  clearTimeout(idleTimer);
  idle = [];
}

/** Floats in slabs and in their live blocks, of the current run (or of the idle slabs outside one); for tests and benchmarks. */
export function arenaStats(): { slabs: number; slabFloats: number; liveFloats: number } {
  const slabs = current.getStore()?.slabs ?? idle;
  return {
    slabs: slabs.length,
    slabFloats: slabs.reduce((n, s) => n + s.size, 0),
    liveFloats: slabs.reduce((n, s) => n + s.liveFloats(), 0),
  };
}
