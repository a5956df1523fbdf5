// Tensor data to and from the little-endian bytes that weight.bin blobs and `bytes` immediates hold.
// In memory (src/ir/graph.ts) floats are float32 (fp16 values already rounded), integers int32, bools 0/1 bytes.
// Sub-byte types (int4, uint1/2/3/4/6) are packed as MILBlob's SubByteTypes.cpp PackSubByteVecImpl does:
// element i occupies bits [i*n, i*n + n) of the byte string, least-significant bit first, an element that
// crosses a byte boundary continuing in the low bits of the next byte; int4 stores its two's complement nibble.
// The unused high bits of the last byte are zero, and their count goes into the blob's padding_size_in_bits.

import type { DType, TensorData } from '../ir/graph.js';
import { ModernBertError } from '../errors.js';
import { decodeF16, encodeF16 } from '../numeric/fp16.js';
import { firstNonFinite, nonFiniteError } from '../numeric/finite.js';

/** Bits of one stored element. */
const BITS_PER_ELEMENT: Record<DType, number> = {
  fp32: 32,
  fp16: 16,
  int32: 32,
  uint32: 32,
  int16: 16,
  int8: 8,
  uint8: 8,
  bool: 8,
  int4: 4,
  uint1: 1,
  uint2: 2,
  uint3: 3,
  uint4: 4,
  uint6: 6,
};

/** True for the sub-byte types, which are packed several to a byte (a blob's data type name too: false for others). */
export function isSubByte(dtype: string): boolean {
  return (BITS_PER_ELEMENT[dtype as DType] ?? 8) < 8;
}

/** Size in bytes of one element of `dtype` when stored (sub-byte types: use storedBytes). */
export function elementSize(dtype: DType): number {
  return BITS_PER_ELEMENT[dtype] / 8;
}

/** Bytes that `count` elements of `dtype` occupy (MILBlob SizeInBytes: ceil(count * bits / 8)). */
export function storedBytes(dtype: DType, count: number): number {
  return Math.ceil((count * BITS_PER_ELEMENT[dtype]) / 8);
}

/** Unused trailing bits in the last byte of `count` packed elements (the blob's padding_size_in_bits). */
export function paddingBits(dtype: DType, count: number): number {
  return storedBytes(dtype, count) * 8 - count * BITS_PER_ELEMENT[dtype];
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int32: [-2147483648, 2147483647],
  int16: [-32768, 32767],
  int8: [-128, 127],
  uint8: [0, 255],
  bool: [0, 1],
  // In memory an int32: shapes and sizes, far below 2^31.
  uint32: [0, 2147483647],
  int4: [-8, 7],
  uint1: [0, 1],
  uint2: [0, 3],
  uint3: [0, 7],
  uint4: [0, 15],
  uint6: [0, 63],
};

/** Checks that integer data fits its dtype, so that storing it cannot silently wrap. */
function checkIntegers(dtype: DType, data: TensorData, name: string): void {
  const range = INT_RANGE[dtype];
  if (!range) return;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `tensor "${name}" holds ${v} at index ${i}, not a valid ${dtype} value`,
        {
          tensor: name,
          dtype,
          index: i,
        },
      );
    }
  }
}

/** View of a typed array's bytes (no copy). */
function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Encodes tensor data as the little-endian bytes of `dtype` (fp16 is rounded to nearest even). A float that
 * is not finite, or becomes infinite in float16 (a finite 3e38 does), is an error: a package or ONNX file
 * holding one cannot give a finite result, so none is written.
 */
export function encodeTensorBytes(dtype: DType, data: TensorData, name: string): Uint8Array {
  if (dtype === 'fp16' || dtype === 'fp32') {
    const floats = data instanceof Float32Array ? data : Float32Array.from(data);
    const fail = (i: number, cause: string) =>
      nonFiniteError(`weight "${name}"`, floats[i]!, `at element ${i}`, `${cause}; nothing was written`);
    if (dtype === 'fp32') {
      const bad = firstNonFinite(floats);
      if (bad >= 0) throw fail(bad, 'the checkpoint holds a value that is not finite');
      return bytesOf(floats);
    }
    const halves = encodeF16(floats);
    for (let i = 0; i < halves.length; i++) {
      if ((halves[i]! & 0x7c00) === 0x7c00)
        throw fail(
          i,
          "float16 holds at most 65504, and the checkpoint's value (or what folding made of it) is larger or not finite",
        );
    }
    return bytesOf(halves);
  }
  checkIntegers(dtype, data, name);
  if (isSubByte(dtype)) return packSubByte(dtype, data);
  switch (dtype) {
    case 'int32':
    case 'uint32':
      return bytesOf(data instanceof Int32Array ? data : Int32Array.from(data));
    case 'int16':
      return bytesOf(Int16Array.from(data));
    case 'int8':
      return bytesOf(data instanceof Int8Array ? data : Int8Array.from(data));
    case 'uint8':
    case 'bool':
      return data instanceof Uint8Array ? data : Uint8Array.from(data);
  }
  throw new ModernBertError('INTERNAL', `no byte encoding for ${dtype}`);
}

/** Packs integers of a sub-byte dtype, least-significant bit first (values already range-checked). */
export function packSubByte(dtype: DType, data: ArrayLike<number>): Uint8Array {
  const bits = BITS_PER_ELEMENT[dtype];
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(storedBytes(dtype, data.length));
  for (let i = 0, bit = 0; i < data.length; i++, bit += bits) {
    const v = (data[i]! & mask) << (bit & 7); // at most 6 + 7 bits: spills into the next byte at most
    out[bit >> 3]! |= v & 0xff;
    if (v > 0xff) out[(bit >> 3) + 1]! |= v >> 8;
  }
  return out;
}

/** Unpacks `count` integers of a sub-byte dtype (int4 sign-extended). */
function unpackSubByte(dtype: DType, bytes: Uint8Array, count: number): Int32Array {
  const bits = BITS_PER_ELEMENT[dtype];
  const mask = (1 << bits) - 1;
  const out = new Int32Array(count);
  for (let i = 0, bit = 0; i < count; i++, bit += bits) {
    const at = bit >> 3;
    const word = bytes[at]! | ((at + 1 < bytes.length ? bytes[at + 1]! : 0) << 8);
    const v = (word >> (bit & 7)) & mask;
    out[i] = dtype === 'int4' && v > 7 ? v - 16 : v;
  }
  return out;
}

/** Decodes little-endian bytes of `dtype` into tensor data (copied, so the source may be reused). */
export function decodeTensorBytes(dtype: DType, bytes: Uint8Array, count?: number): TensorData {
  if (isSubByte(dtype))
    return unpackSubByte(dtype, bytes, count ?? Math.floor((bytes.length * 8) / BITS_PER_ELEMENT[dtype]));
  // Copy into a fresh buffer first: typed views need aligned offsets, and callers reuse read buffers.
  const own = new Uint8Array(bytes).buffer;
  switch (dtype) {
    case 'fp16':
      return decodeF16(new Uint16Array(own));
    case 'fp32':
      return new Float32Array(own);
    case 'int32':
    case 'uint32':
      return new Int32Array(own);
    case 'int16':
      return Int32Array.from(new Int16Array(own));
    case 'int8':
      return Int32Array.from(new Int8Array(own));
    case 'uint8':
      return Int32Array.from(new Uint8Array(own));
    case 'bool':
      return new Uint8Array(own);
  }
  throw new ModernBertError('INTERNAL', `no byte decoding for ${dtype}`);
}
