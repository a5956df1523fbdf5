// The sums of exponentials of two logit vectors that KL divergence needs, by the WebAssembly SIMD kernel in
// exp-sums.wat (two exponentials per element at a few nanoseconds, against about 10 for each Math.exp).

import { readFileSync } from 'node:fs';

// The part of WebAssembly's API used here (this project's TypeScript library list has no WebAssembly types).
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
};

interface ExpSumsExports {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  sums(a: number, b: number, n: number, maxA: number, maxB: number, out: number): void;
}

let kernel: ExpSumsExports | undefined;

function instance(): ExpSumsExports {
  kernel ??= new WebAssembly.Instance(
    new WebAssembly.Module(readFileSync(new URL('./exp-sums.wasm', import.meta.url))),
    {},
  ).exports as unknown as ExpSumsExports;
  return kernel;
}

/** The sums over v < n: exp(x[v] - maxX), exp(y[v] - maxY), and exp(x[v] - maxX) (x[v] - y[v]); maxX >= every x[v], maxY >= every y[v]. */
export function expSums(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  n: number,
  maxX: number,
  maxY: number,
): { sumX: number; sumY: number; sumXY: number } {
  const k = instance();
  const even = n & ~1;
  // x at 0, y after it, the three sums after both.
  const need = 16 * even + 24;
  if (k.memory.buffer.byteLength < need) k.memory.grow(Math.ceil((need - k.memory.buffer.byteLength) / 65536));
  const mem = new Float64Array(k.memory.buffer);
  copyInto(mem, 0, x, even);
  copyInto(mem, even, y, even);
  k.sums(0, 8 * even, even, maxX, maxY, 16 * even);
  let [sumX, sumY, sumXY] = [mem[2 * even]!, mem[2 * even + 1]!, mem[2 * even + 2]!];
  if (n > even) {
    const ex = Math.exp(x[even]! - maxX);
    sumX += ex;
    sumY += Math.exp(y[even]! - maxY);
    sumXY += ex * (x[even]! - y[even]!);
  }
  return { sumX, sumY, sumXY };
}

/** The first n values of `from` into `to` at `at`: a typed array's in one native copy. */
function copyInto(to: Float64Array, at: number, from: ArrayLike<number>, n: number): void {
  if (ArrayBuffer.isView(from) && !(from instanceof DataView)) to.set((from as Float32Array).subarray(0, n), at);
  else for (let v = 0; v < n; v++) to[at + v] = from[v]!;
}
