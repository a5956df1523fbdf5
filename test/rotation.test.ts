import { describe, expect, it } from 'vitest';
import { orthonormalizeRows } from './helpers/orthogonal.js';
import { ModernBertError } from '../src/errors.js';
import {
  DenseRotation,
  fwht,
  fwhtColumns,
  fwhtRows,
  HadamardRotation,
  hadamardMatrix,
  hadamardPlan,
  IdentityRotation,
  type Rotation,
} from '../src/rotation/index.js';

/** Deterministic test data: mulberry32 uniforms, Box–Muller normals. */
function normals(count: number, seed: number): Float64Array {
  let a = seed >>> 0;
  const uniform = (): number => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) out[i] = Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return out;
}

/** A[m,k]·B[k,n] in float64. */
function matmul(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) out[i * n + j] += a[i * k + p]! * b[p * n + j]!;
  return out;
}

function transpose(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j]!;
  return t;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function expectError(fn: () => unknown, code: string, text: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ModernBertError);
    expect((e as ModernBertError).code).toBe(code);
    expect((e as ModernBertError).message).toMatch(text);
    return;
  }
  throw new Error('expected an error');
}

/** H·Hᵀ = n·I, in exact integer arithmetic. */
function expectHadamard(h: Int8Array, n: number): void {
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let p = 0; p < n; p++) dot += h[i * n + p]! * h[j * n + p]!;
      if (dot !== (i === j ? n : 0)) throw new Error(`order ${n}: row ${i} · row ${j} = ${dot}`);
    }
  }
}

describe('hadamardMatrix', () => {
  for (const k of [1, 12, 20, 28, 36]) {
    for (const m of [0, 1, 2, 3]) {
      const n = k * 2 ** m;
      it(`order ${n} = ${k}·2^${m}: H·Hᵀ = n·I exactly, normalized`, () => {
        const plan = hadamardPlan(n);
        expect(plan.blockSize * plan.sylvesterSize).toBe(n);
        expect(plan.blockSize).toBe(k === 1 ? 1 : k);
        const h = hadamardMatrix(n);
        expectHadamard(h, n);
        for (let i = 0; i < n; i++) {
          expect(h[i]).toBe(1);
          expect(h[i * n]).toBe(1);
        }
      });
    }
  }

  it('factors the model sizes with the smallest block', () => {
    const forms = [64, 256, 768, 1024, 1152, 2624].map((n) => [n, hadamardPlan(n).blockSize]);
    expect(forms).toEqual([
      [64, 1],
      [256, 1],
      [768, 12],
      [1024, 1],
      [1152, 36],
      [2624, 164],
    ]);
  });

  for (const n of [768, 1024, 1152]) {
    it(`order ${n}: the fast transform of Hᵀ is n·I exactly`, () => {
      const plan = hadamardPlan(n);
      const x = Float64Array.from(transpose(hadamardMatrix(n), n, n));
      fwhtColumns(plan, x, n);
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++)
          if (x[i * n + j] !== (i === j ? n : 0)) throw new Error(`(${i}, ${j}) = ${x[i * n + j]}`);
    });
  }

  it('rejects orders with no known construction, naming the size and the supported forms', () => {
    for (const n of [3, 6, 10, 92, 100])
      expectError(() => hadamardPlan(n), 'UNSUPPORTED', new RegExp(`order ${n}\\b.*K·2\\^m`));
    for (const n of [0, -4, 2.5]) expectError(() => hadamardPlan(n), 'BAD_ARGUMENT', /positive integer/);
  });
});

describe('fast Walsh–Hadamard transform', () => {
  for (const n of [8, 12, 20, 24, 28, 36, 96]) {
    it(`order ${n}: vector, rows and columns agree with dense products, H and Hᵀ`, () => {
      const plan = hadamardPlan(n);
      const h = hadamardMatrix(n);
      const hT = transpose(h, n, n);
      for (const [tr, dense] of [
        [false, h],
        [true, hT],
      ] as const) {
        const v = normals(n, n);
        const fast = Float64Array.from(v);
        fwht(plan, fast, 0, tr);
        expect(maxAbsDiff(fast, matmul(dense, v, n, n, 1))).toBeLessThan(1e-12);

        const cols = 5;
        const x = normals(n * cols, n + 1);
        const xc = Float64Array.from(x);
        fwhtColumns(plan, xc, cols, tr);
        expect(maxAbsDiff(xc, matmul(dense, x, n, n, cols))).toBeLessThan(1e-12);

        const rows = 70; // more than one tile of rows
        const y = normals(rows * n, n + 2);
        const yr = Float64Array.from(y);
        fwhtRows(plan, yr, rows, tr);
        expect(maxAbsDiff(yr, matmul(y, transpose(dense, n, n), rows, n, n))).toBeLessThan(1e-12);
      }
    });
  }

  it('order 2624 = 164·16 (the largest block here): a vector agrees with the dense product', () => {
    const n = 2624;
    const plan = hadamardPlan(n);
    const v = normals(n, 3);
    for (const [tr, dense] of [
      [false, hadamardMatrix(n)],
      [true, transpose(hadamardMatrix(n), n, n)],
    ] as const) {
      const fast = Float64Array.from(v);
      fwht(plan, fast, 0, tr);
      expect(maxAbsDiff(fast, matmul(dense, v, n, n, 1))).toBeLessThan(1e-10);
    }
  });

  it('transforms a vector inside a larger buffer', () => {
    const plan = hadamardPlan(12);
    const x = normals(30, 4);
    const y = Float64Array.from(x);
    fwht(plan, y, 7);
    expect(maxAbsDiff(y.subarray(7, 19), matmul(hadamardMatrix(12), x.subarray(7, 19), 12, 12, 1))).toBeLessThan(1e-12);
    expect([...y.subarray(0, 7), ...y.subarray(19)]).toEqual([...x.subarray(0, 7), ...x.subarray(19)]);
  });

  it('rejects a buffer of the wrong length', () => {
    const plan = hadamardPlan(12);
    expectError(() => fwht(plan, new Float64Array(11)), 'SHAPE_MISMATCH', /order 12/);
    expectError(() => fwht(plan, new Float64Array(20), 9), 'SHAPE_MISMATCH', /order 12/);
    expectError(() => fwhtColumns(plan, new Float64Array(25), 2), 'SHAPE_MISMATCH', /order 12/);
    expectError(() => fwhtRows(plan, new Float64Array(25), 2), 'SHAPE_MISMATCH', /order 12/);
  });
});

/** The dense matrix of a rotation, as I·Q. */
function denseOf(r: Rotation): Float64Array {
  const n = r.size;
  const id = new Float64Array(n * n);
  for (let i = 0; i < n; i++) id[i * n + i] = 1;
  return Float64Array.from(r.rightMul(id, n, n));
}

/** Both products of `r` against float64 dense products with `q`. */
function expectProducts(r: Rotation, q: Float64Array, rows: number): void {
  const n = r.size;
  const qT = transpose(q, n, n);
  const a = normals(rows * n, 11); // [rows, n]
  const b = normals(n * rows, 12); // [n, rows]
  const tol = 1e-5;
  expect(maxAbsDiff(r.rightMul(a, rows, n), matmul(a, q, rows, n, n))).toBeLessThan(tol);
  expect(maxAbsDiff(r.leftMulT(b, n, rows), matmul(qT, b, n, n, rows))).toBeLessThan(tol);
  // float32 input gives the same products
  expect(
    maxAbsDiff(r.rightMul(Float32Array.from(a), rows, n), matmul(Float32Array.from(a), q, rows, n, n)),
  ).toBeLessThan(tol);
  // `out` receives the product and is returned
  const out = new Float32Array(rows * n);
  expect(r.leftMulT(b, n, rows, out)).toBe(out);
  expect(maxAbsDiff(out, matmul(qT, b, n, n, rows))).toBeLessThan(tol);
  expect(r.rightMul(a, rows, n, out)).toBe(out);
  expect(maxAbsDiff(out, matmul(a, q, rows, n, n))).toBeLessThan(tol);
  expectError(() => r.rightMul(a, rows, n, new Float32Array(rows * n - 1)), 'SHAPE_MISMATCH', /output/);
}

function expectOrthogonal(q: Float64Array, n: number): void {
  const qtq = matmul(transpose(q, n, n), q, n, n, n);
  for (let i = 0; i < n; i++) qtq[i * n + i] -= 1;
  expect(maxAbsDiff(qtq, new Float64Array(n * n))).toBeLessThan(1e-6);
}

describe('HadamardRotation', () => {
  for (const n of [12, 24, 28, 64, 768]) {
    it(`order ${n}: Q = diag(s)·H/√n, orthogonal, products match dense float64`, () => {
      const r = new HadamardRotation(n, 7);
      const h = hadamardMatrix(n);
      const q = new Float64Array(n * n);
      for (let i = 0; i < n; i++)
        for (let j = 0; j < n; j++) q[i * n + j] = (r.signs[i]! * h[i * n + j]!) / Math.sqrt(n);
      expect(maxAbsDiff(denseOf(r), q)).toBeLessThan(1e-7);
      expectOrthogonal(q, n);
      expectProducts(r, q, n === 768 ? 3 : 9);
    });
  }

  it('rotates more rows than one batch', () => {
    const n = 12;
    const rows = 1100;
    const r = new HadamardRotation(n, 3);
    const w = normals(rows * n, 5);
    expect(maxAbsDiff(r.rightMul(w, rows, n), matmul(w, denseOf(r), rows, n, n))).toBeLessThan(1e-5);
  });

  it('signs are a pure function of the seed', () => {
    expect(new HadamardRotation(24, 0).signs).toEqual(new HadamardRotation(24, 0).signs);
    expect(new HadamardRotation(24, 0).signs).not.toEqual(new HadamardRotation(24, 1).signs);
    // pinned so that a recorded seed rebuilds the same rotation in every version
    expect([...new HadamardRotation(12, 0).signs]).toEqual([-1, 1, 1, 1, 1, -1, 1, -1, 1, 1, -1, 1]);
    expectError(() => new HadamardRotation(12, -1), 'BAD_ARGUMENT', /seed/);
    expectError(() => new HadamardRotation(12, 0.5), 'BAD_ARGUMENT', /seed/);
  });

  it('rejects operands whose inner size is not the order', () => {
    const r = new HadamardRotation(12, 0);
    expectError(() => r.rightMul(new Float32Array(24), 1, 24), 'SHAPE_MISMATCH', /order 12/);
    expectError(() => r.leftMulT(new Float32Array(24), 12, 3), 'SHAPE_MISMATCH', /order 12/);
    expectError(() => new HadamardRotation(100, 0), 'UNSUPPORTED', /order 100/);
  });
});

/** A random orthogonal matrix: Gram–Schmidt on Gaussian rows. */
function randomOrthogonal(n: number, seed: number): Float64Array {
  return orthonormalizeRows(normals(n * n, seed), n);
}

describe('DenseRotation', () => {
  it('products match dense float64', () => {
    const n = 13;
    const q = randomOrthogonal(n, 4);
    expectProducts(new DenseRotation(n, q), q, 6);
  });

  it('rejects a matrix that is not orthogonal, or of the wrong size', () => {
    const q = randomOrthogonal(8, 1);
    q[5] += 0.01;
    expectError(() => new DenseRotation(8, q), 'BAD_ARGUMENT', /not orthogonal/);
    expectError(() => new DenseRotation(8, new Float64Array(63)), 'SHAPE_MISMATCH', /order 8/);
  });
});

describe('IdentityRotation', () => {
  it('products are copies', () => {
    const n = 6;
    const id = new Float64Array(n * n);
    for (let i = 0; i < n; i++) id[i * n + i] = 1;
    expectProducts(new IdentityRotation(n), id, 4);
    const r = new IdentityRotation(4);
    const w = normals(8, 1);
    expect(maxAbsDiff(r.rightMul(w, 2, 4), w)).toBeLessThan(1e-6);
    expect(maxAbsDiff(r.leftMulT(w, 4, 2), w)).toBeLessThan(1e-6);
    expectError(() => r.leftMulT(w, 2, 4), 'SHAPE_MISMATCH', /order 4/);
  });
});
