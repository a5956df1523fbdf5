// Hadamard matrices H = H_K ⊗ H_P of order n = K·P (P = 2^m, H_P Sylvester's, H_K a Paley block or [1]),
// and the fast transform that applies H or Hᵀ in O(n·(K + log P)) without forming H.
//
// Index i = a·P + b (a < K, b < P), so H[(a,b),(c,d)] = H_K[a][c]·H_P[b][d]. Viewing a vector as a K×P
// row-major matrix X, H·x is H_K·X·H_P: a Sylvester butterfly inside each contiguous P-segment, then a K×K
// mix of whole segments.

import { ModernBertError } from '../errors.js';
import { paleyHadamard } from './paley.js';

/** How a Hadamard order factors, with its K×K block (±1, row-major) and the block's transpose. */
export interface HadamardPlan {
  /** n = blockSize · 2^m. */
  readonly size: number;
  /** K: 1, or the order of a Paley block. */
  readonly blockSize: number;
  /** P = 2^m = size / blockSize. */
  readonly sylvesterSize: number;
  readonly block: Float64Array;
  readonly blockT: Float64Array;
}

const SUPPORTED_FORMS =
  'n = K·2^m with K = 1, K = q+1 (q a prime ≡ 3 mod 4: 12, 20, 44, ...) ' +
  'or K = 2(q+1) (q a prime ≡ 1 mod 4: 12, 28, 36, 60, ...)';

const plans = new Map<number, HadamardPlan>();

/** The factorization of order n with the smallest block K; throws UNSUPPORTED if none is known. */
export function hadamardPlan(n: number): HadamardPlan {
  const cached = plans.get(n);
  if (cached) return cached;
  if (!Number.isInteger(n) || n < 1) {
    throw new ModernBertError('BAD_ARGUMENT', `Hadamard order must be a positive integer, got ${n}`, { size: n });
  }
  // The largest power of two first: a smaller block makes the transform cheaper.
  for (let p = n & -n; p >= 1; p /= 2) {
    const k = n / p;
    const block = k === 1 ? Int8Array.of(1) : paleyHadamard(k);
    if (block) {
      const plan: HadamardPlan = {
        size: n,
        blockSize: k,
        sylvesterSize: p,
        block: Float64Array.from(block),
        blockT: Float64Array.from(transposeSquare(block, k)),
      };
      plans.set(n, plan);
      return plan;
    }
  }
  throw new ModernBertError('UNSUPPORTED', `no Hadamard matrix of order ${n}: supported orders are ${SUPPORTED_FORMS}`, {
    size: n,
  });
}

/** The dense n×n Hadamard matrix (entries ±1, row-major) that the fast transform applies. */
export function hadamardMatrix(n: number): Int8Array {
  const { blockSize: k, sylvesterSize: p, block } = hadamardPlan(n);
  const h = new Int8Array(n * n);
  for (let i = 0; i < n; i++) {
    const a = Math.floor(i / p);
    const b = i % p;
    for (let j = 0; j < n; j++) {
      const c = Math.floor(j / p);
      const d = j % p;
      h[i * n + j] = block[a * k + c]! * (popcountParity(b & d) ? -1 : 1);
    }
  }
  return h;
}

/** x ← H·x (or Hᵀ·x) in place, for x of length n. */
export function fwht(plan: HadamardPlan, x: Float64Array, transpose = false): void {
  fwhtColumns(plan, x, 1, transpose);
}

/** X ← H·X (or Hᵀ·X) in place, for X row-major [n, cols]: transforms every column at once. */
export function fwhtColumns(plan: HadamardPlan, x: Float64Array, cols: number, transpose = false): void {
  const { size: n, blockSize: k, sylvesterSize: p } = plan;
  if (x.length !== n * cols) {
    throw new ModernBertError('SHAPE_MISMATCH', `Hadamard transform of order ${n} got ${x.length} values for ${cols} columns`, {
      size: n,
      length: x.length,
      cols,
    });
  }
  // Sylvester butterflies within each P-segment; a "value" is a whole row of `cols` numbers.
  for (let seg = 0; seg < k; seg++) {
    const base = seg * p;
    for (let h = 1; h < p; h <<= 1) {
      for (let i = base; i < base + p; i += 2 * h) {
        for (let r = i; r < i + h; r++) {
          const u = r * cols;
          const v = (r + h) * cols;
          for (let j = 0; j < cols; j++) {
            const a = x[u + j]!;
            const b = x[v + j]!;
            x[u + j] = a + b;
            x[v + j] = a - b;
          }
        }
      }
    }
  }
  if (k > 1) mixSegments(transpose ? plan.blockT : plan.block, k, p, x, cols);
}

/** Rows a·P + b ← Σ_c B[a][c]·(rows c·P + b), for every b: the H_K factor. */
function mixSegments(block: Float64Array, k: number, p: number, x: Float64Array, cols: number): void {
  const gathered = new Float64Array(k * cols);
  for (let b = 0; b < p; b++) {
    for (let c = 0; c < k; c++) {
      const src = (c * p + b) * cols;
      for (let j = 0; j < cols; j++) gathered[c * cols + j] = x[src + j]!;
    }
    for (let a = 0; a < k; a++) {
      const out = (a * p + b) * cols;
      x.fill(0, out, out + cols);
      for (let c = 0; c < k; c++) {
        const s = block[a * k + c]!;
        const g = c * cols;
        for (let j = 0; j < cols; j++) x[out + j] += s * gathered[g + j]!;
      }
    }
  }
}

/** Rows per tile when transforming rows: the tile is transposed so the butterflies run along contiguous memory. */
const ROW_TILE = 64;

/** X ← X·Hᵀ (or X·H) in place, for X row-major [rows, n]: every row x becomes H·x (or Hᵀ·x). */
export function fwhtRows(plan: HadamardPlan, x: Float64Array, rows: number, transpose = false): void {
  const n = plan.size;
  if (x.length !== n * rows) {
    throw new ModernBertError('SHAPE_MISMATCH', `Hadamard transform of order ${n} got ${x.length} values for ${rows} rows`, {
      size: n,
      length: x.length,
      rows,
    });
  }
  const buffer = new Float64Array(n * Math.min(rows, ROW_TILE));
  for (let r0 = 0; r0 < rows; r0 += ROW_TILE) {
    const t = Math.min(ROW_TILE, rows - r0);
    const tile = buffer.subarray(0, n * t);
    for (let r = 0; r < t; r++) for (let i = 0; i < n; i++) tile[i * t + r] = x[(r0 + r) * n + i]!;
    fwhtColumns(plan, tile, t, transpose);
    for (let r = 0; r < t; r++) for (let i = 0; i < n; i++) x[(r0 + r) * n + i] = tile[i * t + r]!;
  }
}

function popcountParity(v: number): boolean {
  let parity = false;
  for (let w = v; w !== 0; w &= w - 1) parity = !parity;
  return parity;
}

function transposeSquare(m: Int8Array, k: number): Int8Array {
  const t = new Int8Array(k * k);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) t[j * k + i] = m[i * k + j]!;
  return t;
}
