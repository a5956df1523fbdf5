// Linear quantization of a weight matrix (rows = output channels, as conv weights (out, in, 1, 1) and the
// embedding table (vocab, hidden) lie): int8 affine per output channel, int4 symmetric per block of inputs.
// Scales are float16 (the program's float type), chosen before the integers so that the integers are
// rounded against the scale that ships. Each row is rounded to float16 in a row-sized scratch, never as a
// whole float32 copy of the tensor (the embedding table alone is 155 MB in ModernBERT-base).

import { f16round, roundToF16 } from '../numeric/fp16.js';

/** Integers, their scales and (int8) zero points. */
export interface Quantized {
  /** int8 storage for both widths: a quarter of an Int32Array, for ModernBERT-base's 150M weights. */
  q: Int8Array;
  /** One per row (int8) or per (row, block) (int4), float16 values. */
  scale: Float32Array;
  /** int8: one per row; int4: none (symmetric). */
  zeroPoint?: Int32Array;
}

const clamp = (v: number, lo: number, hi: number): number => (v < lo ? lo : v > hi ? hi : v);

/** A usable float16 scale: `s` rounded, never 0 (an all-zero row keeps scale 1 and integers 0). */
const scaleOf = (s: number): number => {
  const r = f16round(s);
  return r > 0 && Number.isFinite(r) ? r : 1;
};

/** int8 affine per row: the row's [min, max] onto [-128, 127]; dequantized as scale * (q - zeroPoint). */
export function quantizeInt8PerRow(raw: Float32Array, rows: number): Quantized {
  const cols = raw.length / rows;
  const q = new Int8Array(raw.length);
  const scale = new Float32Array(rows);
  const zeroPoint = new Int32Array(rows);
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    row.set(raw.subarray(r * cols, (r + 1) * cols));
    roundToF16(row);
    let lo = 0;
    let hi = 0; // the range includes 0, so that 0 is exact
    for (let c = 0; c < cols; c++) {
      const v = row[c]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const s = scaleOf((hi - lo) / 255);
    const zp = clamp(Math.round(-128 - lo / s), -128, 127);
    scale[r] = s;
    zeroPoint[r] = zp;
    for (let c = 0; c < cols; c++) q[r * cols + c] = clamp(Math.round(row[c]! / s) + zp, -128, 127);
  }
  return { q, scale, zeroPoint };
}

/** int4 symmetric per block of `block` consecutive inputs of a row: max |w| onto 7, integers in [-8, 7]. */
export function quantizeInt4Blocks(raw: Float32Array, rows: number, block: number): Quantized {
  const cols = raw.length / rows;
  const blocks = cols / block;
  const q = new Int8Array(raw.length);
  const scale = new Float32Array(rows * blocks);
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    row.set(raw.subarray(r * cols, (r + 1) * cols));
    roundToF16(row);
    for (let b = 0; b < blocks; b++) {
      const at = b * block;
      let max = 0;
      for (let c = 0; c < block; c++) max = Math.max(max, Math.abs(row[at + c]!));
      const s = scaleOf(max / 7);
      scale[r * blocks + b] = s;
      for (let c = 0; c < block; c++) q[r * cols + at + c] = clamp(Math.round(row[at + c]! / s), -8, 7);
    }
  }
  return { q, scale };
}
