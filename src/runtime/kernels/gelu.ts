// gelu's erf form in WebAssembly SIMD (gelu_erf in gemm.wat) for the float32 engine: the scalar loop of
// activation.ts, two float64 lanes at a time, was the largest single-threaded cost of a long forward
// (ModernBERT's MLP applies it to intermediate x S values per layer).
import { mainEngine } from './instance.js';

/** out = 0.5 x (1 + erf(x / sqrt 2)), computed in float64 with the scalar kernel's erf, rounded once. */
export function geluSimd(out: Float32Array, x: Float32Array): void {
  mainEngine().gelu(out, x);
}
