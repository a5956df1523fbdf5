// IEEE half precision (float16) and bfloat16 conversions. Float16 values are held as float32 numbers
// that are exactly representable in float16; `roundToF16` produces them (round to nearest, ties to even).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Largest finite float16. */
export const F16_MAX = 65504;

/** Rounds every element of `a` in place to the nearest float16 value (overflow to ±Infinity). */
export function roundToF16(a: Float32Array): Float32Array {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < u.length; i++) {
    const b = u[i]!;
    const abs = b & 0x7fffffff;
    if (abs >= 0x38800000) {
      // Normal float16 range (>= 2^-14): keep 10 mantissa bits, ties to even.
      if (abs >= 0x7f800000) continue; // inf, NaN
      const r = (abs + 0xfff + ((abs >>> 13) & 1)) & 0xffffe000;
      u[i] = (r > 0x477fe000 ? 0x7f800000 : r) | (b & 0x80000000);
    } else if (abs !== 0) {
      // Subnormal float16: a multiple of 2^-24. Adding 0.5 (ulp 2^-24 in float32) rounds ties to even.
      const x = a[i]!;
      const r = Math.fround(Math.fround(Math.abs(x) + 0.5) - 0.5);
      a[i] = x < 0 ? -r : r;
    }
  }
  return a;
}

/** The float16 value nearest to x (as a number). */
export function f16round(x: number): number {
  f32[0] = x;
  roundToF16(f32);
  return f32[0]!;
}

/** Float32 bits to float16 bits (round to nearest even). */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const abs = b & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0); // inf / NaN
  if (abs >= 0x38800000) {
    const r = (abs + 0xfff + ((abs >>> 13) & 1)) & 0xffffe000;
    if (r > 0x477fe000) return sign | 0x7c00;
    return sign | (((r >>> 23) - 112) << 10) | ((r >>> 13) & 0x3ff);
  }
  // Subnormal or zero: value / 2^-24, rounded to nearest even.
  const m = Math.abs(x) * 16777216;
  let q = Math.floor(m);
  const frac = m - q;
  if (frac > 0.5 || (frac === 0.5 && (q & 1) === 1)) q++;
  return sign | q; // q == 0x400 becomes the smallest normal, which is the correct encoding
}

const f16Table = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = sign * m * 2 ** -24;
    else if (e === 31) t[h] = m ? NaN : sign * Infinity;
    else t[h] = sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

/** Float16 bits to the float32 value. */
export function f16BitsToF32(h: number): number {
  return f16Table[h & 0xffff]!;
}

/** Decodes a float16 array into float32. */
export function decodeF16(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) dst[i] = f16Table[src[i]!]!;
  return dst;
}

/** Encodes float32 values as float16 bits (round to nearest even). */
export function encodeF16(src: Float32Array, dst: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const b = u[i]!;
    const abs = b & 0x7fffffff;
    // Normal float16 range that cannot round up past 65504: round the mantissa, rebias the exponent.
    if (abs >= 0x38800000 && abs < 0x477ff000)
      dst[i] = ((b >>> 16) & 0x8000) | ((abs + 0xfff + ((abs >>> 13) & 1) - 0x38000000) >>> 13);
    else if (abs === 0) dst[i] = (b >>> 16) & 0x8000;
    else dst[i] = f32ToF16Bits(src[i]!); // subnormals, overflow, inf, NaN
  }
  return dst;
}

/** Decodes a bfloat16 array (upper halves of float32) into float32. */
export function decodeBF16(src: Uint16Array, dst: Float32Array = new Float32Array(src.length)): Float32Array {
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return dst;
}
