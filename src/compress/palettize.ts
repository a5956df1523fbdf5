// Palettization: a look-up table of 2^bits float16 values for a tensor (or a group of its rows), chosen by
// k-means, and each weight's index into it.
//
// Algorithm: exact 1-D k-means (Lloyd) on the float16 histogram. The weights ship as float16, so a tensor
// holds at most 65,536 distinct values: one O(n) pass counts them, and the clustering then runs on those
// (value, count) pairs, already sorted by value. Initialised deterministically at the quantiles of
// density^(1/3), where an optimal quantizer's levels lie (k-means++ draws at random and needs restarts);
// Lloyd steps then assign by midpoints between neighbouring centroids (a merge of two sorted lists) until
// nothing moves. That is O(n + iterations * 65,536) per tensor, where sklearn's k-means on the raw weights (what
// coremltools runs) is O(n * k * iterations): seconds instead of minutes for ModernBERT-base.

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

/** Distinct float16 values of `codes`, ascending, with their counts and bit patterns. */
function histogram(codes: Uint16Array): { values: Float64Array; counts: Float64Array; codes: Uint16Array } {
  const counts = new Uint32Array(65536);
  for (let i = 0; i < codes.length; i++) counts[codes[i]!]!++;
  const present: number[] = [];
  for (let h = 0; h < 65536; h++) if (counts[h]! > 0 && Number.isFinite(F16_VALUES[h]!)) present.push(h);
  present.sort((a, b) => F16_VALUES[a]! - F16_VALUES[b]!);
  return { values: Float64Array.from(present, (h) => F16_VALUES[h]!), counts: Float64Array.from(present, (h) => counts[h]!), codes: Uint16Array.from(present) };
}

/** The gap between float16 neighbours at v (the width of its histogram bin). */
function f16Spacing(v: number): number {
  const a = Math.abs(v);
  return a < 2 ** -14 ? 2 ** -24 : 2 ** (Math.floor(Math.log2(a)) - 10);
}

/** For each distinct value, the index of the nearest centroid (centroids ascending; ties to the lower). */
function assign(values: Float64Array, centroids: Float64Array, out: Int32Array): void {
  let j = 0;
  for (let i = 0; i < values.length; i++) {
    while (j + 1 < centroids.length && values[i]! - centroids[j]! > centroids[j + 1]! - values[i]!) j++;
    out[i] = j;
  }
}

/** k-means centroids (k ascending) of the weighted distinct values. */
function lloyd(values: Float64Array, counts: Float64Array, k: number): Float64Array {
  const m = values.length;
  const centroids = new Float64Array(k);
  // Start where an optimal quantizer puts its levels: at quantiles of density^(1/3) (the high-resolution
  // optimum for squared error), the density being each value's count over its float16 spacing. Plain
  // quantiles leave the tails, where the largest weights are, nearly empty, and Lloyd then needs hundreds
  // of steps to move levels out there.
  const mass = new Float64Array(m);
  let total = 0;
  for (let v = 0; v < m; v++) {
    const width = f16Spacing(values[v]!);
    mass[v] = Math.cbrt(counts[v]! / width) * width;
    total += mass[v]!;
  }
  let cum = 0;
  let i = 0;
  for (let j = 0; j < k; j++) {
    const target = ((j + 0.5) / k) * total;
    while (i < m - 1 && cum + mass[i]! < target) cum += mass[i++]!;
    centroids[j] = values[i]!;
  }
  const owner = new Int32Array(m);
  const sum = new Float64Array(k);
  const weight = new Float64Array(k);
  for (let it = 0; it < MAX_ITERATIONS; it++) {
    assign(values, centroids, owner);
    sum.fill(0);
    weight.fill(0);
    for (let v = 0; v < m; v++) {
      sum[owner[v]!]! += values[v]! * counts[v]!;
      weight[owner[v]!]! += counts[v]!;
    }
    let moved = false;
    for (let j = 0; j < k; j++) {
      if (weight[j] === 0) continue; // an empty cluster keeps its place
      const c = sum[j]! / weight[j]!;
      if (c !== centroids[j]) moved = true;
      centroids[j] = c;
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
    centroids = lloyd(values, counts, k);
  }
  const lut = Float32Array.from(centroids, (c) => f16round(c)).sort();
  // Final assignment against the rounded table, through a float16 bit pattern -> index map: O(n).
  const owner = new Int32Array(values.length);
  assign(values, Float64Array.from(lut), owner);
  const byCode = new Uint8Array(65536);
  hist.codes.forEach((h, i) => (byCode[h] = owner[i]!));
  const indices = new Uint8Array(data.length);
  for (let i = 0; i < codes.length; i++) indices[i] = byCode[codes[i]!]!;
  return { lut, indices };
}
