// Tensor data to and from the little-endian bytes that weight.bin blobs and `bytes` immediates hold.
// In memory (src/graph/ir.ts) floats are float32 (fp16 values already rounded), integers int32, bools 0/1 bytes.

import type { DType, TensorData } from '../graph/ir.js';
import { ModernBertError } from '../errors.js';
import { decodeF16, encodeF16 } from '../numeric/fp16.js';

const BYTES_PER_ELEMENT: Record<DType, number> = {
  fp32: 4,
  fp16: 2,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** Size in bytes of one element of `dtype` when stored. */
export function elementSize(dtype: DType): number {
  return BYTES_PER_ELEMENT[dtype];
}

const INT_RANGE: Partial<Record<DType, [number, number]>> = {
  int32: [-2147483648, 2147483647],
  int16: [-32768, 32767],
  int8: [-128, 127],
  uint8: [0, 255],
  bool: [0, 1],
};

/** Checks that integer data fits its dtype, so that storing it cannot silently wrap. */
function checkIntegers(dtype: DType, data: TensorData, name: string): void {
  const range = INT_RANGE[dtype];
  if (!range) return;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
      throw new ModernBertError('BAD_ARGUMENT', `tensor "${name}" holds ${v} at index ${i}, not a valid ${dtype} value`, {
        tensor: name,
        dtype,
        index: i,
      });
    }
  }
}

/** View of a typed array's bytes (no copy). */
function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Encodes tensor data as the little-endian bytes of `dtype` (fp16 is rounded to nearest even). */
export function encodeTensorBytes(dtype: DType, data: TensorData, name: string): Uint8Array {
  if (dtype === 'fp16' || dtype === 'fp32') {
    const floats = data instanceof Float32Array ? data : Float32Array.from(data);
    return dtype === 'fp16' ? bytesOf(encodeF16(floats)) : bytesOf(floats);
  }
  checkIntegers(dtype, data, name);
  switch (dtype) {
    case 'int32':
      return bytesOf(data instanceof Int32Array ? data : Int32Array.from(data));
    case 'int16':
      return bytesOf(Int16Array.from(data));
    case 'int8':
      return bytesOf(Int8Array.from(data));
    case 'uint8':
    case 'bool':
      return data instanceof Uint8Array ? data : Uint8Array.from(data);
  }
}

/** Decodes little-endian bytes of `dtype` into tensor data (copied, so the source may be reused). */
export function decodeTensorBytes(dtype: DType, bytes: Uint8Array): TensorData {
  // Copy into a fresh buffer first: typed views need aligned offsets, and callers reuse read buffers.
  const own = new Uint8Array(bytes).buffer;
  switch (dtype) {
    case 'fp16':
      return decodeF16(new Uint16Array(own));
    case 'fp32':
      return new Float32Array(own);
    case 'int32':
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
}
