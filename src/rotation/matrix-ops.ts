// The small dense operations that norm folding composes with a rotation: centering (C = I − 11ᵀ/n) and
// diagonal scaling. They compute in float64 so that the rotation rounds to float32 once, at the end; the
// large ones write into a caller's buffer (a Workspace) rather than fresh memory.

import type { Matrix } from './rotation.js';

/** out ← C·W for W [rows, cols]: every column minus its mean over the rows. */
export function centerColumns(w: Matrix, rows: number, cols: number, out: Float64Array): Float64Array {
  const mean = new Float64Array(cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) mean[j] += w[i * cols + j]!;
  for (let j = 0; j < cols; j++) mean[j] /= rows;
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = w[i * cols + j]! - mean[j]!;
  return out;
}

/** out ← rows `first` .. `first + count − 1` of W [*, cols], each minus its own mean: those rows of W·C. */
export function centerRows(w: Matrix, first: number, count: number, cols: number, out: Float64Array): Float64Array {
  for (let r = 0; r < count; r++) {
    const off = (first + r) * cols;
    let mean = 0;
    for (let j = 0; j < cols; j++) mean += w[off + j]!;
    mean /= cols;
    for (let j = 0; j < cols; j++) out[r * cols + j] = w[off + j]! - mean;
  }
  return out;
}

/** out ← rows `first` .. `first + count − 1` of W·diag(d), for W [*, cols]. */
export function scaleColumns(
  w: Matrix,
  first: number,
  count: number,
  cols: number,
  d: Matrix,
  out: Float64Array,
): Float64Array {
  for (let r = 0; r < count; r++) {
    const off = (first + r) * cols;
    for (let j = 0; j < cols; j++) out[r * cols + j] = w[off + j]! * d[j]!;
  }
  return out;
}

/** C·diag(d), n×n: entry (i, j) is (δij − 1/n)·d[j]. */
export function centeredDiagonal(d: Matrix): Float64Array {
  const n = d.length;
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] = ((i === j ? 1 : 0) - 1 / n) * d[j]!;
  return out;
}

/** diag(d), n×n. */
export function diagonal(d: Matrix): Float64Array {
  const n = d.length;
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) out[i * n + i] = d[i]!;
  return out;
}

/** b + W·v for W [rows, cols] (b absent = 0). */
export function affine(w: Matrix, rows: number, cols: number, v: Matrix, b: Matrix | null): Float64Array {
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = b ? b[i]! : 0;
    for (let j = 0; j < cols; j++) s += w[i * cols + j]! * v[j]!;
    out[i] = s;
  }
  return out;
}
