// Random orthogonal matrices for rotation tests.

/** Gram–Schmidt on the rows of an n x n row-major matrix, in place; returns it (orthogonal). */
export function orthonormalizeRows(q: Float64Array, n: number): Float64Array {
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < i; p++) {
      let dot = 0;
      for (let j = 0; j < n; j++) dot += q[i * n + j]! * q[p * n + j]!;
      for (let j = 0; j < n; j++) q[i * n + j] -= dot * q[p * n + j]!;
    }
    let norm = 0;
    for (let j = 0; j < n; j++) norm += q[i * n + j]! ** 2;
    for (let j = 0; j < n; j++) q[i * n + j] /= Math.sqrt(norm);
  }
  return q;
}
