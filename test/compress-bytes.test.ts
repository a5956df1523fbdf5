// Compressed weights at the byte level: sub-byte packing as MILBlob's SubByteTypes.cpp packs (least-significant
// bit first, spilling into the next byte), worked out by hand for every width; the blob header's type code
// and padding bits (BlobDataType.hpp, StorageFormat.hpp); and the iOS 16 uint8 index form.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BLOB_DATA_TYPES, BlobReader, BlobWriter } from '../src/coreml/milblob.js';
import {
  decodeTensorBytes,
  encodeTensorBytes,
  packSubByte,
  paddingBits,
  storedBytes,
} from '../src/coreml/tensor-bytes.js';
import { lutToDenseIOS16 } from '../src/ops/defs/compression.js';
import type { DType } from '../src/ir/graph.js';
import { cleanupTempDirs, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

// Each case: values, the packed bytes worked out by hand, the unused bits of the last byte.
const HAND: [DType, number[], number[], number][] = [
  // 1,0,1,1,0,0,0,0 | 1: bits 0, 2, 3 of byte 0 (0x0d), bit 0 of byte 1; 7 bits unused.
  ['uint1', [1, 0, 1, 1, 0, 0, 0, 0, 1], [0x0d, 0x01], 7],
  // constexpr_ops.py's own example: i0=00 i1=11 i2=10 i3=01 -> 01|10|11|00 = 0x6c; i4=11 -> 0x03.
  ['uint2', [0, 3, 2, 1, 3], [0x6c, 0x03], 6],
  // 5 (101) at bits 0-2, 3 (011) at 3-5, 7 (111) at 6-8 crosses into byte 1, 1 at 9-11:
  // byte 0 = 1,0,1,1,1,0,1,1 (bit 0 first) = 0xdd; byte 1 = bit 8 (last bit of 7) + bit 9 (the 1) = 0x03.
  ['uint3', [5, 3, 7, 1], [0xdd, 0x03], 4],
  ['uint4', [1, 15, 2], [0xf1, 0x02], 4],
  // Two's complement nibbles: -1 = f, 7 = 7, -8 = 8.
  ['int4', [-1, 7, -8], [0x7f, 0x08], 4],
  // 63 at bits 0-5, 1 at 6-11 (bit 6), 32 at 12-17 (bit 17), 5 at 18-23 (bits 18 and 20): 0x7f 0x00 0x16.
  ['uint6', [63, 1, 32, 5], [0x7f, 0x00, 0x16], 0],
];

describe('sub-byte packing (SubByteTypes.cpp PackSubByteVecImpl)', () => {
  it.each(HAND)('%s packs least-significant bit first', (dtype, values, bytes, pad) => {
    expect([...encodeTensorBytes(dtype, Int32Array.from(values), 't')]).toEqual(bytes);
    expect(storedBytes(dtype, values.length)).toBe(bytes.length);
    expect(paddingBits(dtype, values.length)).toBe(pad);
    expect([...decodeTensorBytes(dtype, Uint8Array.from(bytes), values.length)]).toEqual(values);
  });

  it('round-trips random values of every width, and refuses values out of range', () => {
    const ranges: [DType, number, number][] = [
      ['uint1', 0, 1],
      ['uint2', 0, 3],
      ['uint3', 0, 7],
      ['uint4', 0, 15],
      ['uint6', 0, 63],
      ['int4', -8, 7],
    ];
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
    for (const [dtype, lo, hi] of ranges) {
      for (const n of [1, 7, 8, 9, 61]) {
        const values = Int32Array.from({ length: n }, () => lo + Math.floor(rand() * (hi - lo + 1)));
        expect([...decodeTensorBytes(dtype, encodeTensorBytes(dtype, values, 't'), n)], `${dtype} x ${n}`).toEqual([
          ...values,
        ]);
      }
      expect(() => encodeTensorBytes(dtype, Int32Array.from([hi + 1]), 't')).toThrow(/not a valid/);
    }
  });

  it('the iOS 16 table unpacks its uint8 index bytes the same way (restore_elements_from_packed_bits)', () => {
    // The uint2 example above, as constexpr_lut_to_dense (iOS 16) indices into a 4-entry table.
    expect([...lutToDenseIOS16([10, 20, 30, 40], [0x6c, 0x03], 5)]).toEqual([10, 40, 30, 20, 40]);
    // 6 bits: the uint6 example above, indices into a 64-entry table of i * 2.
    const lut = Array.from({ length: 64 }, (_, i) => i * 2);
    expect([...lutToDenseIOS16(lut, packSubByte('uint6', [63, 1, 32, 5]), 4)]).toEqual([126, 2, 64, 10]);
    // 8 bits: the bytes are the indices.
    expect([
      ...lutToDenseIOS16(
        Array.from({ length: 256 }, (_, i) => -i),
        [0, 255, 7],
        3,
      ),
    ]).toEqual([-0, -255, -7]);
  });
});

describe('sub-byte blobs (StorageFormat.hpp blob_metadata)', () => {
  it('records the type code and the unused trailing bits in the header', () => {
    const path = join(tempDir(), 'weight.bin');
    const w = BlobWriter.create(path);
    const offsets = HAND.map(([dtype, values]) =>
      w.append(
        dtype as keyof typeof BLOB_DATA_TYPES,
        encodeTensorBytes(dtype, Int32Array.from(values), 't'),
        paddingBits(dtype, values.length),
      ),
    );
    w.close();
    const file = readFileSync(path);
    HAND.forEach(([dtype, , bytes, pad], k) => {
      const at = offsets[k]!;
      expect(file.readUInt32LE(at + 4), dtype).toBe(BLOB_DATA_TYPES[dtype as keyof typeof BLOB_DATA_TYPES]);
      expect(Number(file.readBigUInt64LE(at + 8)), dtype).toBe(bytes.length);
      expect(Number(file.readBigUInt64LE(at + 24)), dtype).toBe(pad);
    });
    // BlobDataType.hpp: Int4 8, UInt1 9, UInt2 10, UInt4 11, UInt3 12, UInt6 13.
    expect([
      BLOB_DATA_TYPES.int4,
      BLOB_DATA_TYPES.uint1,
      BLOB_DATA_TYPES.uint2,
      BLOB_DATA_TYPES.uint4,
      BLOB_DATA_TYPES.uint3,
      BLOB_DATA_TYPES.uint6,
    ]).toEqual([8, 9, 10, 11, 12, 13]);
    const r = BlobReader.open(path);
    try {
      expect(r.list().map((b) => b.paddingBits)).toEqual(HAND.map((h) => h[3]));
    } finally {
      r.close();
    }
  });
});
