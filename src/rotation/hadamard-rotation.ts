// Q = diag(s)·H/√n with random signs s: QuaRot's randomized Hadamard rotation. The random signs keep
// the rotation from aligning with structure in the weights; H spreads an outlier channel over all n.
//
// With H unnormalized (H·Hᵀ = n·I), each product reduces to a transform of rows or columns:
//   W·Q  : each row w → Hᵀ·(s⊙w)/√n        Qᵀ·W : each column w → Hᵀ·(s⊙w)/√n

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
  /** 1/√n: H is unnormalized. */
  private readonly scale: number;
  private readonly row: Float64Array;
  private readonly columns = new Workspace();

  constructor(
    size: number,
    readonly seed: number,
  ) {
    this.plan = hadamardPlan(size);
    this.size = size;
    this.signs = randomSigns(size, seed);
    this.scale = 1 / Math.sqrt(size);
    this.row = new Float64Array(size);
  }

  rightMul(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    const dst = destination(this.size, w, rows, cols, 'right', out);
    return this.transformRows(w, rows, dst);
  }

  leftMulT(w: Matrix, rows: number, cols: number, out?: Float32Array): Float32Array {
    const dst = destination(this.size, w, rows, cols, 'left', out);
    return this.transformColumns(w, cols, dst);
  }

  /** Each row w → Hᵀ·(s ⊙ w)/√n. */
  private transformRows(w: Matrix, rows: number, out: Float32Array): Float32Array {
    const n = this.size;
    const x = this.row;
    for (let r = 0; r < rows; r++) {
      const off = r * n;
      for (let i = 0; i < n; i++) x[i] = w[off + i]! * this.signs[i]!;
      fwht(this.plan, x, 0, true);
      for (let i = 0; i < n; i++) out[off + i] = x[i]! * this.scale;
    }
    return out;
  }

  /** Each column w → Hᵀ·(s ⊙ w)/√n: rows of a transposed copy. */
  private transformColumns(w: Matrix, cols: number, out: Float32Array): Float32Array {
    const n = this.size;
    const t = this.columns.take(n * cols);
    for (let i = 0; i < n; i++) {
      const s = this.signs[i]!;
      for (let j = 0; j < cols; j++) t[j * n + i] = w[i * cols + j]! * s;
    }
    fwhtRows(this.plan, t, cols, true);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < cols; j++) out[i * cols + j] = t[j * n + i]! * this.scale;
    }
    return out;
  }
}
