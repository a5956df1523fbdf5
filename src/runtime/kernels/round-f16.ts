// Float16 rounding of large arrays with the WebAssembly SIMD kernel, for the float16 emulation.
import { mainEngine } from './instance.js';

/**
 * Rounds every element of `a` in place to the nearest float16 value (ties to even, overflow to ±Infinity,
 * subnormals kept): bit-identical to roundToF16 in src/numeric/fp16.ts, several times faster.
 */
export function roundToF16InPlace(a: Float32Array): Float32Array {
  mainEngine().roundToF16(a);
  return a;
}
