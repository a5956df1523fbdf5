// Comparing two models' logits on the same tokens: KL(A || B) averaged over tokens (the reference project's
// "batchmean" with tokens as the batch), top-1 agreement (same argmax), top-5 agreement (overlap of the two
// top-5 sets, over 5), and the max abs difference of the logits.

import { columnMaxima, expSums } from '../runtime/kernels/exp-sums.js';

export interface Agreement {
  kl: number;
  top1: number;
  top5: number;
  max_abs_diff: number;
  tokens: number;
  /** Tokens where either side produced NaN or infinite logits. */
  non_finite: number;
}

/** Accumulates agreement statistics over logit columns. */
export class AgreementMeter {
  private kl = 0;
  private top1 = 0;
  private top5 = 0;
  private maxAbs = 0;
  private tokens = 0;
  private nonFinite = 0;

  /**
   * Adds token columns: `a` and `b` are (1, V, 1, P) logits (element (v, p) at v * P + p); `cols` picks
   * the columns to compare (default all). Read row by row: a column's values lie P apart.
   */
  add(a: ArrayLike<number>, b: ArrayLike<number>, V: number, P: number, cols?: number[]): void {
    const at = cols ? Int32Array.from(cols) : Int32Array.from({ length: P }, (_, i) => i);
    const n = at.length;
    const s = columnStats(a, b, V, P, at);
    // KL = sum_v p_a(v) (log p_a(v) - log p_b(v)) = E_a[a - b] - lse(a) + lse(b), as p_a sums to 1: one pass
    // of two exponentials per logit, in WebAssembly.
    const sums = expSums(a, b, V, P, at, s.maxA, s.maxB);
    const K = s.K;
    for (let k = 0; k < n; k++) {
      this.tokens++;
      if (s.bad[k]) {
        this.nonFinite++;
        continue;
      }
      const [sumA, sumB, sumAB] = [sums[k]!, sums[n + k]!, sums[2 * n + k]!];
      const kl = sumAB / sumA - (s.maxA[k]! + Math.log(sumA)) + (s.maxB[k]! + Math.log(sumB));
      this.kl += Math.max(0, kl);
      this.maxAbs = Math.max(this.maxAbs, s.maxAbs[k]!);
      const [ta, tb] = [s.topA.subarray(k * K, (k + 1) * K), s.topB.subarray(k * K, (k + 1) * K)];
      if (ta[0] === tb[0]) this.top1++;
      this.top5 += ta.filter((i) => tb.includes(i)).length / Math.max(1, K);
    }
  }

  /** The averages; non-finite tokens count as total disagreement and infinite KL. */
  result(): Agreement {
    const n = this.tokens;
    const finite = n - this.nonFinite;
    return {
      kl: this.nonFinite > 0 ? Infinity : finite ? this.kl / finite : 0,
      top1: n ? this.top1 / n : 0,
      top5: n ? this.top5 / n : 0,
      max_abs_diff: this.nonFinite > 0 ? Infinity : this.maxAbs,
      tokens: n,
      non_finite: this.nonFinite,
    };
  }
}

/** Per column: its max on each side, max |a - b|, whether either side is not finite, the top-5 indices of each side. */
interface ColumnStats {
  maxA: Float64Array;
  maxB: Float64Array;
  maxAbs: Float64Array;
  bad: Uint8Array;
  /** Top-K indices per column (K = min(5, V)), largest first, ties: the lower index first. */
  topA: Int32Array;
  topB: Int32Array;
  K: number;
}

/**
 * The columns `at` of a and b, (V, P) row-major: maxima in the WebAssembly kernel, then one pass over the rows
 * for the top-5 lists, where a value is looked at only when it beats its column's fifth.
 */
function columnStats(a: ArrayLike<number>, b: ArrayLike<number>, V: number, P: number, at: Int32Array): ColumnStats {
  const n = at.length;
  const K = Math.min(5, V);
  const { maxX: maxA, maxY: maxB, maxAbs } = columnMaxima(a, b, V, P, at);
  // NaN or infinity on either side makes the column's |a - b| NaN (inf - inf) or infinite.
  const bad = Uint8Array.from(maxAbs, (d) => (d < Infinity ? 0 : 1));
  const s: ColumnStats = { maxA, maxB, maxAbs, bad, topA: new Int32Array(n * K), topB: new Int32Array(n * K), K };
  const [valA, valB] = [new Float64Array(n * K), new Float64Array(n * K)];
  const [fillA, fillB] = [new Uint8Array(n), new Uint8Array(n)];
  // Each list's threshold at hand: a value below its column's fifth (most of them) costs one comparison.
  const [minA, minB] = [new Float64Array(n).fill(-Infinity), new Float64Array(n).fill(-Infinity)];
  const { topA, topB } = s;
  for (let v = 0; v < V; v++) {
    const row = v * P;
    for (let k = 0; k < n; k++) {
      const i = row + at[k]!;
      const xa = a[i]!;
      const yb = b[i]!;
      // A list not yet full takes any value: its threshold stays -infinity until then (a column with an
      // infinity is not finite, so its lists are not read).
      if (xa > minA[k]!) minA[k] = insertTop(valA, topA, fillA, k, K, xa, v);
      if (yb > minB[k]!) minB[k] = insertTop(valB, topB, fillB, k, K, yb, v);
    }
  }
  return s;
}

/**
 * Puts value x of index v into column k's top-K list (sorted largest first; an equal value stays behind);
 * returns the value a later one must exceed: the K-th, or -infinity while the list is not full.
 */
function insertTop(
  vals: Float64Array,
  idx: Int32Array,
  filled: Uint8Array,
  k: number,
  K: number,
  x: number,
  v: number,
): number {
  const base = k * K;
  let j = filled[k]! < K ? filled[k]!++ : K - 1;
  while (j > 0 && vals[base + j - 1]! < x) {
    vals[base + j] = vals[base + j - 1]!;
    idx[base + j] = idx[base + j - 1]!;
    j--;
  }
  vals[base + j] = x;
  idx[base + j] = v;
  return filled[k]! < K ? -Infinity : vals[base + K - 1]!;
}
