import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModernBertError } from '../src/errors.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { writeSafetensors, type TensorToWrite } from '../src/io/safetensors-writer.js';

const dir = mkdtempSync(join(tmpdir(), 'mbane-st-'));

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Splits a file into its header length, header text and data section, straight from the bytes. */
function parse(path: string): { headerLen: number; headerText: string; header: Record<string, unknown>; data: Buffer } {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const headerText = buf.subarray(8, 8 + headerLen).toString('utf8');
  return {
    headerLen,
    headerText,
    header: JSON.parse(headerText) as Record<string, unknown>,
    data: buf.subarray(8 + headerLen),
  };
}

async function expectError(p: Promise<unknown>, code: string): Promise<ModernBertError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ModernBertError);
  expect((e as ModernBertError).code).toBe(code);
  return e as ModernBertError;
}

describe('writeSafetensors', () => {
  it('writes a padded header, contiguous offsets and little-endian data of every dtype', async () => {
    const path = join(dir, 'all.safetensors');
    const tensors: TensorToWrite[] = [
      { name: 'f32', dtype: 'F32', shape: [2, 3], data: () => Float32Array.from([1.5, -2, 3.25, 0, 1e-8, -65504]) },
      { name: 'f16', dtype: 'F16', shape: [3], data: () => Uint16Array.from([0x3c00, 0xc000, 0x7bff]) },
      { name: 'bf16', dtype: 'BF16', shape: [1, 1], data: () => Uint16Array.from([0x3f80]) },
      { name: 'i64', dtype: 'I64', shape: [2], data: () => BigInt64Array.from([-3n, 9007199254740993n]) },
      { name: 'i32', dtype: 'I32', shape: [], data: () => Int32Array.from([-123456]) },
      { name: 'empty', dtype: 'F32', shape: [0, 4], data: () => new Float32Array(0) },
    ];
    await writeSafetensors(path, tensors, { metadata: { format: 'pt', note: 'ünïcode' } });

    const { headerLen, headerText, header, data } = parse(path);
    expect(headerLen % 8).toBe(0);
    const json = headerText.trimEnd();
    expect(headerText.slice(json.length)).toMatch(/^ {0,7}$/);
    expect(json.endsWith('}')).toBe(true);
    expect(header.__metadata__).toEqual({ format: 'pt', note: 'ünïcode' });
    expect(Object.keys(header)).toEqual(['__metadata__', 'f32', 'f16', 'bf16', 'i64', 'i32', 'empty']);

    const e = header as Record<string, HeaderEntry>;
    expect(e.f32).toEqual({ dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    expect(e.f16).toEqual({ dtype: 'F16', shape: [3], data_offsets: [24, 30] });
    expect(e.bf16).toEqual({ dtype: 'BF16', shape: [1, 1], data_offsets: [30, 32] });
    expect(e.i64).toEqual({ dtype: 'I64', shape: [2], data_offsets: [32, 48] });
    expect(e.i32).toEqual({ dtype: 'I32', shape: [], data_offsets: [48, 52] });
    expect(e.empty).toEqual({ dtype: 'F32', shape: [0, 4], data_offsets: [52, 52] });
    expect(data.length).toBe(52);

    expect([0, 1, 2, 3, 4, 5].map((i) => data.readFloatLE(4 * i))).toEqual([
      1.5,
      -2,
      3.25,
      0,
      Math.fround(1e-8),
      -65504,
    ]);
    expect([24, 26, 28].map((o) => data.readUInt16LE(o))).toEqual([0x3c00, 0xc000, 0x7bff]);
    expect(data.readUInt16LE(30)).toBe(0x3f80);
    expect([data.readBigInt64LE(32), data.readBigInt64LE(40)]).toEqual([-3n, 9007199254740993n]);
    expect(data.readInt32LE(48)).toBe(-123456);
  });

  it('produces each tensor only when it is written, and reports progress in bytes', async () => {
    const events: string[] = [];
    const tensor = (name: string, n: number): TensorToWrite => ({
      name,
      dtype: 'F32',
      shape: [n],
      data: () => {
        events.push(`data ${name}`);
        return new Float32Array(n).fill(n);
      },
    });
    await writeSafetensors(join(dir, 'lazy.safetensors'), [tensor('a', 3), tensor('b', 5)], {
      onProgress: (done, total) => events.push(`progress ${done}/${total}`),
    });
    expect(events).toEqual(['data a', 'progress 12/32', 'data b', 'progress 32/32']);
  });

  it('writes only what the reader accepts, tensors named like prototype properties included', async () => {
    const path = join(dir, 'proto-names.safetensors');
    const names = ['__proto__', 'toString', 'constructor'];
    await writeSafetensors(
      path,
      names.map((name, i) => ({ name, dtype: 'I32' as const, shape: [1], data: () => Int32Array.from([i]) })),
      { metadata: { format: 'pt' } },
    );
    const f = SafetensorsFile.open(path);
    expect([...f.tensors.keys()]).toEqual(names);
    expect(names.map((n) => f.readInt32(n)[0])).toEqual([0, 1, 2]);
    f.close();
  });

  it('writes an empty header as {} padded to 8 bytes', async () => {
    const path = join(dir, 'none.safetensors');
    await writeSafetensors(path, []);
    const buf = readFileSync(path);
    expect(buf.length).toBe(16);
    expect(buf.readBigUInt64LE(0)).toBe(8n);
    expect(buf.subarray(8).toString('utf8')).toBe('{}      ');
  });

  it('replaces an existing file whole, only when told to', async () => {
    const path = join(dir, 'replace.safetensors');
    writeFileSync(path, 'old contents');
    const x: TensorToWrite = { name: 'x', dtype: 'I32', shape: [1], data: () => Int32Array.from([7]) };
    await expectError(writeSafetensors(path, [x]), 'OUTPUT_EXISTS');
    expect(readFileSync(path, 'utf8')).toBe('old contents');
    await writeSafetensors(path, [x], { overwrite: true });
    expect(parse(path).data.readInt32LE(0)).toBe(7);
  });

  describe('on failure leaves no file behind', () => {
    const failing = async (name: string, tensors: TensorToWrite[], code: string): Promise<ModernBertError> => {
      const sub = mkdtempSync(join(dir, `${name}-`));
      const err = await expectError(writeSafetensors(join(sub, 'out.safetensors'), tensors), code);
      expect(readdirSync(sub)).toEqual([]);
      return err;
    };
    const ok: TensorToWrite = { name: 'ok', dtype: 'F32', shape: [2], data: () => new Float32Array(2) };

    it('data of the wrong length', async () => {
      const e = await failing(
        'length',
        [ok, { name: 'w', dtype: 'F32', shape: [2, 2], data: () => new Float32Array(3) }],
        'SHAPE_MISMATCH',
      );
      expect(e.context).toMatchObject({ tensor: 'w', got: 3, expected: 4 });
    });

    it('data of the wrong type', async () => {
      await failing(
        'type',
        [ok, { name: 'w', dtype: 'F16', shape: [2], data: () => new Float32Array(2) as unknown as Uint16Array }],
        'BAD_ARGUMENT',
      );
    });

    it('a repeated or reserved name, or a bad shape', async () => {
      await failing('repeat', [ok, ok], 'BAD_ARGUMENT');
      await failing('reserved', [{ ...ok, name: '__metadata__' }], 'BAD_ARGUMENT');
      await failing('shape', [{ ...ok, shape: [2.5] }], 'BAD_ARGUMENT');
    });

    it('a data producer that throws', async () => {
      const sub = mkdtempSync(join(dir, 'throws-'));
      const boom = new Error('boom');
      const e = await writeSafetensors(join(sub, 'out.safetensors'), [
        ok,
        {
          ...ok,
          name: 'b',
          data: () => {
            throw boom;
          },
        },
      ]).catch((x: unknown) => x);
      expect(e).toBe(boom);
      expect(readdirSync(sub)).toEqual([]);
    });
  });

  it('reports a missing folder as FILE_NOT_FOUND', async () => {
    await expectError(writeSafetensors(join(dir, 'no', 'such', 'x.safetensors'), []), 'FILE_NOT_FOUND');
    expect(existsSync(join(dir, 'no'))).toBe(false);
  });
});
