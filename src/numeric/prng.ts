// The portable PRNG of synthetic checkpoints (docs/FIXTURES.md): every value is a pure function of a
// tensor's name and the element's flat index, so the reference implementation and this one agree bit for
// bit. 32-bit products use Math.imul; the final value is computed in float64 and rounded once to float32.

const textEncoder = new TextEncoder();

/** FNV-1a (32-bit) of the UTF-8 bytes of `text`. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const b of textEncoder.encode(text)) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}

/**
 * A sequential SplitMix32-style generator (golden-ratio increments, MurmurHash3's finalizer) of unsigned
 * 32-bit integers: the random signs of Hadamard rotations and the minibatches of rotation learning.
 */
export function splitmix32(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** One output of the hash for flat index `i` under a seed (as returned by seedOffset). */
function mix(i: number, offset: number): number {
  let x = (i + offset) | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

// seed * 0x9E3779B9 mod 2^32, added to every index.
function seedOffset(seed: number): number {
  return Math.imul(seed, 0x9e3779b9);
}

/** The hash of indices 0..n-1 under `seed`, as unsigned 32-bit integers. */
export function hashU32(n: number, seed: number): Uint32Array {
  const out = new Uint32Array(n);
  const offset = seedOffset(seed);
  for (let i = 0; i < n; i++) out[i] = mix(i, offset);
  return out;
}

/** The synthetic tensor `name` before overrides: float32(base + (2u - 1) * amp) per element. */
export function synthTensor(name: string, shape: readonly number[], base: number, amp: number): Float32Array {
  return synthFill(new Float32Array(shape.reduce((a, b) => a * b, 1)), name, base, amp);
}

/** Fills `out` with the first out.length values of tensor `name` (lets a writer reuse one buffer). */
export function synthFill(out: Float32Array, name: string, base: number, amp: number): Float32Array {
  const offset = seedOffset(fnv1a32(name));
  for (let i = 0; i < out.length; i++) {
    const u = (mix(i, offset) >>> 8) / 16777216;
    out[i] = base + (2 * u - 1) * amp; // the store rounds to float32
  }
  return out;
}

/** Body ids of the long synthetic inputs: lo + (hash mod (hi - lo)), seeded by fnv1a32(tag). */
export function synthIds(n: number, tag: string, lo: number, hi: number): number[] {
  const hash = hashU32(n, fnv1a32(tag));
  return Array.from(hash, (x) => lo + (x % (hi - lo)));
}
