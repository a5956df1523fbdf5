// What compression costs each weight tensor (`outliers --weights`): the relative error of the decompressed
// tensor, ||W - W'|| / ||W|| (Frobenius), and its largest weights, which set a palette's or a scale's range.
// A user reads it to choose the tensors to keep at float16 (`convert --keep`).

import { CompressedWeights } from '../compress/compressed-weights.js';
import type { CompressSpec } from '../compress/spec.js';
import type { WeightSource } from '../io/weights.js';

export interface WeightCost {
  /** The stored tensor (a tied decoder is listed once, as the embeddings). */
  name: string;
  shape: number[];
  relError: number;
  maxAbs: number;
  /** The largest |w|, largest first: index per axis and value. */
  largest: { index: number[]; value: number }[];
}

/** The `top` largest |values| of `data`, largest first, with their flat positions. */
function largestOf(data: Float32Array, top: number): { at: number; value: number }[] {
  const best: { at: number; value: number }[] = [];
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (best.length === top && Math.abs(v) <= Math.abs(best[top - 1]!.value)) continue;
    best.push({ at: i, value: v });
    best.sort((a, b) => Math.abs(b.value) - Math.abs(a.value));
    if (best.length > top) best.pop();
  }
  return best;
}

const unflatten = (at: number, shape: readonly number[]): number[] => {
  const index: number[] = [];
  for (let k = shape.length - 1; k >= 0; k--) {
    index.unshift(at % shape[k]!);
    at = Math.floor(at / shape[k]!);
  }
  return index;
};

/** Each tensor that `spec` compresses, with its cost, the costliest first. */
export function weightCosts(weights: WeightSource, spec: CompressSpec, top = 3): WeightCost[] {
  const cw = new CompressedWeights(weights, spec);
  const stored = [
    ...new Set(
      weights
        .names()
        .filter((n) => cw.isCompressed(n))
        .map((n) => cw.storedName(n)),
    ),
  ];
  const out: WeightCost[] = [];
  for (const name of stored) {
    const t = weights.get(name);
    const back = cw.get(name).data;
    let err = 0;
    let norm = 0;
    for (let i = 0; i < t.data.length; i++) {
      err += (t.data[i]! - back[i]!) ** 2;
      norm += t.data[i]! ** 2;
    }
    const largest = largestOf(t.data, top).map((l) => ({ index: unflatten(l.at, t.shape), value: l.value }));
    out.push({
      name,
      shape: t.shape,
      relError: norm > 0 ? Math.sqrt(err / norm) : 0,
      maxAbs: Math.abs(largest[0]?.value ?? 0),
      largest,
    });
  }
  return out.sort((a, b) => b.relError - a.relError);
}
