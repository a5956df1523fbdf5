// Palettization: a look-up table of 2^bits float16 values for a tensor (or a group of its rows), chosen by
// k-means, and each weight's index into it.
//
// Algorithm: exact 1-D k-means (Lloyd) on the float16 histogram. The weights ship as float16, so a tensor
// holds at most 65,536 distinct values: one O(n) pass counts them, and the clustering then runs on those
// (value, count) pairs, already sorted by value. Initialised deterministically at the quantiles of
// density^(1/3), where an optimal quantizer's levels lie (k-means++ draws at random and needs restarts);
// Lloyd steps then assign by midpoints between neighbouring centroids (a merge of two sorted lists) until
// nothing moves. Each step finds the cluster boundaries by binary search over the distinct values and the
// clusters' sums from prefix sums, so it costs O(k log m), not O(m): a small group (--group-size 16: 12,000
// groups in ModernBERT-base) pays for its own values, not for 60 passes over 65,536 bins. That is
// O(n + 65,536 + iterations * k log m) per table, where sklearn's k-means on the raw weights (what coremltools
// runs) is O(n * k * iterations): seconds instead of minutes for ModernBERT-base.

import { decodeF16, encodeF16, f16round } from '../numeric/fp16.js';

/** Lloyd iterations at most (they usually settle in 10-30). */
const MAX_ITERATIONS = 60;

/** A table and the index of every value in it. */
export interface Palette {
  /** 2^bits float16 values, ascending. */
  lut: Float32Array;
  /** Index of each input value into `lut`. */
  indices: Uint8Array;
}

/** Every float16 bit pattern's value. */
const F16_VALUES = decodeF16(Uint16Array.from({ length: 65536 }, (_, h) => h));
/** Each bit pattern's rank in ascending order of value (non-finite patterns last): sorting ranks sorts values. */
const F16_RANK = (() => {
  const order = [...F16_VALUES.keys()].sort((a, b) => rankValue(a) - rankValue(b) || a - b);
  const rank = new Uint16Array(65536);
  order.forEach((h, r) => (rank[h] = r));
  return { rank, order: Uint16Array.from(order) };
})();
function rankValue(h: number): number {
  const v = F16_VALUES[h]!;
  return Number.isFinite(v) ? v : Infinity;
}
/** One bit per rank, cleared after each use: a scan of its 2,048 words lists the ranks seen in order. */
const SEEN = new Uint32Array(65536 / 32);
/** Counts per bit pattern, zeroed after each use (one allocation for all tables). */
const COUNTS = new Uint32Array(65536);
/** Table index per bit pattern for the final assignment (every finite code present is written before use). */
const BY_CODE = new Uint8Array(65536);

/** Distinct float16 values of `codes`, ascending, with their counts and bit patterns. */
function histogram(codes: Uint16Array): { values: Float64Array; counts: Float64Array; codes: Uint16Array } {
  // Count, and mark each distinct finite code's rank in a bitmap; reading the bitmap's words in order lists
  // the values ascending, with no sort and no pass over all 65,536 patterns (a small group pays for its own).
  let m = 0;
  for (let i = 0; i < codes.length; i++) {
    const h = codes[i]!;
    if (COUNTS[h]!++ === 0 && (h & 0x7c00) !== 0x7c00) {
      const r = F16_RANK.rank[h]!;
      SEEN[r >>> 5]! |= 1 << (r & 31);
      m++;
    }
  }
  const values = new Float64Array(m);
  const counts = new Float64Array(m);
  const present = new Uint16Array(m);
  for (let word = 0, at = 0; word < SEEN.length; word++) {
    let bits = SEEN[word]!;
    if (bits === 0) continue;
    SEEN[word] = 0;
    while (bits !== 0) {
      const low = bits & -bits;
      const h = F16_RANK.order[(word << 5) | (31 - Math.clz32(low))]!;
      values[at] = F16_VALUES[h]!;
      counts[at] = COUNTS[h]!;
      present[at++] = h;
      bits ^= low;
    }
  }
  for (let i = 0; i < codes.length; i++) COUNTS[codes[i]!] = 0;
  return { values, counts, codes: present };
}

/** width^(2/3) of a float16 histogram bin (the gap between float16 neighbours), by the exponent field. */
const WIDTH_2_3 = Float64Array.from({ length: 32 }, (_, e) => Math.cbrt(2 ** (e === 0 ? -24 : e - 25)) ** 2);
/** ∛c for the small counts that most distinct values of a group have (a table instead of a Math.cbrt each). */
const CBRT = Float64Array.from({ length: 1024 }, (_, c) => Math.cbrt(c));

/** For each distinct value, the index of the nearest centroid (centroids ascending; ties to the lower). */
function assign(values: Float64Array, centroids: Float64Array, out: Int32Array): void {
  let j = 0;
  for (let i = 0; i < values.length; i++) {
    while (j + 1 < centroids.length && values[i]! - centroids[j]! > centroids[j + 1]! - values[i]!) j++;
    out[i] = j;
  }
}

/** k-means centroids (k ascending) of the weighted distinct values. */
function lloyd(values: Float64Array, counts: Float64Array, codes: Uint16Array, k: number): Float64Array {
  const m = values.length;
  const centroids = new Float64Array(k);
  // Start where an optimal quantizer puts its levels: at quantiles of density^(1/3) (the high-resolution
  // optimum for squared error), the density being each value's count over its float16 spacing. Plain
  // quantiles leave the tails, where the largest weights are, nearly empty, and Lloyd then needs hundreds
  // of steps to move levels out there.
  const mass = new Float64Array(m);
  let total = 0;
  for (let v = 0; v < m; v++) {
    // ∛(count / width) · width = ∛count · width^(2/3).
    const c = counts[v]!;
    mass[v] = (c < CBRT.length ? CBRT[c]! : Math.cbrt(c)) * WIDTH_2_3[(codes[v]! >> 10) & 0x1f]!;
    total += mass[v]!;
  }
  let cum = 0;
  let i = 0;
  for (let j = 0; j < k; j++) {
    const target = ((j + 0.5) / k) * total;
    while (i < m - 1 && cum + mass[i]! < target) cum += mass[i++]!;
    centroids[j] = values[i]!;
  }
  // Prefix sums of count and count * value: a cluster's weight and sum in O(1) from its boundaries.
  const cumCount = new Float64Array(m + 1);
  const cumSum = new Float64Array(m + 1);
  for (let v = 0; v < m; v++) {
    cumCount[v + 1] = cumCount[v]! + counts[v]!;
    cumSum[v + 1] = cumSum[v]! + values[v]! * counts[v]!;
  }
  for (let it = 0; it < MAX_ITERATIONS; it++) {
    // Cluster j holds values [start, end): end is the first value nearer to centroid j + 1 (as `assign` decides).
    let moved = false;
    let start = 0;
    for (let j = 0; j < k; j++) {
      let end = m;
      if (j + 1 < k) {
        const lo = centroids[j]!;
        const hi = centroids[j + 1]!;
        let a = start;
        let b = m;
        while (a < b) {
          const mid = (a + b) >> 1;
          if (values[mid]! - lo > hi - values[mid]!) b = mid;
          else a = mid + 1;
        }
        end = a;
      }
      const weight = cumCount[end]! - cumCount[start]!;
      if (weight > 0) {
        // an empty cluster keeps its place
        const c = (cumSum[end]! - cumSum[start]!) / weight;
        if (c !== centroids[j]) moved = true;
        centroids[j] = c;
      }
      start = end;
    }
    if (!moved) break;
    centroids.sort();
  }
  return centroids;
}

/** A 2^bits-entry float16 table for `data` (float16-rounded first), and each value's index. */
export function palettize(data: Float32Array, bits: number): Palette {
  const k = 2 ** bits;
  const codes = encodeF16(data);
  const hist = histogram(codes);
  const { values, counts } = hist;
  let centroids: Float64Array;
  if (values.length <= k) {
    // Fewer distinct values than entries: each is its own entry, the rest repeat the largest.
    centroids = new Float64Array(k).fill(values[values.length - 1] ?? 0);
    centroids.set(values);
  } else {
    centroids = lloyd(values, counts, hist.codes, k);
  }
  const lut = Float32Array.from(centroids, (c) => f16round(c)).sort();
  // Final assignment against the rounded table, through a float16 bit pattern -> index map: O(n).
  const owner = new Int32Array(values.length);
  assign(values, Float64Array.from(lut), owner);
  hist.codes.forEach((h, i) => (BY_CODE[h] = owner[i]!));
  const indices = new Uint8Array(data.length);
  // A non-finite value (never in a checkpoint) takes entry 0, as every code absent from the table.
  for (let i = 0; i < codes.length; i++) indices[i] = (codes[i]! & 0x7c00) === 0x7c00 ? 0 : BY_CODE[codes[i]!]!;
  return { lut, indices };
}
