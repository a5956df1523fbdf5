// Deterministic random signs from an integer seed, identical on every platform (32-bit integer arithmetic
// only), so that a rotation recorded as "Hadamard, seed 7" can be rebuilt bit for bit anywhere.

import { ModernBertError } from '../errors.js';

/** n values of ±1 from a SplitMix32-style generator seeded by an integer in [0, 2^32). */
export function randomSigns(n: number, seed: number): Float64Array {
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) {
    throw new ModernBertError('BAD_ARGUMENT', `rotation seed must be an integer in [0, 2^32), got ${seed}`, { seed });
  }
  const signs = new Float64Array(n);
  let state = seed | 0;
  for (let i = 0; i < n; i++) {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z ^= z >>> 16;
    signs[i] = z < 0 ? -1 : 1; // the top bit
  }
  return signs;
}
