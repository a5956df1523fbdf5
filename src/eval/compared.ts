// The output of a forward pass that the fidelity report compares, as it lies: the columns of a per-token
// (1, C, 1, P) output, or the rows of a pooled (1, K, C) one. An MLM head's (50,368 x 512) logits are
// compared column by column in place (AgreementMeter reads them by rows); a vector is copied out only where
// one is needed alone (cosine similarity, a packed text measured again alone).

import { firstNonFinite } from '../numeric/finite.js';
import { floats, type RtTensor } from '../runtime/tensor.js';
import type { AgreementMeter } from './compare.js';

export interface Compared {
  /** The output's name, for messages. */
  name: string;
  data: Float32Array;
  /** Values per vector. */
  size: number;
  /** How many vectors. */
  count: number;
  /** Vectors are the columns of a (size, count) matrix; else its rows, one after the other. */
  columns: boolean;
}

/** The compared vectors of a pass's (first) output: every column of a per-token output, or its first `rows` rows. */
export function comparedOf(outputs: Map<string, RtTensor>, rows: number | undefined): Compared {
  const [name, t] = [...outputs.entries()][0]!;
  const data = floats(t, `the "${name}" output`);
  if (t.shape.length === 4) return { name, data, size: t.shape[1]!, count: t.shape[3]!, columns: true };
  const size = t.shape[t.shape.length - 1]!;
  const count = rows ?? 1;
  return { name, data: data.subarray(0, count * size), size, count, columns: false };
}

/** Vector j, as a copy of its own. */
export function vectorOf(o: Compared, j: number): Float32Array {
  if (!o.columns) return o.data.slice(j * o.size, (j + 1) * o.size);
  const v = new Float32Array(o.size);
  for (let c = 0; c < o.size; c++) v[c] = o.data[c * o.count + j]!;
  return v;
}

/** The first vector that holds NaN or infinity, or -1. */
export function firstNonFiniteVector(o: Compared): number {
  const i = firstNonFinite(o.data);
  return i < 0 ? -1 : o.columns ? i % o.count : Math.floor(i / o.size);
}

/** Adds to `meter` each vector of `b` against vector `from` + j of `a` (the float32 reference). */
export function compareInto(meter: AgreementMeter, a: Compared, from: number, b: Compared): void {
  if (a.columns && b.columns && from === 0 && a.count === b.count) meter.add(a.data, b.data, a.size, a.count);
  else for (let j = 0; j < b.count; j++) meter.add(vectorOf(a, from + j), vectorOf(b, j), b.size, 1);
}
