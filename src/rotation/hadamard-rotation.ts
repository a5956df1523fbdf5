// Q = diag(s)·H/√n with random signs s: QuaRot's randomized Hadamard rotation. The random signs keep
// the rotation from aligning with structure in the weights; H spreads an outlier channel over all n.
//
// With H unnormalized (H·Hᵀ = n·I), each product reduces to a transform of rows or columns:
//   W·Q  : each row w → Hᵀ·(s⊙w)/√n        Qᵀ·W : each column w → Hᵀ·(s⊙w)/√n
//   W·Qᵀ : each row w → s⊙(H·w)/√n         Q·W  : each column w → s⊙(H·w)/√n

import { fwht, fwhtRows, hadamardPlan, type HadamardPlan } from './hadamard.js';
import { randomSigns } from './random-signs.js';
import { destination, type Matrix, type Rotation } from './rotation.js';
import { Workspace } from './workspace.js';

/** A seeded random Hadamard rotation of order `size` (see hadamardPlan for the supported orders). */
export class HadamardRotation implements Rotation {
  readonly size: number;
  /** s: ±1 per coordinate. */
  readonly signs: Float64Array;
  private readonly plan: HadamardPlan;
  private readonly ones: Float64Array;
  /** s/√n and 1/√n: the output factors, with the normalization folded in. */
  private readonly scaledSigns: Float64Array;
  private readonly scaledOnes: Float64Array;
  private readonly row: Float64Array;
  private readonly columns = new Workspace();

  constructor(
    size: number,
    readonly seed: number,
  ) {
    this.plan = hadamardPlan(size);
    this.size = size;
    this.signs = randomSigns(size, seed);
    this.ones = new Float64Array(size).fill(1);
    const scale = 1 / Math.sqrt(size);
    this.scaledSigns = this.signs.map((s) => s * scale);
    this.scaledOnes = new Float64Array(size).fill(scale);
    this.row = new Float64Array(size);
  }

  rightMul(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    const dst = destination(this.size, w, rows, cols, 'right', out);
    return this.transformRows(w, rows, this.signs, this.scaledOnes, true, dst);
  }

  rightMulT(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    const dst = destination(this.size, w, rows, cols, 'right', out);
    return this.transformRows(w, rows, this.ones, this.scaledSigns, false, dst);
  }

  leftMul(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    const dst = destination(this.size, w, rows, cols, 'left', out);
    return this.transformColumns(w, cols, this.ones, this.scaledSigns, false, dst);
  }

  leftMulT(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    const dst = destination(this.size, w, rows, cols, 'left', out);
    return this.transformColumns(w, cols, this.signs, this.scaledOnes, true, dst);
  }

  /** Each row w → post ⊙ H'·(pre ⊙ w), with H' = Hᵀ when `transpose`. */
  private transformRows(
    w: Matrix,
    rows: number,
    pre: Float64Array,
    post: Float64Array,
    transpose: boolean,
    out: Float32Array,
  ): Float32Array {
    const n = this.size;
    const x = this.row;
    for (let r = 0; r < rows; r++) {
      const off = r * n;
      for (let i = 0; i < n; i++) x[i] = w[off + i]! * pre[i]!;
      fwht(this.plan, x, 0, transpose);
      for (let i = 0; i < n; i++) out[off + i] = x[i]! * post[i]!;
    }
    return out;
  }

  /** Each column w → post ⊙ H'·(pre ⊙ w), with H' = Hᵀ when `transpose`: rows of a transposed copy. */
  private transformColumns(
    w: Matrix,
    cols: number,
    pre: Float64Array,
    post: Float64Array,
    transpose: boolean,
    out: Float32Array,
  ): Float32Array {
    const n = this.size;
    const t = this.columns.take(n * cols);
    for (let i = 0; i < n; i++) {
      const s = pre[i]!;
      for (let j = 0; j < cols; j++) t[j * n + i] = w[i * cols + j]! * s;
    }
    fwhtRows(this.plan, t, cols, transpose);
    for (let i = 0; i < n; i++) {
      const f = post[i]!;
      for (let j = 0; j < cols; j++) out[i * cols + j] = t[j * n + i]! * f;
    }
    return out;
  }
}
