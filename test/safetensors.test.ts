import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import {
  cleanupTempDirs,
  copyFixture,
  fromF16Bits,
  rawSafetensors,
  tempDir,
  toBF16Bits,
  toF16Bits,
} from './helpers/fixtures.js';
import { expectError } from './helpers/run.js';

afterAll(cleanupTempDirs);
const dir = tempDir('mbane-st-');
let n = 0;

/** Writes bytes to a fresh file and returns its path. */
function file(bytes: Uint8Array | Buffer): string {
  const p = join(dir, `f${n++}.safetensors`);
  writeFileSync(p, bytes);
  return p;
}

/** Little-endian bytes of typed values. */
function bytesOf(...arrays: ArrayBufferView[]): Uint8Array {
  return Buffer.concat(arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
}

// Two float32 tensors a [2] and b [1, 2]: 16 bytes of data.
const GOOD_HEADER = {
  __metadata__: { format: 'pt' },
  a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
  b: { dtype: 'F32', shape: [1, 2], data_offsets: [8, 16] },
};
const GOOD_DATA = bytesOf(new Float32Array([1.5, -2, 3.25, 4]));

describe('a valid file', () => {
  it('reads tensors, shapes and metadata', () => {
    const f = SafetensorsFile.open(file(rawSafetensors(GOOD_HEADER, GOOD_DATA)));
    try {
      expect(f.metadata).toEqual({ format: 'pt' });
      expect([...f.tensors.keys()]).toEqual(['a', 'b']);
      expect(f.info('b')).toMatchObject({ dtype: 'F32', shape: [1, 2], begin: 8, end: 16 });
      expect(Array.from(f.readFloat32('a'))).toEqual([1.5, -2]);
      expect(Array.from(f.readFloat32('b'))).toEqual([3.25, 4]);
    } finally {
      f.close();
    }
  });

  it('accepts a header padded with spaces and empty tensors', () => {
    const header =
      JSON.stringify({
        e: { dtype: 'F32', shape: [0, 3], data_offsets: [0, 0] },
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      }) + '    ';
    const f = SafetensorsFile.open(file(rawSafetensors(header, bytesOf(new Float32Array([7, 8])))));
    expect(f.readFloat32('e').length).toBe(0);
    expect(Array.from(f.readFloat32('a'))).toEqual([7, 8]);
    f.close();
  });
});

describe('every kind of corruption is CORRUPT_FILE with its own message naming the file', () => {
  const cases: Array<[string, () => Buffer, RegExp]> = [
    [
      'shorter than the length prefix',
      () => Buffer.from([1, 2, 3]),
      /too short to be a safetensors file \(3 bytes\) \(HeaderTooSmall\)/,
    ],
    [
      'header length past the end of the file',
      () => rawSafetensors(GOOD_HEADER, GOOD_DATA, 100_000),
      /header length 100000 runs past the end of the file.*\(InvalidHeaderLength\)/,
    ],
    [
      'a huge header length',
      () => rawSafetensors(GOOD_HEADER, GOOD_DATA, 2 ** 52),
      /header length \d+ is above the 100000000-byte limit \(HeaderTooLarge\)/,
    ],
    [
      'a header one byte short',
      () => {
        const b = rawSafetensors(GOOD_HEADER, GOOD_DATA);
        b.writeBigUInt64LE(b.readBigUInt64LE(0) - 1n);
        return b;
      },
      /header is not valid JSON.*\(InvalidHeaderDeserialization\)/,
    ],
    [
      'a header that is not UTF-8',
      () => {
        const b = rawSafetensors('{"a":"x"}', GOOD_DATA);
        b[14] = 0xff;
        return b;
      },
      /header is not valid UTF-8 \(InvalidHeader\)/,
    ],
    [
      'a header that does not start with {',
      () => rawSafetensors(' ' + JSON.stringify(GOOD_HEADER), GOOD_DATA),
      /header does not start with '\{' \(InvalidHeaderStart\)/,
    ],
    [
      'a header that is not JSON',
      () => rawSafetensors('{"a": {"dtype": "F32"', GOOD_DATA),
      /header is not valid JSON: expected "," or "\}" at character 21 \(InvalidHeaderDeserialization\)/,
    ],
    [
      'a header with nothing after the brace',
      () => rawSafetensors('{', GOOD_DATA),
      /header is not valid JSON: expected a key at character 1/,
    ],
    [
      'duplicate keys',
      () =>
        rawSafetensors(
          '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}',
          GOOD_DATA,
        ),
      /duplicate key "a"/,
    ],
    [
      'a float dimension',
      () => rawSafetensors('{"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}}', GOOD_DATA),
      /tensor "a" has an invalid shape \[4\]/,
    ],
    [
      'metadata that is not a string map',
      () => rawSafetensors({ ...GOOD_HEADER, __metadata__: { format: 1 } }, GOOD_DATA),
      /__metadata__ "format" is not a string: 1/,
    ],
    [
      'an unknown dtype',
      () => rawSafetensors({ ...GOOD_HEADER, b: { ...GOOD_HEADER.b, dtype: 'F9' } }, GOOD_DATA),
      /tensor "b" has unknown dtype "F9"/,
    ],
    [
      'a missing dtype',
      () => rawSafetensors({ ...GOOD_HEADER, b: { shape: [1, 2], data_offsets: [8, 16] } }, GOOD_DATA),
      /tensor "b" has unknown dtype undefined/,
    ],
    [
      'a negative dimension',
      () => rawSafetensors({ ...GOOD_HEADER, b: { ...GOOD_HEADER.b, shape: [-1, 2] } }, GOOD_DATA),
      /tensor "b" has an invalid shape \[-1,2\]/,
    ],
    [
      'offsets that are not a pair',
      () => rawSafetensors({ ...GOOD_HEADER, b: { ...GOOD_HEADER.b, data_offsets: [8] } }, GOOD_DATA),
      /tensor "b" has invalid data_offsets \[8\]/,
    ],
    [
      'offsets that run backwards',
      () => rawSafetensors({ ...GOOD_HEADER, b: { ...GOOD_HEADER.b, data_offsets: [16, 8] } }, GOOD_DATA),
      /tensor "b" at data_offsets \[16, 8\] ends before it begins \(InvalidOffset\)/,
    ],
    [
      'a gap between tensors',
      () => rawSafetensors({ ...GOOD_HEADER, b: { dtype: 'F32', shape: [1], data_offsets: [12, 16] } }, GOOD_DATA),
      /tensor "b" at data_offsets \[12, 16\] leaves a gap \(bytes 8..12 belong to no tensor\) \(InvalidOffset\)/,
    ],
    [
      'trailing bytes after the last tensor',
      () => rawSafetensors(GOOD_HEADER, Buffer.concat([GOOD_DATA, Buffer.from([0])])),
      /the tensors cover 16 bytes of data but the file holds 17 after the header \(MetadataIncompleteBuffer\)/,
    ],
    [
      'a file truncated inside the data',
      () => rawSafetensors(GOOD_HEADER, GOOD_DATA.subarray(0, 12)),
      /the tensors cover 16 bytes of data but the file holds 12 after the header/,
    ],
    [
      'overlapping tensors',
      () =>
        rawSafetensors(
          {
            a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
            b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
          },
          GOOD_DATA,
        ),
      /tensor "b" at data_offsets \[8, 12\] overlaps the tensor before it \(which ends at byte 12\) \(InvalidOffset\)/,
    ],
    [
      'a tensor inside another',
      () =>
        rawSafetensors(
          {
            a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
            b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
          },
          GOOD_DATA,
        ),
      /overlaps the tensor before it/,
    ],
    [
      'too many elements',
      () => rawSafetensors({ a: { dtype: 'F32', shape: [2 ** 30, 2 ** 30], data_offsets: [0, 16] } }, GOOD_DATA),
      /too many elements \(ValidationOverflow\)/,
    ],
    [
      'a sub-byte tensor ending inside a byte',
      () => rawSafetensors({ a: { dtype: 'F4', shape: [3], data_offsets: [0, 16] } }, GOOD_DATA),
      /ends inside a byte \(MisalignedSlice\)/,
    ],
    [
      'a shape that does not match the byte size',
      () => rawSafetensors({ ...GOOD_HEADER, b: { dtype: 'F32', shape: [3], data_offsets: [8, 16] } }, GOOD_DATA),
      /tensor "b" has 8 bytes but its shape \[3\] x F32 needs 12 \(TensorInvalidInfo\)/,
    ],
    [
      'a dtype whose size does not match',
      () => rawSafetensors({ ...GOOD_HEADER, b: { dtype: 'F64', shape: [2], data_offsets: [8, 16] } }, GOOD_DATA),
      /tensor "b" has 8 bytes but its shape \[2\] x F64 needs 16/,
    ],
  ];
  const messages = new Map<string, string>(); // case -> message without the path
  for (const [what, bytes, pattern] of cases) {
    it(what, async () => {
      const path = file(bytes());
      const e = await expectError(() => SafetensorsFile.open(path), 'CORRUPT_FILE');
      expect(e.message).toMatch(pattern);
      expect(e.message.startsWith(`${path}: `)).toBe(true);
      expect(e.context.file).toBe(path);
      messages.set(what, e.message.replace(path, ''));
    });
  }
  it('no two kinds share a message (the two overlap cases are one kind)', () => {
    expect(messages.size).toBe(cases.length);
    const distinct = new Set(messages.values());
    expect(distinct.size).toBe(cases.length - 1);
    expect(messages.get('overlapping tensors')).toBe(messages.get('a tensor inside another'));
  });

  it('the rules are those of the Rust library: zero-size tensors anywhere in the order (with dims up to 2^64), a header padded with spaces, null metadata', () => {
    const header =
      '{"__metadata__":null,"z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[8,16],"extra":1},"h":{"dtype":"F32","shape":[0,4611686018427387904],"data_offsets":[16,16]}}   ';
    const f = SafetensorsFile.open(file(rawSafetensors(header, GOOD_DATA)));
    expect([...f.tensors.keys()]).toEqual(['z', 'a', 'b', 'h']);
    expect(f.readFloat32('z').length).toBe(0);
    f.close();
  });

  it('a missing file is FILE_NOT_FOUND, a folder BAD_INPUT', async () => {
    const missing = await expectError(() => SafetensorsFile.open(join(dir, 'nope.safetensors')), 'FILE_NOT_FOUND');
    expect(missing.message).toContain('nope.safetensors');
    const folder = join(dir, 'a-folder.safetensors');
    mkdirSync(folder);
    const e = await expectError(() => SafetensorsFile.open(folder), 'BAD_INPUT');
    expect(e.message).toContain('is a folder, not a regular safetensors file');
  });

  it('a corrupt model.safetensors in a checkpoint folder fails the load with the file named', async () => {
    const ckpt = copyFixture('tiny-mlm');
    writeFileSync(join(ckpt, 'model.safetensors'), rawSafetensors(GOOD_HEADER, GOOD_DATA, 1 << 20));
    const e = await expectError(() => loadCheckpoint(ckpt), 'CORRUPT_FILE');
    expect(e.message).toContain(join(ckpt, 'model.safetensors'));
    expect(e.message).toContain('runs past the end');
  });
});

describe('element types', () => {
  it('F16: normals, subnormals, signed zero, the largest value and infinities', () => {
    const bits = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x8000, 0x3555, 0x7c00, 0xfc00];
    const expected = [1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, -0, 0.333251953125, Infinity, -Infinity];
    expect(bits.map(fromF16Bits)).toEqual(expected); // the helper itself
    const f = SafetensorsFile.open(
      file(
        rawSafetensors({ h: { dtype: 'F16', shape: [2, 5], data_offsets: [0, 20] } }, bytesOf(Uint16Array.from(bits))),
      ),
    );
    expect(Array.from(f.readFloat32('h'))).toEqual(expected);
    f.close();
  });

  it('F16: every one of the 63,488 finite values decodes exactly', () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i).filter((h) => ((h >>> 10) & 0x1f) !== 31);
    const f = SafetensorsFile.open(
      file(
        rawSafetensors({ h: { dtype: 'F16', shape: [all.length], data_offsets: [0, 2 * all.length] } }, bytesOf(all)),
      ),
    );
    const got = f.readFloat32('h');
    f.close();
    expect(all.length).toBe(63488);
    for (let i = 0; i < all.length; i++)
      if (!Object.is(got[i], fromF16Bits(all[i]!)))
        expect(got[i], `0x${all[i]!.toString(16)}`).toBe(fromF16Bits(all[i]!));
    expect(toF16Bits(0.1)).toBe(0x2e66);
  });

  it('BF16: the top half of float32', () => {
    const values = [1, -2.5, 3.140625, 1e-40, -0, 65536, 2 ** 100];
    const bits = Uint16Array.from(values, toBF16Bits);
    const f = SafetensorsFile.open(
      file(rawSafetensors({ b: { dtype: 'BF16', shape: [7], data_offsets: [0, 14] } }, bytesOf(bits))),
    );
    const expected = Array.from(bits, (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]!);
    expect(Array.from(f.readFloat32('b'))).toEqual(expected);
    expect(expected.slice(0, 3)).toEqual([1, -2.5, 3.140625]);
    f.close();
  });

  it('F64: read and rounded to float32', () => {
    const values = new Float64Array([0.1, -1e300, 1 / 3, 2 ** -149]);
    const f = SafetensorsFile.open(
      file(
        rawSafetensors(
          {
            pad: { dtype: 'U8', shape: [8], data_offsets: [0, 8] },
            d: { dtype: 'F64', shape: [2, 2], data_offsets: [8, 40] },
          },
          bytesOf(new Uint8Array(8), values),
        ),
      ),
    );
    expect(Array.from(f.readFloat32('d'))).toEqual([Math.fround(0.1), -Infinity, Math.fround(1 / 3), 2 ** -149]);
    f.close();
  });

  it('I64 ids (as golden files store them), negative values included; beyond int32 is an error', async () => {
    const ids = new BigInt64Array([0n, 50281n, -100n, 2147483647n, -2147483648n]);
    const path = file(
      rawSafetensors(
        {
          ids: { dtype: 'I64', shape: [1, 5], data_offsets: [0, 40] },
          big: { dtype: 'I64', shape: [1], data_offsets: [40, 48] },
        },
        bytesOf(ids, new BigInt64Array([4294967296n])),
      ),
    );
    const f = SafetensorsFile.open(path);
    expect(Array.from(f.readInt32('ids'))).toEqual([0, 50281, -100, 2147483647, -2147483648]);
    const e = await expectError(() => f.readInt32('big'), 'CORRUPT_FILE');
    expect(e.message).toContain('4294967296');
    f.close();
  });

  it('I32, I16, I8, U8 and BOOL as integers', () => {
    const f = SafetensorsFile.open(
      file(
        rawSafetensors(
          {
            i32: { dtype: 'I32', shape: [2], data_offsets: [0, 8] },
            i16: { dtype: 'I16', shape: [2], data_offsets: [8, 12] },
            i8: { dtype: 'I8', shape: [2], data_offsets: [12, 14] },
            u8: { dtype: 'U8', shape: [1], data_offsets: [14, 15] },
            bool: { dtype: 'BOOL', shape: [1], data_offsets: [15, 16] },
          },
          bytesOf(
            new Int32Array([-7, 123456]),
            new Int16Array([-300, 300]),
            new Int8Array([-5, 5]),
            new Uint8Array([200, 1]),
          ),
        ),
      ),
    );
    expect(Array.from(f.readInt32('i32'))).toEqual([-7, 123456]);
    expect(Array.from(f.readInt32('i16'))).toEqual([-300, 300]);
    expect(Array.from(f.readInt32('i8'))).toEqual([-5, 5]);
    expect(Array.from(f.readInt32('u8'))).toEqual([200]);
    expect(Array.from(f.readInt32('bool'))).toEqual([1]);
    f.close();
  });

  it('asking for the wrong kind of tensor, or one that is absent, is an error naming it', async () => {
    const f = SafetensorsFile.open(
      file(
        rawSafetensors(
          {
            ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] },
            x: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
          },
          bytesOf(new BigInt64Array([1n]), new Float32Array([1, 2])),
        ),
      ),
    );
    expect((await expectError(() => f.readFloat32('ids'), 'CORRUPT_FILE')).message).toMatch(
      /"ids" has dtype I64, expected a float type/,
    );
    expect((await expectError(() => f.readInt32('x'), 'CORRUPT_FILE')).message).toMatch(
      /"x" has dtype F32, expected an integer type/,
    );
    expect((await expectError(() => f.readFloat32('nope'), 'BAD_INPUT')).message).toContain('"nope"');
    f.close();
  });
});
