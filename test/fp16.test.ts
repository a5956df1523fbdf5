import { describe, expect, it } from 'vitest';
import {
  decodeBF16,
  decodeF16,
  encodeF16,
  f16BitsToF32,
  f16round,
  f32ToF16Bits,
  roundToF16,
} from '../src/numeric/fp16.js';

// Reference: the float16 nearest to x by exhaustive search over the 63488 finite float16 values' neighbours.
function nearestF16Bits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  let lo = 0;
  let hi = 0x7bff;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (f16BitsToF32(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  const below = f16BitsToF32(lo);
  if (below === a || lo === 0x7bff) return sign | lo;
  const above = f16BitsToF32(lo + 1);
  const pick = a - below < above - a ? lo : a - below > above - a ? lo + 1 : lo % 2 === 0 ? lo : lo + 1;
  return sign | pick;
}

describe('float16', () => {
  const samples: number[] = [
    0,
    -0,
    1,
    -1,
    65504,
    65519.99,
    65520,
    65536,
    1e9,
    -1e9,
    Infinity,
    -Infinity,
    2 ** -14,
    2 ** -24,
    2 ** -25,
    3 * 2 ** -26,
    1e-9,
    0.1,
    1 / 3,
    2047.5,
    2048.5,
    2049,
    4095.5,
  ];
  // Every float16 value, the midpoints between neighbours (ties) and points just off them.
  for (let h = 0; h < 0x7c00; h += 7) {
    const v = f16BitsToF32(h);
    const next = f16BitsToF32(h + 1);
    samples.push(v, -v, (v + next) / 2, Math.fround((v + next) / 2 + (next - v) / 64));
  }
  for (let i = 0; i < 2000; i++) samples.push((Math.sin(i * 12.9898) * 43758.5453) % 70000);

  it('encodeF16, f32ToF16Bits and roundToF16 agree with round-to-nearest-even', () => {
    const src = Float32Array.from(samples);
    const bits = encodeF16(src);
    const rounded = roundToF16(Float32Array.from(samples));
    src.forEach((x, i) => {
      const want = nearestF16Bits(x);
      expect(bits[i], `encode ${x}`).toBe(want);
      expect(f32ToF16Bits(x), `bits ${x}`).toBe(want);
      expect(Object.is(rounded[i], f16BitsToF32(want)) || rounded[i] === f16BitsToF32(want), `round ${x}`).toBe(true);
      expect(f16round(x)).toBe(f16BitsToF32(want));
    });
  });

  it('NaN stays NaN', () => {
    expect(Number.isNaN(f16BitsToF32(encodeF16(Float32Array.of(NaN))[0]!))).toBe(true);
    expect(Number.isNaN(roundToF16(Float32Array.of(NaN))[0])).toBe(true);
  });

  it('decodes float16 and bfloat16', () => {
    expect(Array.from(decodeF16(Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001)))).toEqual([1, -2, 65504, 2 ** -24]);
    expect(Array.from(decodeBF16(Uint16Array.of(0x3f80, 0xc040)))).toEqual([1, -3]);
  });
});
