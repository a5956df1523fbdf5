// First-fit-decreasing packing of tokenized texts into windows: longest text first, each into the first
// window with room for its tokens and a free text slot, else a new window. Texts stay whole and contiguous
// (model/packing.ts reads each text as one run of its segment id). The first window with room is found in a
// tree of the windows' free room (log time, not a scan of every window: a million texts made that
// quadratic), and a window's token and segment ids are laid out only when asked for, so that a batch holds
// the lists of which texts go where, not every window at once.

/** One window of packed texts, padded to the window length. */
export interface PackedWindow {
  /** Indices (into the input) of the texts, in segment order: texts[k] has segment id k + 1. */
  texts: number[];
  /** Where each text starts in the window. */
  starts: number[];
  /** The window's token ids (laid out when read). */
  readonly ids: number[];
  /** 1..K for the texts, 0 for padding (laid out when read). */
  readonly segments: number[];
}

/** A window that lays out its ids and segments from the texts when they are read. */
class LazyWindow implements PackedWindow {
  readonly starts: number[] = [];

  /** `starts`: where each text starts (default: one after the other from 0). */
  constructor(
    readonly texts: number[],
    private readonly source: readonly (readonly number[])[],
    private readonly length: number,
    private readonly pad: number,
    starts?: number[],
  ) {
    let at = 0;
    for (const [k, t] of texts.entries()) {
      this.starts.push(starts?.[k] ?? at);
      at += source[t]!.length;
    }
  }

  get ids(): number[] {
    const ids = new Array<number>(this.length).fill(this.pad);
    this.texts.forEach((t, k) => {
      const text = this.source[t]!;
      for (let j = 0; j < text.length; j++) ids[this.starts[k]! + j] = text[j]!;
    });
    return ids;
  }

  get segments(): number[] {
    const segments = new Array<number>(this.length).fill(0);
    this.texts.forEach((t, k) => segments.fill(k + 1, this.starts[k]!, this.starts[k]! + this.source[t]!.length));
    return segments;
  }
}

/**
 * The windows' free room, in a tree whose inner nodes hold the most room below them: the leftmost window
 * with room for n tokens is found in log time. A window whose text slots are all taken has no room.
 */
class RoomTree {
  private readonly leaves: number;
  private readonly room: Int32Array;

  constructor(capacity: number) {
    this.leaves = 1 << Math.ceil(Math.log2(Math.max(1, capacity)));
    this.room = new Int32Array(2 * this.leaves).fill(-1);
  }

  /** Sets window `i`'s room. */
  set(i: number, room: number): void {
    let k = this.leaves + i;
    this.room[k] = room;
    for (k >>= 1; k >= 1; k >>= 1) this.room[k] = Math.max(this.room[2 * k]!, this.room[2 * k + 1]!);
  }

  /** The leftmost window with at least `n` room, or -1. */
  first(n: number): number {
    if (this.room[1]! < n) return -1;
    let k = 1;
    while (k < this.leaves) k = this.room[2 * k]! >= n ? 2 * k : 2 * k + 1;
    return k - this.leaves;
  }
}

/** Packs texts (token ids) into windows of `window` tokens holding at most `perWindow` texts each. */
export function packTexts(
  texts: readonly (readonly number[])[],
  window: number,
  perWindow: number,
  pad: number,
): PackedWindow[] {
  return firstFit(texts, window, perWindow).map((b) => new LazyWindow(b.texts, texts, window, pad));
}

/**
 * Packs texts of at most `block` tokens so that none crosses a block boundary (model/blocked.ts): first fit
 * decreasing into blocks, then the blocks in order into windows of window / block blocks (`window` a
 * multiple of `block`) holding at most `perWindow` texts.
 */
export function packBlocks(
  texts: readonly (readonly number[])[],
  window: number,
  block: number,
  perWindow: number,
  pad: number,
): PackedWindow[] {
  const perBlocks = Math.floor(window / block);
  const windows: { texts: number[]; starts: number[]; blocks: number }[] = [];
  for (const b of firstFit(texts, block, perWindow)) {
    let w = windows.at(-1);
    if (!w || w.blocks === perBlocks || w.texts.length + b.texts.length > perWindow) {
      w = { texts: [], starts: [], blocks: 0 };
      windows.push(w);
    }
    let at = w.blocks * block;
    for (const t of b.texts) {
      w.texts.push(t);
      w.starts.push(at);
      at += texts[t]!.length;
    }
    w.blocks++;
  }
  return windows.map((w) => new LazyWindow(w.texts, texts, window, pad, w.starts));
}

/** First-fit decreasing: bins of `size` tokens and at most `perBin` texts, in the order they were opened. */
function firstFit(texts: readonly (readonly number[])[], size: number, perBin: number): { texts: number[] }[] {
  const order = texts.map((_, i) => i).sort((a, b) => texts[b]!.length - texts[a]!.length || a - b);
  const bins: { texts: number[]; used: number }[] = [];
  const tree = new RoomTree(texts.length);
  for (const i of order) {
    const n = texts[i]!.length;
    if (n > size) throw new RangeError(`text ${i} has ${n} tokens, more than the window of ${size}`);
    let b = tree.first(n);
    if (b < 0) {
      b = bins.length;
      bins.push({ texts: [], used: 0 });
    }
    const bin = bins[b]!;
    bin.texts.push(i);
    bin.used += n;
    tree.set(b, bin.texts.length < perBin ? size - bin.used : -1);
  }
  return bins;
}

/** Default window of checkpoints (the reference project's length), shortened to what the model takes. */
export const DEFAULT_WINDOW = 512;
/** Default texts per window of checkpoints: room for 64 texts of 8 tokens in 512. */
export const DEFAULT_PACK = 64;
