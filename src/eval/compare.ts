// Comparing two models' logits on the same tokens: KL(A || B) averaged over tokens (the reference project's
// "batchmean" with tokens as the batch), top-1 agreement (same argmax), top-5 agreement (overlap of the two
// top-5 sets, over 5), and the max abs difference of the logits.

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
   * the columns to compare (default all).
   */
  add(a: ArrayLike<number>, b: ArrayLike<number>, V: number, P: number, cols?: number[]): void {
    const la = new Float64Array(V);
    const lb = new Float64Array(V);
    const expA = new Float64Array(V);
    for (const p of cols ?? Array.from({ length: P }, (_, i) => i)) {
      gather(a, p, P, la);
      gather(b, p, P, lb);
      this.tokens++;
      let finite = true;
      let maxAbs = this.maxAbs;
      for (let v = 0; v < V; v++) {
        const d = Math.abs(la[v]! - lb[v]!);
        // NaN or infinity on either side makes the difference NaN (inf - inf) or infinite.
        if (!(d < Infinity)) {
          finite = false;
          break;
        }
        if (d > maxAbs) maxAbs = d;
      }
      if (!finite) {
        this.nonFinite++;
        continue;
      }
      this.maxAbs = maxAbs;
      // KL(A || B) = sum_v p_a(v) (log p_a(v) - log p_b(v)), with p_a's exponentials computed once.
      const [maxA, sumA] = sumExp(la, expA);
      const lseA = maxA + Math.log(sumA);
      const lseB = logSumExp(lb);
      let kl = 0;
      for (let v = 0; v < V; v++) kl += (expA[v]! / sumA) * (la[v]! - lseA - (lb[v]! - lseB));
      this.kl += Math.max(0, kl);
      const ta = topIndices(la, 5);
      const tb = topIndices(lb, 5);
      if (ta[0] === tb[0]) this.top1++;
      this.top5 += ta.filter((i) => tb.includes(i)).length / Math.min(5, V);
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

/** Column `p` of a (V, P) matrix into `out` (a contiguous copy when P is 1). */
function gather(x: ArrayLike<number>, p: number, P: number, out: Float64Array): void {
  if (P === 1 && (x instanceof Float32Array || x instanceof Float64Array)) out.set(x.subarray(0, out.length));
  else for (let v = 0; v < out.length; v++) out[v] = x[v * P + p]!;
}

/** The maximum of x and sum_i exp(x_i - max), with each exp(x_i - max) kept in `exps`. */
function sumExp(x: Float64Array, exps: Float64Array): [number, number] {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i]! > m) m = x[i]!;
  let s = 0;
  for (let i = 0; i < x.length; i++) s += exps[i] = Math.exp(x[i]! - m);
  return [m, s];
}

/** log(sum_i exp(x_i)), shifted by the maximum so that nothing overflows. */
function logSumExp(x: Float64Array): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i]! > m) m = x[i]!;
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i]! - m);
  return m + Math.log(s);
}

/** Indices of the k largest values, largest first (ties: lower index first). */
function topIndices(x: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (best.length === k && v <= x[best[k - 1]!]!) continue;
    let j = best.length < k ? best.length : k - 1;
    best[j] = i;
    while (j > 0 && x[best[j - 1]!]! < v) {
      best[j] = best[j - 1]!;
      best[j - 1] = i;
      j--;
    }
  }
  return best;
}
