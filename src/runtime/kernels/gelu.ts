// gelu's erf form in WebAssembly SIMD (gelu_erf in gemm.wat), for the float32 engine: about 10x the
// scalar loop, which was the largest cost after the products in a long forward (ModernBERT's MLP applies
// it to 1,152 x S values per layer).
import { mainEngine } from './engine.js';

/** out = 0.5 x (1 + erf(x / sqrt 2)) in float32 (erf within 1.2e-7, as the scalar kernel's). */
export function geluSimd(out: Float32Array, x: Float32Array): void {
  mainEngine().gelu(out, x);
}
