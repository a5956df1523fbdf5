// Arithmetic modes of the interpreter. Nobody outside Apple documents the Neural Engine's arithmetic, so the
// float16 emulation comes in named modes and every reported number says which one produced it.
//
// fp32        everything in float32 (weights as stored, float16 weights included).
// fp16        pessimistic: every op's output rounded to float16; matrix products accumulate in float32 and
//             round the result; inside layer_norm the squares and their mean are float16 (|x| > 256
//             overflows); softmax sums in float32; reduce_l2_norm is overflow-safe (scaled internally);
//             gelu rounds each step of 0.5 * x * (1 + erf(x / sqrt 2)).
// fp16-fused  optimistic: as fp16, but fused ops (layer_norm, reduce_l2_norm, softmax, gelu) compute in
//             float32 inside and round only their output.
// fp16-acc16  as fp16, but matrix products keep their running sum in float16: partial sums of
//             ACC16_CHUNK products are formed in float32 and added to a float16 accumulator.

import { ModernBertError } from '../errors.js';
import { roundToF16InPlace } from './kernels/index.js';

export type Precision = 'fp32' | 'fp16' | 'fp16-fused' | 'fp16-acc16';
export const PRECISIONS: readonly Precision[] = ['fp32', 'fp16', 'fp16-fused', 'fp16-acc16'];

/** Products summed in float32 before each float16 accumulation in fp16-acc16 mode. */
export const ACC16_CHUNK = 32;

export interface Numerics {
  precision: Precision;
  /** True in every float16 mode. */
  half: boolean;
  /** True where fused ops keep float32 inside (fp32 and fp16-fused). */
  fusedExact: boolean;
  /** Rounds in place to the arithmetic's storage type (a no-op in fp32). */
  round(a: Float32Array): Float32Array;
}

/** The numerics of a precision mode. */
export function numericsFor(precision: Precision): Numerics {
  if (!PRECISIONS.includes(precision)) {
    throw new ModernBertError('BAD_ARGUMENT', `unknown precision "${precision}" (${PRECISIONS.join(', ')})`);
  }
  const half = precision !== 'fp32';
  return {
    precision,
    half,
    fusedExact: precision === 'fp32' || precision === 'fp16-fused',
    round: half ? roundToF16InPlace : (a) => a,
  };
}
