// An orthogonal n×n matrix Q applied to row-major matrices. Folding only ever needs these two products,
// so a Hadamard rotation can apply them in O(n log n) per vector while a learned (dense) one uses matmuls.

import { ModernBertError } from '../errors.js';
import { sharedFloat32 } from '../io/weights.js';

/** A row-major matrix of float32 or float64 values. */
export type Matrix = Float32Array | Float64Array;

/**
 * An orthogonal matrix Q of order `size`. Every product takes W row-major [rows, cols] and writes the result
 * into `out` (rows·cols values, not overlapping W) or, without `out`, into a new array; it returns the result.
 */
export interface Rotation {
  readonly size: number;
  /** W·Q, for W [rows, size]. */
  rightMul(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array;
  /** Qᵀ·W, for W [size, cols]. */
  leftMulT(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array;
}

/**
 * The destination of a product, after checking that W holds rows·cols values, that the side meeting Q has
 * length `size`, and that `out` (if given) has rows·cols values; throws SHAPE_MISMATCH otherwise.
 */
export function destination(
  size: number,
  w: Matrix,
  rows: number,
  cols: number,
  side: 'left' | 'right',
  out: Float32Array | undefined,
): Float32Array {
  const inner = side === 'right' ? cols : rows;
  if (w.length !== rows * cols || inner !== size || (out && out.length !== rows * cols)) {
    throw new ModernBertError(
      'SHAPE_MISMATCH',
      `cannot multiply a [${rows}, ${cols}] matrix (${w.length} values${out ? `, output ${out.length}` : ''}) ` +
        `by a rotation of order ${size} on the ${side}`,
      { rows, cols, length: w.length, size },
    );
  }
  return out ?? sharedFloat32(rows * cols); // folded weights are long-lived: shared, so the kernels read them in place
}

/** Q = I: folding without rotation. */
export class IdentityRotation implements Rotation {
  constructor(readonly size: number) {}

  rightMul(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    const dst = destination(this.size, w, rows, cols, 'right', out);
    dst.set(w);
    return dst;
  }

  leftMulT(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    const dst = destination(this.size, w, rows, cols, 'left', out);
    dst.set(w);
    return dst;
  }
}
