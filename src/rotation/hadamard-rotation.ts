// Q = diag(s)·H/√n with random signs s: QuaRot's randomized Hadamard rotation. The random signs keep
// the rotation from aligning with structure in the weights; H spreads an outlier channel over all n.
//
// With H unnormalized (H·Hᵀ = n·I), each product reduces to a transform of rows or columns:
//   W·Q  : each row w → Hᵀ·(s⊙w)/√n        Qᵀ·W : each column w → Hᵀ·(s⊙w)/√n
//   W·Qᵀ : each row w → s⊙(H·w)/√n         Q·W  : each column w → s⊙(H·w)/√n

import { fwhtColumns, fwhtRows, hadamardPlan, type HadamardPlan } from './hadamard.js';
import { randomSigns } from './random-signs.js';
import { checkOperand, type Matrix, type Rotation } from './rotation.js';

/** Rows transformed per batch: bounds the float64 working copy of a large matrix (the embedding table). */
const ROW_BATCH = 512;

/** A seeded random Hadamard rotation of order `size` (see hadamardPlan for the supported orders). */
export class HadamardRotation implements Rotation {
  readonly size: number;
  /** s: ±1 per coordinate. */
  readonly signs: Float64Array;
  private readonly plan: HadamardPlan;
  private readonly ones: Float64Array;
  private readonly scale: number;

  constructor(
    size: number,
    readonly seed: number,
  ) {
    this.plan = hadamardPlan(size);
    this.size = size;
    this.signs = randomSigns(size, seed);
    this.ones = new Float64Array(size).fill(1);
    this.scale = 1 / Math.sqrt(size);
  }

  rightMul(w: Matrix, rows: number, cols: number): Float32Array {
    checkOperand(this.size, w, rows, cols, 'right');
    return this.transformRows(w, rows, this.signs, this.ones, true);
  }

  rightMulT(w: Matrix, rows: number, cols: number): Float32Array {
    checkOperand(this.size, w, rows, cols, 'right');
    return this.transformRows(w, rows, this.ones, this.signs, false);
  }

  leftMul(w: Matrix, rows: number, cols: number): Float32Array {
    checkOperand(this.size, w, rows, cols, 'left');
    return this.transformColumns(w, cols, this.ones, this.signs, false);
  }

  leftMulT(w: Matrix, rows: number, cols: number): Float32Array {
    checkOperand(this.size, w, rows, cols, 'left');
    return this.transformColumns(w, cols, this.signs, this.ones, true);
  }

  /** Each row w → post ⊙ H'·(pre ⊙ w)/√n, with H' = Hᵀ when `transpose`. */
  private transformRows(w: Matrix, rows: number, pre: Float64Array, post: Float64Array, transpose: boolean): Float32Array {
    const n = this.size;
    const out = new Float32Array(rows * n);
    const batch = new Float64Array(n * Math.min(rows, ROW_BATCH));
    for (let r0 = 0; r0 < rows; r0 += ROW_BATCH) {
      const t = Math.min(ROW_BATCH, rows - r0);
      const x = batch.subarray(0, t * n);
      for (let r = 0; r < t; r++) {
        const off = (r0 + r) * n;
        for (let i = 0; i < n; i++) x[r * n + i] = w[off + i]! * pre[i]!;
      }
      fwhtRows(this.plan, x, t, transpose);
      for (let r = 0; r < t; r++) {
        const off = (r0 + r) * n;
        for (let i = 0; i < n; i++) out[off + i] = x[r * n + i]! * post[i]! * this.scale;
      }
    }
    return out;
  }

  /** Each column w → post ⊙ H'·(pre ⊙ w)/√n, with H' = Hᵀ when `transpose`. */
  private transformColumns(w: Matrix, cols: number, pre: Float64Array, post: Float64Array, transpose: boolean): Float32Array {
    const n = this.size;
    const x = new Float64Array(n * cols);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < cols; j++) x[i * cols + j] = w[i * cols + j]! * pre[i]!;
    }
    fwhtColumns(this.plan, x, cols, transpose);
    const out = new Float32Array(n * cols);
    for (let i = 0; i < n; i++) {
      const f = post[i]! * this.scale;
      for (let j = 0; j < cols; j++) out[i * cols + j] = x[i * cols + j]! * f;
    }
    return out;
  }
}
