// First-fit-decreasing packing of tokenized texts into windows: longest text first, each into the first
// window with room for its tokens and a free text slot, else a new window. Texts stay whole and contiguous
// (model/packing.ts reads each text as one run of its segment id).

/** One window of packed texts, padded to the window length. */
export interface PackedWindow {
  /** Indices (into the input) of the texts, in segment order: texts[k] has segment id k + 1. */
  texts: number[];
  /** Where each text starts in the window. */
  starts: number[];
  ids: number[];
  /** 1..K for the texts, 0 for padding. */
  segments: number[];
}

/** Packs texts (token ids) into windows of `window` tokens holding at most `perWindow` texts each. */
export function packTexts(texts: readonly (readonly number[])[], window: number, perWindow: number, pad: number): PackedWindow[] {
  const order = texts.map((_, i) => i).sort((a, b) => texts[b]!.length - texts[a]!.length || a - b);
  const bins: { texts: number[]; used: number }[] = [];
  for (const i of order) {
    const n = texts[i]!.length;
    if (n > window) throw new RangeError(`text ${i} has ${n} tokens, more than the window of ${window}`);
    const bin = bins.find((b) => b.used + n <= window && b.texts.length < perWindow);
    if (bin) {
      bin.texts.push(i);
      bin.used += n;
    } else {
      bins.push({ texts: [i], used: n });
    }
  }
  return bins.map((b) => {
    const ids = new Array<number>(window).fill(pad);
    const segments = new Array<number>(window).fill(0);
    const starts: number[] = [];
    let at = 0;
    b.texts.forEach((t, k) => {
      starts.push(at);
      for (const id of texts[t]!) {
        ids[at] = id;
        segments[at++] = k + 1;
      }
    });
    return { texts: b.texts, starts, ids, segments };
  });
}

/** Default window of checkpoints (the reference project's length), shortened to what the model takes. */
export const DEFAULT_WINDOW = 512;
/** Default texts per window of checkpoints: room for 64 texts of 8 tokens in 512. */
export const DEFAULT_PACK = 64;
