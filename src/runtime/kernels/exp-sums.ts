// The column maxima and the sums of exponentials behind KL divergence, per column of two (rows, columns)
// logit matrices, by the WebAssembly SIMD kernels in exp-sums.wat: two exponentials per element in about
// 3 ns, against about 10 for each Math.exp. Rows are copied in as float64, a block at a time.

import { readFileSync } from 'node:fs';

// The part of WebAssembly's API used here (this project's TypeScript library list has no WebAssembly types).
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
};

interface ExpSumsExports {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  sums(a: number, b: number, rows: number, cols: number, maxA: number, maxB: number, out: number): void;
  maxes(a: number, b: number, rows: number, cols: number, out: number): void;
}

let kernel: ExpSumsExports | undefined;

function instance(): ExpSumsExports {
  kernel ??= new WebAssembly.Instance(
    new WebAssembly.Module(readFileSync(new URL('./exp-sums.wasm', import.meta.url))),
    {},
  ).exports as unknown as ExpSumsExports;
  return kernel;
}

/** Floats of each side's block of rows: 256 KB, so that a block stays in cache while it is read. */
const BLOCK_FLOATS = 32768;

/** The columns `cols` of two (rows, P) row-major matrices x and y. */
interface Columns {
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  rows: number;
  P: number;
  cols: Int32Array;
}

/** The kernels take columns in pairs: an odd count gets a column of zeros beside it. */
const evenWidth = (n: number) => n + (n & 1);

/**
 * Copies the rows of `c` into the kernel's memory a block at a time (float64, `evenWidth` columns) after
 * `head` rows of that width that `start` fills first, and calls `run` on each block (the float offsets of x's
 * and y's rows, and the row count). Returns the memory, for the caller to read its head.
 */
function inBlocks(
  { x, y, rows, P, cols }: Columns,
  head: number,
  start: (mem: Float64Array) => void,
  run: (k: ExpSumsExports, atX: number, atY: number, rows: number) => void,
): Float64Array {
  const k = instance();
  const n = cols.length;
  const w = evenWidth(n);
  const block = Math.max(1, Math.floor(BLOCK_FLOATS / w));
  const [atX, atY] = [head * w, head * w + block * w];
  const need = 8 * (atY + block * w);
  if (k.memory.buffer.byteLength < need) k.memory.grow(Math.ceil((need - k.memory.buffer.byteLength) / 65536));
  const mem = new Float64Array(k.memory.buffer);
  start(mem);
  const whole = n === P && cols.every((c, i) => c === i) && ArrayBuffer.isView(x) && ArrayBuffer.isView(y);
  for (let r0 = 0; r0 < rows; r0 += block) {
    const r1 = Math.min(rows, r0 + block);
    for (let r = r0; r < r1; r++) {
      const [to, from] = [(r - r0) * w, r * P];
      if (whole) {
        // Every column: a row is a contiguous run, copied natively.
        mem.set((x as Float32Array).subarray(from, from + P), atX + to);
        mem.set((y as Float32Array).subarray(from, from + P), atY + to);
      } else {
        for (let c = 0; c < n; c++) {
          mem[atX + to + c] = x[from + cols[c]!]!;
          mem[atY + to + c] = y[from + cols[c]!]!;
        }
      }
      if (w > n) mem[atX + to + n] = mem[atY + to + n] = 0;
    }
    run(k, atX, atY, r1 - r0);
  }
  return mem;
}

/** Each column's largest value of x and of y, and its largest |x - y| (NaN or infinite when either side is not finite there). */
export function columnMaxima(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  rows: number,
  P: number,
  cols: Int32Array,
): { maxX: Float64Array; maxY: Float64Array; maxAbs: Float64Array } {
  const [n, w] = [cols.length, evenWidth(cols.length)];
  const mem = inBlocks(
    { x, y, rows, P, cols },
    3,
    (m) => m.fill(-Infinity, 0, 2 * w).fill(0, 2 * w, 3 * w),
    (k, atX, atY, r) => k.maxes(8 * atX, 8 * atY, r, w, 0),
  );
  const part = (s: number) => mem.slice(s * w, s * w + n);
  return { maxX: part(0), maxY: part(1), maxAbs: part(2) };
}

/**
 * For the columns `cols` of x and y, (rows, P) row-major: sum exp(x - maxX[k]), sum exp(y - maxY[k]) and
 * sum exp(x - maxX[k]) (x - y) over the rows of column cols[k], as [sumX..., sumY..., sumXY...]. maxX[k] and
 * maxY[k] are at least every value of their column (the largest, for accuracy).
 */
export function expSums(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  rows: number,
  P: number,
  cols: Int32Array,
  maxX: Float64Array,
  maxY: Float64Array,
): Float64Array {
  const [n, w] = [cols.length, evenWidth(cols.length)];
  // maxX, maxY, then the three sums.
  const start = (m: Float64Array) => {
    m.fill(0, 0, 5 * w);
    m.set(maxX.subarray(0, n), 0);
    m.set(maxY.subarray(0, n), w);
  };
  const mem = inBlocks({ x, y, rows, P, cols }, 5, start, (k, atX, atY, r) =>
    k.sums(8 * atX, 8 * atY, r, w, 0, 8 * w, 16 * w),
  );
  const out = new Float64Array(3 * n);
  for (let s = 0; s < 3; s++) out.set(mem.subarray((2 + s) * w, (2 + s) * w + n), s * n);
  return out;
}
