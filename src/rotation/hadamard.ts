// Hadamard matrices H = H_K ⊗ H_P of order n = K·P (P = 2^m, H_P Sylvester's, H_K a Paley block or [1]),
// and the fast transform that applies H or Hᵀ in O(n·(K + log P)) without forming H.
//
// Index i = a·P + b (a < K, b < P), so H[(a,b),(c,d)] = H_K[a][c]·H_P[b][d]. Viewing a vector as a K×P
// row-major matrix X, H·x is H_K·X·H_P: a Sylvester butterfly inside each contiguous P-segment, then a K×K
// mix of whole segments.

import { ModernBertError } from '../errors.js';
import { compileBlockMix, type BlockMix } from './block-mix.js';
import { paleyHadamard } from './paley.js';

/** How a Hadamard order factors, with its K×K block (±1, row-major). */
export interface HadamardPlan {
  /** n = blockSize · sylvesterSize. */
  readonly size: number;
  /** K: 1, or the order of a Paley block. */
  readonly blockSize: number;
  /** P = 2^m. */
  readonly sylvesterSize: number;
  readonly block: Int8Array;
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
      const plan: HadamardPlan = { size: n, blockSize: k, sylvesterSize: p, block };
      plans.set(n, plan);
      return plan;
    }
  }
  throw new ModernBertError(
    'UNSUPPORTED',
    `no Hadamard matrix of order ${n}: supported orders are ${SUPPORTED_FORMS}`,
    {
      size: n,
    },
  );
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

/** x[offset .. offset + n) ← H·x (or Hᵀ·x) in place. */
export function fwht(plan: HadamardPlan, x: Float64Array, offset = 0, transpose = false): void {
  const { size: n, sylvesterSize: p } = plan;
  if (offset < 0 || offset + n > x.length) {
    throw new ModernBertError(
      'SHAPE_MISMATCH',
      `Hadamard transform of order ${n} at offset ${offset} overruns ${x.length} values`,
      {
        size: n,
        offset,
        length: x.length,
      },
    );
  }
  for (let base = offset; base < offset + n; base += p) sylvester(x, base, p);
  if (plan.blockSize > 1) blockMix(plan, transpose)(x, offset);
}

/** X ← X·Hᵀ (or X·H) in place, for X row-major [rows, n]: every row x becomes H·x (or Hᵀ·x). */
export function fwhtRows(plan: HadamardPlan, x: Float64Array, rows: number, transpose = false): void {
  checkLength(plan, x, rows, 'rows');
  for (let r = 0; r < rows; r++) fwht(plan, x, r * plan.size, transpose);
}

/** X ← H·X (or Hᵀ·X) in place, for X row-major [n, cols]: every column is transformed (through a transposed copy). */
export function fwhtColumns(plan: HadamardPlan, x: Float64Array, cols: number, transpose = false): void {
  const n = plan.size;
  checkLength(plan, x, cols, 'columns');
  const t = new Float64Array(x.length);
  for (let i = 0; i < n; i++) for (let j = 0; j < cols; j++) t[j * n + i] = x[i * cols + j]!;
  fwhtRows(plan, t, cols, transpose);
  for (let i = 0; i < n; i++) for (let j = 0; j < cols; j++) x[i * cols + j] = t[j * n + i]!;
}

function checkLength(plan: HadamardPlan, x: Float64Array, count: number, what: string): void {
  if (x.length !== plan.size * count) {
    throw new ModernBertError(
      'SHAPE_MISMATCH',
      `Hadamard transform of order ${plan.size} got ${x.length} values for ${count} ${what}`,
      {
        size: plan.size,
        length: x.length,
        count,
      },
    );
  }
}

/**
 * x[base .. base + p) ← H_P·x in place (H_P is symmetric). Radix 4: two butterfly levels per pass halve the
 * loads and stores of the plain radix-2 loop; a last radix-2 level when log2(p) is odd.
 */
function sylvester(x: Float64Array, base: number, p: number): void {
  let h = 1;
  for (; 4 * h <= p; h *= 4) {
    for (let i = base; i < base + p; i += 4 * h) {
      for (let r = i; r < i + h; r++) {
        const a = x[r]!;
        const b = x[r + h]!;
        const c = x[r + 2 * h]!;
        const d = x[r + 3 * h]!;
        const s0 = a + b;
        const d0 = a - b;
        const s1 = c + d;
        const d1 = c - d;
        x[r] = s0 + s1;
        x[r + h] = d0 + d1;
        x[r + 2 * h] = s0 - s1;
        x[r + 3 * h] = d0 - d1;
      }
    }
  }
  if (h < p) {
    for (let r = base; r < base + h; r++) {
      const a = x[r]!;
      const b = x[r + h]!;
      x[r] = a + b;
      x[r + h] = a - b;
    }
  }
}

const mixers = new Map<HadamardPlan, { block?: BlockMix; blockT?: BlockMix }>();

/** The compiled H_K (or H_Kᵀ) mix of a plan, built on first use. */
function blockMix(plan: HadamardPlan, transpose: boolean): BlockMix {
  let entry = mixers.get(plan);
  if (!entry) mixers.set(plan, (entry = {}));
  const { block, blockSize: k, sylvesterSize: p } = plan;
  if (transpose) return (entry.blockT ??= compileBlockMix(transposeSquare(block, k), k, p));
  return (entry.block ??= compileBlockMix(block, k, p));
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
