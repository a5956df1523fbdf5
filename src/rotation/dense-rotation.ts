// A rotation given as an explicit orthogonal matrix: a learned (SpinQuant-style) rotation, or any Q that
// has no fast transform. Products are plain matmuls, O(n) per output value.

import { ModernBertError } from '../errors.js';
import { randomSigns } from './random-signs.js';
import { destination, type Matrix, type Rotation } from './rotation.js';

/** Largest relative error ‖QᵀQv − v‖/‖v‖ accepted: a float32-trained rotation is orthogonal only to ~1e-6. */
const ORTHOGONALITY_TOLERANCE = 1e-4;

/** An explicit orthogonal matrix Q (row-major size×size). */
export class DenseRotation implements Rotation {
  readonly size: number;
  private readonly q: Float64Array;
  private readonly qT: Float64Array;

  /** Copies `matrix`; throws SHAPE_MISMATCH for a wrong length and BAD_ARGUMENT if it is not orthogonal. */
  constructor(size: number, matrix: Matrix) {
    if (matrix.length !== size * size) {
      throw new ModernBertError('SHAPE_MISMATCH', `a rotation of order ${size} needs ${size * size} values, got ${matrix.length}`, {
        size,
        length: matrix.length,
      });
    }
    this.size = size;
    this.q = new Float64Array(matrix);
    this.qT = new Float64Array(size * size);
    for (let i = 0; i < size; i++) for (let j = 0; j < size; j++) this.qT[j * size + i] = this.q[i * size + j]!;
    this.checkOrthogonal();
  }

  rightMul(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    return matmul(w, this.q, rows, this.size, this.size, destination(this.size, w, rows, cols, 'right', out));
  }

  rightMulT(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    return matmul(w, this.qT, rows, this.size, this.size, destination(this.size, w, rows, cols, 'right', out));
  }

  leftMul(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    return matmul(this.q, w, this.size, this.size, cols, destination(this.size, w, rows, cols, 'left', out));
  }

  leftMulT(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    return matmul(this.qT, w, this.size, this.size, cols, destination(this.size, w, rows, cols, 'left', out));
  }

  /** QᵀQ = I, probed with two random ±1 vectors: O(n²) instead of forming QᵀQ in O(n³). */
  private checkOrthogonal(): void {
    const n = this.size;
    for (const seed of [1, 2]) {
      const v = randomSigns(n, seed);
      const back = matmul(this.qT, matmul(this.q, v, n, n, 1), n, n, 1);
      let err = 0;
      for (let i = 0; i < n; i++) err += (back[i]! - v[i]!) ** 2;
      if (!(Math.sqrt(err / n) <= ORTHOGONALITY_TOLERANCE)) {
        throw new ModernBertError('BAD_ARGUMENT', `rotation matrix of order ${n} is not orthogonal (‖QᵀQv − v‖/‖v‖ = ${Math.sqrt(err / n)})`, {
          size: n,
        });
      }
    }
  }
}

/** out ← A[m,k]·B[k,n] with float64 accumulation; four rows of A at a time so each row of B is read once per four. */
function matmul(a: Matrix, b: Matrix, m: number, k: number, n: number, out: Float32Array = new Float32Array(m * n)): Float32Array {
  const acc = new Float64Array(4 * n);
  for (let i0 = 0; i0 < m; i0 += 4) {
    const t = Math.min(4, m - i0);
    acc.fill(0);
    for (let p = 0; p < k; p++) {
      const a0 = a[i0 * k + p]!;
      const a1 = t > 1 ? a[(i0 + 1) * k + p]! : 0;
      const a2 = t > 2 ? a[(i0 + 2) * k + p]! : 0;
      const a3 = t > 3 ? a[(i0 + 3) * k + p]! : 0;
      const row = p * n;
      for (let j = 0; j < n; j++) {
        const bv = b[row + j]!;
        acc[j] += a0 * bv;
        acc[n + j] += a1 * bv;
        acc[2 * n + j] += a2 * bv;
        acc[3 * n + j] += a3 * bv;
      }
    }
    for (let r = 0; r < t; r++) for (let j = 0; j < n; j++) out[(i0 + r) * n + j] = acc[r * n + j]!;
  }
  return out;
}
