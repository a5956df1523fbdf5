// An orthogonal n×n matrix Q applied to row-major matrices. Folding only ever needs these four products,
// so a Hadamard rotation can apply them in O(n log n) per vector while a learned (dense) one uses matmuls.

import { ModernBertError } from '../errors.js';

/** A row-major matrix of float32 or float64 values. */
export type Matrix = Float32Array | Float64Array;

/** An orthogonal matrix Q of order `size`; every product takes W row-major [rows, cols] and returns a new array. */
export interface Rotation {
  readonly size: number;
  /** W·Q, for W [rows, size]. */
  rightMul(w: Matrix, rows: number, cols: number): Float32Array;
  /** W·Qᵀ, for W [rows, size]. */
  rightMulT(w: Matrix, rows: number, cols: number): Float32Array;
  /** Q·W, for W [size, cols]. */
  leftMul(w: Matrix, rows: number, cols: number): Float32Array;
  /** Qᵀ·W, for W [size, cols]. */
  leftMulT(w: Matrix, rows: number, cols: number): Float32Array;
}

/** Throws SHAPE_MISMATCH unless W holds rows·cols values and the side that meets Q has length `size`. */
export function checkOperand(size: number, w: Matrix, rows: number, cols: number, side: 'left' | 'right'): void {
  const inner = side === 'right' ? cols : rows;
  if (w.length !== rows * cols || inner !== size) {
    throw new ModernBertError(
      'SHAPE_MISMATCH',
      `cannot multiply a [${rows}, ${cols}] matrix (${w.length} values) by a rotation of order ${size} on the ${side}`,
      { rows, cols, length: w.length, size },
    );
  }
}

/** Q = I: folding without rotation. */
export class IdentityRotation implements Rotation {
  constructor(readonly size: number) {}

  rightMul(w: Matrix, rows: number, cols: number): Float32Array {
    checkOperand(this.size, w, rows, cols, 'right');
    return Float32Array.from(w);
  }

  rightMulT(w: Matrix, rows: number, cols: number): Float32Array {
    return this.rightMul(w, rows, cols);
  }

  leftMul(w: Matrix, rows: number, cols: number): Float32Array {
    checkOperand(this.size, w, rows, cols, 'left');
    return Float32Array.from(w);
  }

  leftMulT(w: Matrix, rows: number, cols: number): Float32Array {
    return this.leftMul(w, rows, cols);
  }
}
