// Steps on the orthogonal group for rotation learning (SpinQuant-style Cayley SGD, Li et al. 2020,
// "Efficient Riemannian optimization on the Stiefel manifold via the Cayley transform"). Products run on
// the runtime's float32 WebAssembly GEMM on the calling thread (deterministic: one thread, fixed order);
// the final clean-up to an orthogonal matrix is float64, so the result is orthogonal to float32 storage.

import { gemmSync } from '../runtime/kernels/index.js';

/** The n×n identity in float32. */
export function identityMatrix(n: number): Float32Array {
  const q = new Float32Array(n * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  return q;
}

/**
 * One Cayley descent step: Q' = (I + α/2·A)⁻¹(I − α/2·A)·Q with the skew matrix A = G·Qᵀ − Q·Gᵀ, for the
 * Euclidean gradient G of the loss at Q. Q' stays orthogonal and moves along −(G − Q·Gᵀ·Q), the Riemannian
 * gradient. The inverse is replaced by the fixed-point iteration Y ← Q − α/2·A·(Q + Y), which converges
 * when α‖A‖/2 < 1 and costs one n³ product per iteration instead of a solve; `iterations` = 3 leaves an
 * error of order (α‖A‖/2)⁴, which `newtonSchulz` removes.
 */
export function cayleyStep(q: Float32Array, g: Float32Array, n: number, alpha: number, iterations = 3): Float32Array {
  const a = skewFromGradient(q, g, n);
  const y = new Float32Array(n * n);
  const sum = new Float32Array(n * n);
  const ay = new Float32Array(n * n);
  // Y₀ = Q − α·A·Q (the first-order step), then the fixed point.
  gemmSync({ M: n, N: n, K: n, a, b: q, c: ay });
  for (let i = 0; i < y.length; i++) y[i] = q[i]! - alpha * ay[i]!;
  for (let it = 0; it < iterations; it++) {
    for (let i = 0; i < sum.length; i++) sum[i] = q[i]! + y[i]!;
    gemmSync({ M: n, N: n, K: n, a, b: sum, c: ay });
    for (let i = 0; i < y.length; i++) y[i] = q[i]! - (alpha / 2) * ay[i]!;
  }
  return y;
}

/** A = G·Qᵀ − Q·Gᵀ = P − Pᵀ for P = G·Qᵀ. */
export function skewFromGradient(q: Float32Array, g: Float32Array, n: number): Float32Array {
  const p = new Float32Array(n * n);
  gemmSync({ M: n, N: n, K: n, a: g, b: q, c: p, transB: true });
  const a = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) a[i * n + j] = p[i * n + j]! - p[j * n + i]!;
  return a;
}

/** Frobenius norm. */
export function frobenius(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s);
}

/**
 * One Newton–Schulz step towards the nearest orthogonal matrix, Q ← Q·(3I − QᵀQ)/2, in place: it squares
 * the deviation of QᵀQ from I, so a matrix that a Cayley step left orthogonal to 1e-4 comes back to float32
 * accuracy (~1e-6) in one step, for two n³ products.
 */
export function newtonSchulz(q: Float32Array, n: number): Float32Array {
  const qtq = new Float32Array(n * n);
  gemmSync({ M: n, N: n, K: n, a: q, b: q, c: qtq, transA: true });
  for (let i = 0; i < qtq.length; i++) qtq[i] = -0.5 * qtq[i]!;
  for (let i = 0; i < n; i++) qtq[i * n + i] += 1.5;
  const out = new Float32Array(n * n);
  gemmSync({ M: n, N: n, K: n, a: q, b: qtq, c: out });
  q.set(out);
  return q;
}

/**
 * Orthonormalizes the columns of Q (row-major n×n) by modified Gram–Schmidt in float64 and returns the
 * float64 result. On a matrix that is already orthogonal to ~1e-6 it moves each entry by about that much,
 * and leaves QᵀQ = I to float64 accuracy, so the float32 copy is orthogonal to its storage precision.
 */
export function orthonormalizeColumns(q: ArrayLike<number>, n: number): Float64Array {
  // Work on columns as contiguous rows of the transpose.
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = q[i * n + j]!;
  for (let j = 0; j < n; j++) {
    const cj = j * n;
    // Two passes ("twice is enough", Kahan–Parlett) keep orthogonality at float64 level.
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < j; k++) {
        const ck = k * n;
        let dot = 0;
        for (let i = 0; i < n; i++) dot += t[ck + i]! * t[cj + i]!;
        for (let i = 0; i < n; i++) t[cj + i]! -= dot * t[ck + i]!;
      }
    }
    let norm = 0;
    for (let i = 0; i < n; i++) norm += t[cj + i]! * t[cj + i]!;
    norm = Math.sqrt(norm);
    for (let i = 0; i < n; i++) t[cj + i]! /= norm;
  }
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] = t[j * n + i]!;
  return out;
}

/** max |(QᵀQ − I)ᵢⱼ| in float64 (O(n³): tests and reports). */
export function orthogonalityError(q: ArrayLike<number>, n: number): number {
  let worst = 0;
  const col = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) col[k] = q[k * n + i]!;
    for (let j = i; j < n; j++) {
      let dot = 0;
      for (let k = 0; k < n; k++) dot += col[k]! * q[k * n + j]!;
      worst = Math.max(worst, Math.abs(dot - (i === j ? 1 : 0)));
    }
  }
  return worst;
}
