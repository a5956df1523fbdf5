// Deterministic random signs from an integer seed, identical on every platform (32-bit integer arithmetic
// only), so that a rotation recorded as "Hadamard, seed 7" can be rebuilt bit for bit anywhere.

import { ModernBertError } from '../errors.js';
import { splitmix32 } from '../numeric/prng.js';

/** n values of ±1 from splitmix32 seeded by an integer in [0, 2^32). */
export function randomSigns(n: number, seed: number): Float64Array {
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) {
    throw new ModernBertError('BAD_ARGUMENT', `rotation seed must be an integer in [0, 2^32), got ${seed}`, { seed });
  }
  const signs = new Float64Array(n);
  const next = splitmix32(seed);
  for (let i = 0; i < n; i++) signs[i] = next() >= 0x80000000 ? -1 : 1; // the top bit
  return signs;
}
