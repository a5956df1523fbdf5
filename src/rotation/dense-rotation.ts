// A rotation given as an explicit orthogonal matrix: a learned (SpinQuant-style) rotation, or any Q that
// has no fast transform. Products are matmuls on the runtime's WebAssembly SIMD kernel (float32): folding
// ModernBERT-base with a dense Q is about 114 GFLOP, which a scalar JavaScript loop takes minutes for
// (docs/PERFORMANCE.md).

import { ModernBertError } from '../errors.js';
import { gemmSync } from '../runtime/kernels/index.js';
import { randomSigns } from './random-signs.js';
import { destination, type Matrix, type Rotation } from './rotation.js';

/** Largest relative error ‖QᵀQv − v‖/‖v‖ accepted: a float32-trained rotation is orthogonal only to ~1e-6. */
const ORTHOGONALITY_TOLERANCE = 1e-4;

/** An explicit orthogonal matrix Q (row-major size×size), applied in float32 with float32 accumulation. */
export class DenseRotation implements Rotation {
  readonly size: number;
  private readonly q: Float32Array;
  /** Float32 copies of float64 operands, reused: the kernel reads float32 only. */
  private staging = new Float32Array(0);

  /** Copies `matrix`; throws SHAPE_MISMATCH for a wrong length and BAD_ARGUMENT if it is not orthogonal. */
  constructor(size: number, matrix: Matrix) {
    if (matrix.length !== size * size) {
      throw new ModernBertError(
        'SHAPE_MISMATCH',
        `a rotation of order ${size} needs ${size * size} values, got ${matrix.length}`,
        {
          size,
          length: matrix.length,
        },
      );
    }
    this.size = size;
    this.q = new Float32Array(matrix);
    this.checkOrthogonal();
  }

  rightMul(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    const c = destination(this.size, w, rows, cols, 'right', out);
    gemmSync({ M: rows, N: this.size, K: this.size, a: this.float32(w), b: this.q, c });
    return c;
  }

  leftMulT(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    const c = destination(this.size, w, rows, cols, 'left', out);
    gemmSync({ M: this.size, N: cols, K: this.size, a: this.q, b: this.float32(w), c, transA: true });
    return c;
  }

  /** `w` itself if float32, else a float32 copy in the staging buffer. */
  private float32(w: Matrix): Float32Array {
    if (w instanceof Float32Array) return w;
    if (this.staging.length < w.length) this.staging = new Float32Array(w.length);
    const s = this.staging.subarray(0, w.length);
    s.set(w);
    return s;
  }

  /** QᵀQ = I, probed with two random ±1 vectors: O(n²) instead of forming QᵀQ in O(n³). */
  private checkOrthogonal(): void {
    const n = this.size;
    for (const seed of [1, 2]) {
      const v = randomSigns(n, seed);
      const qv = new Float32Array(n);
      gemmSync({ M: n, N: 1, K: n, a: this.q, b: this.float32(v), c: qv });
      const back = this.leftMulT(qv, n, 1);
      let err = 0;
      for (let i = 0; i < n; i++) err += (back[i]! - v[i]!) ** 2;
      const rel = Math.sqrt(err / n);
      if (!(rel <= ORTHOGONALITY_TOLERANCE)) {
        throw new ModernBertError(
          'BAD_ARGUMENT',
          `rotation matrix of order ${n} is not orthogonal (‖QᵀQv − v‖/‖v‖ = ${rel.toExponential(2)})`,
          {
            size: n,
          },
        );
      }
    }
  }
}
