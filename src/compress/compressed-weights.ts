// The compressed form of each weight, computed once per stored tensor (so a tied embedding/decoder table
// is compressed once), and a WeightSource that serves the weights as the package will decompress them: the
// fidelity report and rotation learning then measure what ships. Dequantization is the constexpr ops' own
// decompress (ops/defs/compression.ts), rounded to float16 as the ops' float16 outputs are.

import { ModernBertError } from '../errors.js';
import { numel } from '../ir/graph.js';
import { roundToF16 } from '../numeric/fp16.js';
import { blockwiseShiftScale, lutToDenseIOS18 } from '../ops/defs/compression.js';
import { WrappedWeights, type Tensor, type WeightSource } from '../io/weights.js';
import { palettize } from './palettize.js';
import { quantizeInt4Blocks, quantizeInt8PerRow } from './quantize.js';
import { isCompressed, paletteBits, type CompressSpec } from './spec.js';

/** One weight, compressed. `rows` are output channels (axis 0); `cols` everything else. */
export type Compressed =
  | {
      kind: 'palette';
      rows: number;
      cols: number;
      bits: number;
      /** Rows per table. */ groupRows: number;
      /** tables x 2^bits. */ luts: Float32Array;
      indices: Uint8Array;
    }
  | { kind: 'int8'; rows: number; cols: number; q: Int8Array; scale: Float32Array; zeroPoint: Int32Array }
  | { kind: 'int4'; rows: number; cols: number; block: number; q: Int8Array; scale: Float32Array };

/** Compresses one tensor as `spec` says. */
export function compressTensor(spec: CompressSpec, data: Float32Array, shape: readonly number[]): Compressed {
  const rows = shape[0]!;
  const cols = numel(shape) / rows;
  const bits = paletteBits(spec.mode);
  if (bits !== undefined) {
    const groupRows = spec.groupSize ?? rows;
    const k = 2 ** bits;
    const tables = rows / groupRows;
    const luts = new Float32Array(tables * k);
    const indices = new Uint8Array(data.length);
    for (let t = 0; t < tables; t++) {
      const span = groupRows * cols;
      const p = palettize(data.subarray(t * span, (t + 1) * span), bits);
      luts.set(p.lut, t * k);
      indices.set(p.indices, t * span);
    }
    return { kind: 'palette', rows, cols, bits, groupRows, luts, indices };
  }
  if (spec.mode === 'int8')
    return {
      kind: 'int8',
      rows,
      cols,
      ...(quantizeInt8PerRow(data, rows) as { q: Int8Array; scale: Float32Array; zeroPoint: Int32Array }),
    };
  const { q, scale } = quantizeInt4Blocks(data, rows, spec.blockSize);
  return { kind: 'int4', rows, cols, block: spec.blockSize, q, scale };
}

/** The dense float16 values that the package's constexpr op computes from `c`. */
export function decompress(c: Compressed): Float32Array {
  switch (c.kind) {
    case 'palette': {
      const k = 2 ** c.bits;
      return roundToF16(lutToDenseIOS18(c.indices, [c.rows, c.cols], c.luts, [c.rows / c.groupRows, 1, k, 1]));
    }
    case 'int8': // iOS 16's affine_dequantize and iOS 18's shift_scale compute the same scale * (q - zp)
      return roundToF16(blockwiseShiftScale(c.q, [c.rows, c.cols], c.scale, [c.rows, 1], c.zeroPoint));
    case 'int4':
      return roundToF16(blockwiseShiftScale(c.q, [c.rows, c.cols], c.scale, [c.rows, c.cols / c.block]));
  }
}

/**
 * Rows [lo, hi) of a compressed tensor, then zero rows up to `rows` (a chunk of the split decoder), in the
 * tensor's own compression: the chunk decompresses to exactly the table's rows, as the fidelity report ran
 * them. Padding is exact zero for the linear modes (integer 0) and for grouped tables (whole groups with a
 * table of zeros); one table for the whole tensor pads with its entry nearest zero (those rows' logits carry
 * the MASKED bias and are dropped when the logits are unfolded).
 */
export function sliceRows(c: Compressed, lo: number, hi: number, rows: number): Compressed {
  const { cols } = c;
  const take = <T extends Int8Array | Uint8Array | Float32Array | Int32Array>(a: T, width: number, fill: number): T => {
    const out = new (a.constructor as new (n: number) => T)(rows * width);
    out.fill(fill);
    (out as Float32Array).set(a.subarray(lo * width, hi * width));
    return out;
  };
  switch (c.kind) {
    case 'palette': {
      const k = 2 ** c.bits;
      if (c.groupRows === c.rows) {
        let zero = 0;
        c.luts.forEach((v, j) => Math.abs(v) < Math.abs(c.luts[zero]!) && (zero = j));
        return { ...c, rows, groupRows: rows, indices: take(c.indices, cols, zero) };
      }
      const g = c.groupRows;
      if (lo % g !== 0 || (hi - lo) % g !== 0 || rows % g !== 0)
        throw new ModernBertError('INTERNAL', `rows ${lo}..${hi} of ${rows} do not fall on groups of ${g}`);
      const luts = new Float32Array((rows / g) * k);
      luts.set(c.luts.subarray((lo / g) * k, (hi / g) * k));
      return { ...c, rows, luts, indices: take(c.indices, cols, 0) };
    }
    case 'int8':
      return { ...c, rows, q: take(c.q, cols, 0), scale: take(c.scale, 1, 1), zeroPoint: take(c.zeroPoint, 1, 0) };
    case 'int4': {
      const blocks = cols / c.block;
      return { ...c, rows, q: take(c.q, cols, 0), scale: take(c.scale, blocks, 1) };
    }
  }
}

/** Stored bytes of the compressed form (indices or integers packed, tables and scales float16). */
export function compressedBytes(c: Compressed): number {
  const n = c.rows * c.cols;
  switch (c.kind) {
    case 'palette':
      return Math.ceil((n * c.bits) / 8) + 2 * c.luts.length;
    case 'int8':
      return n + 3 * c.rows;
    case 'int4':
      return Math.ceil(n / 2) + 2 * c.scale.length;
  }
}

/** Weights as the compressed package holds them; `compressed(name)` gives the stored form. */
export class CompressedWeights extends WrappedWeights {
  private readonly cache = new Map<string, Compressed>();

  constructor(
    inner: WeightSource,
    readonly spec: CompressSpec,
  ) {
    super(inner);
  }

  /** Whether `name` is stored compressed (decided by name and shape, without loading it). */
  isCompressed(name: string): boolean {
    return this.inner.has(name) && isCompressed(this.spec, this.storedName(name), this.inner.shape(name));
  }

  /** The compressed form of `name` (computed once per stored tensor), or undefined when it stays float16. */
  compressed(name: string): Compressed | undefined {
    if (!this.isCompressed(name)) return undefined;
    const key = this.storedName(name);
    let c = this.cache.get(key);
    if (!c) {
      const t = this.inner.get(name);
      c = compressTensor(this.spec, t.data, t.shape);
      this.cache.set(key, c);
    }
    return c;
  }

  get(name: string): Tensor {
    const c = this.compressed(name);
    if (!c) return this.inner.get(name);
    return { shape: this.inner.shape(name), data: decompress(c) };
  }
}
