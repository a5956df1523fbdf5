// NumPy's .npy format, version 1.0, for float32 matrices: the magic, a header dict padded with spaces to a
// multiple of 64 bytes and ended by a newline, then the little-endian data (numpy/lib/format.py).

import { endianness } from 'node:os';
import { ModernBertError } from '../errors.js';

/** A float32 C-order array as the bytes of a .npy file. */
export function npyBytes(data: Float32Array, shape: readonly number[]): Uint8Array {
  const header = npyHeader(shape);
  const out = new Uint8Array(header.length + data.byteLength);
  out.set(header);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), header.length);
  return out;
}

/** The bytes of a .npy file before its float32 data: the magic, the version and the padded header dict. */
export function npyHeader(shape: readonly number[]): Uint8Array {
  if (endianness() !== 'LE') throw new ModernBertError('UNSUPPORTED', 'writing .npy needs a little-endian host');
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const unpadded = 10 + dict.length + 1; // magic (6) + version (2) + header length (2), dict, newline
  const header = dict + ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length);
  out.set([0x93, ...Buffer.from('NUMPY', 'latin1'), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(Buffer.from(header, 'latin1'), 10);
  return out;
}
