// Byte-level checks that do not go through our reader: weight.bin read with DataView, model.mlmodel walked
// with a small protobuf wire-format walker written here, Manifest.json compared as text. Run on the
// coremltools-written reference packages and on packages we write, so both sides meet the same facts.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { writeMLPackage } from '../src/coreml/mil-write.js';
import { BlobReader, BlobWriter } from '../src/coreml/milblob.js';
import { decodeModel, encodeModel, encodeOperation, type BlockProto } from '../src/coreml/schema.js';

const REF = 'test/fixtures/coreml-reference';
const REFERENCES = ['tiny-mlm-S32-norot', 'tiny-mlm-S32-rot', 'mini-trained-S64-rot'].map((n) =>
  join(REF, n, 'model.mlpackage'),
);

// ---- a minimal protobuf wire-format walker ----

interface Field {
  field: number;
  wire: number;
  /** varint value (wire 0) */
  int?: number;
  /** payload (wire 2) */
  bytes?: Uint8Array;
}

function varint(buf: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (;;) {
    const b = buf[pos++]!;
    value += (b & 0x7f) * scale;
    scale *= 128;
    if ((b & 0x80) === 0) return [value, pos];
  }
}

function fields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const [key, p] = varint(buf, pos);
    pos = p;
    const field = Math.floor(key / 8);
    const wire = key % 8;
    if (wire === 0) {
      const [v, q] = varint(buf, pos);
      out.push({ field, wire, int: v });
      pos = q;
    } else if (wire === 2) {
      const [len, q] = varint(buf, pos);
      out.push({ field, wire, bytes: buf.subarray(q, q + len) });
      pos = q + len;
    } else if (wire === 5) {
      pos += 4;
      out.push({ field, wire });
    } else if (wire === 1) {
      pos += 8;
      out.push({ field, wire });
    } else {
      throw new Error(`wire type ${wire} at ${pos}`);
    }
  }
  return out;
}

const text = (b: Uint8Array | undefined): string => Buffer.from(b ?? []).toString('utf8');
const only = (fs: Field[], n: number): Field => {
  const f = fs.filter((x) => x.field === n);
  expect(f.length).toBe(1);
  return f[0]!;
};
/** A protobuf map<string, V> is a repeated entry message {1: key, 2: value}. */
function mapEntries(fs: Field[], n: number): Map<string, Uint8Array> {
  return new Map(
    fs
      .filter((f) => f.field === n)
      .map((f) => {
        const e = fields(f.bytes!);
        return [text(only(e, 1).bytes), only(e, 2).bytes!];
      }),
  );
}

/** The BlobFileValue offsets of the const ops, in program order, with their file names (walked by hand). */
function blobRefs(model: Uint8Array): { fileName: string; offset: number }[] {
  const program = only(fields(model), 502).bytes!;
  const fn = mapEntries(fields(program), 2).get('main')!;
  const fnFields = fields(fn);
  const opset = text(only(fnFields, 2).bytes);
  const block = mapEntries(fnFields, 3).get(opset)!;
  const refs: { fileName: string; offset: number }[] = [];
  for (const opField of fields(block).filter((f) => f.field === 3)) {
    const op = fields(opField.bytes!);
    if (text(only(op, 1).bytes) !== 'const') continue;
    const val = mapEntries(op, 5).get('val')!;
    const blob = fields(val).find((f) => f.field === 5); // Value.blobFileValue
    if (!blob) continue;
    const bf = fields(blob.bytes!);
    refs.push({ fileName: text(only(bf, 1).bytes), offset: only(bf, 2).int! });
  }
  return refs;
}

// ---- weight.bin read with DataView ----

interface RawBlob {
  metadataOffset: number;
  sentinel: number;
  dtype: number;
  size: number;
  dataOffset: number;
  padding: number;
  reservedZero: boolean;
}

function rawBlobs(file: Uint8Array): { count: number; version: number; headerReservedZero: boolean; blobs: RawBlob[] } {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const count = dv.getUint32(0, true);
  const version = dv.getUint32(4, true);
  const headerReservedZero = file.subarray(8, 64).every((b) => b === 0);
  const blobs: RawBlob[] = [];
  let at = 64;
  for (let i = 0; i < count; i++) {
    blobs.push({
      metadataOffset: at,
      sentinel: dv.getUint32(at, true),
      dtype: dv.getUint32(at + 4, true),
      size: Number(dv.getBigUint64(at + 8, true)),
      dataOffset: Number(dv.getBigUint64(at + 16, true)),
      padding: Number(dv.getBigUint64(at + 24, true)),
      reservedZero: file.subarray(at + 32, at + 64).every((b) => b === 0),
    });
    const end = blobs[i]!.dataOffset + blobs[i]!.size;
    at = Math.ceil(end / 64) * 64;
  }
  return { count, version, headerReservedZero, blobs };
}

const modelFile = (pkg: string): Uint8Array => readFileSync(join(pkg, 'Data/com.apple.CoreML/model.mlmodel'));
const weightFile = (pkg: string): Uint8Array => readFileSync(join(pkg, 'Data/com.apple.CoreML/weights/weight.bin'));

/** Facts that hold for every package, coremltools' or ours; `fp16Code` is the blob data type of the fp16 weights. */
function checkPackageBytes(pkg: string, fp16Code: number, specVersion = 8, opset = 'CoreML7'): void {
  // weight.bin: storage header v2, per-blob metadata with sentinel, 64-byte aligned, contiguous, file ends at the last blob.
  const wb = weightFile(pkg);
  const { count, version, headerReservedZero, blobs } = rawBlobs(wb);
  expect(version).toBe(2);
  expect(headerReservedZero).toBe(true);
  expect(count).toBeGreaterThan(0);
  for (const b of blobs) {
    expect(b.sentinel).toBe(0xdeadbeef);
    expect(b.dtype).toBe(fp16Code);
    expect(b.metadataOffset % 64).toBe(0);
    expect(b.dataOffset).toBe(b.metadataOffset + 64);
    expect(b.dataOffset % 64).toBe(0);
    expect(b.padding).toBe(0);
    expect(b.reservedZero).toBe(true);
  }
  const last = blobs[blobs.length - 1]!;
  expect(wb.length).toBe(last.dataOffset + last.size);

  // model.mlmodel: Model {1: specificationVersion varint, 2: description, 502: mlProgram}.
  const model = modelFile(pkg);
  const top = fields(model);
  expect(top.map((f) => [f.field, f.wire])).toEqual([
    [1, 0],
    [2, 2],
    [502, 2],
  ]);
  expect(only(top, 1).int).toBe(specVersion);
  // ModelDescription {1: input, 10: output}; FeatureDescription {1: name, 3: type}; FeatureType {5: multiArrayType};
  // ArrayFeatureType {1: shape (packed int64), 2: dataType}.
  const desc = fields(only(top, 2).bytes!);
  const inputs = desc.filter((f) => f.field === 1).map((f) => fields(f.bytes!));
  expect(inputs.map((f) => text(only(f, 1).bytes))).toEqual(['input_ids', 'mask']);
  const idsArray = fields(only(fields(only(inputs[0]!, 3).bytes!), 5).bytes!);
  expect(only(idsArray, 1).wire).toBe(2); // packed
  expect(only(idsArray, 2).int).toBe(131104); // INT32 = 0x20000 | 32
  const maskArray = fields(only(fields(only(inputs[1]!, 3).bytes!), 5).bytes!);
  expect(only(maskArray, 2).int).toBe(65552); // FLOAT16 = 0x10000 | 16
  expect(desc.filter((f) => f.field === 10).map((f) => text(only(fields(f.bytes!), 1).bytes))).toEqual(['logits']);
  // Program {1: version = 1, 2: functions map}; Function {1: inputs, 2: opset, 3: block_specializations map}.
  const program = fields(only(top, 502).bytes!);
  expect(only(program, 1).int).toBe(1);
  const functions = mapEntries(program, 2);
  expect([...functions.keys()]).toEqual(['main']);
  const fn = fields(functions.get('main')!);
  expect(text(only(fn, 2).bytes)).toBe(opset);
  expect([...mapEntries(fn, 3).keys()]).toEqual([opset]);
  const block = fields(mapEntries(fn, 3).get(opset)!);
  expect(block.filter((f) => f.field === 2).map((f) => text(f.bytes))).toEqual(['logits']);

  // Every BlobFileValue points at a blob's metadata, in file order, and every blob is used.
  const refs = blobRefs(model);
  expect(refs.every((r) => r.fileName === '@model_path/weights/weight.bin')).toBe(true);
  expect(refs.map((r) => r.offset)).toEqual(blobs.map((b) => b.metadataOffset));
}

describe('reference packages (written by coremltools)', () => {
  it.each(REFERENCES)('%s: weight.bin and model.mlmodel have the documented layout', (pkg) => {
    // The reference marks its float16 blobs UInt16 (7); MILBlob's writer uses Float16 (1) for fp16 data.
    checkPackageBytes(pkg, 7);
  });

  it.each(REFERENCES)(
    '%s: Manifest.json is two-space JSON without a trailing newline, with upper-case UUID keys',
    (pkg) => {
      const raw = readFileSync(join(pkg, 'Manifest.json'), 'utf8');
      const m = JSON.parse(raw) as { itemInfoEntries: Record<string, { path: string }>; rootModelIdentifier: string };
      expect(JSON.stringify(m, null, 2)).toBe(raw);
      expect(Object.keys(m)).toEqual(['fileFormatVersion', 'itemInfoEntries', 'rootModelIdentifier']);
      for (const id of Object.keys(m.itemInfoEntries))
        expect(id).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/);
      expect(m.itemInfoEntries[m.rootModelIdentifier]!.path).toBe('com.apple.CoreML/model.mlmodel');
    },
  );

  it.each(REFERENCES)('%s: our schema decodes and re-encodes model.mlmodel byte for byte', (pkg) => {
    const bytes = modelFile(pkg);
    expect(Buffer.from(encodeModel(decodeModel(bytes, pkg))).equals(Buffer.from(bytes))).toBe(true);
  });

  it.each(REFERENCES)(
    '%s: with its operations encoded one by one (as the writer does), model.mlmodel is the same bytes',
    (pkg) => {
      const bytes = modelFile(pkg);
      const model = decodeModel(bytes, pkg);
      const encoded = new Map<BlockProto, Uint8Array[]>();
      for (const f of Object.values(model.mlProgram!.functions!)) {
        for (const b of Object.values(f.block_specializations!)) {
          encoded.set(b, b.operations!.map(encodeOperation));
          delete b.operations;
        }
      }
      expect(encoded.size).toBeGreaterThan(0);
      expect(Buffer.from(encodeModel(model, encoded)).equals(Buffer.from(bytes))).toBe(true);
    },
  );
});

describe('packages we write', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'coreml-bytes-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(REFERENCES)('rewriting %s gives the same layout, blob sizes and offsets, with Float16 blobs', async (ref) => {
    const { graph } = readMLPackage(ref);
    const out = join(dir, `${ref.split('/').at(-2)}.mlpackage`);
    const stats = await writeMLPackage(out, { graph });
    checkPackageBytes(out, 1);
    const ours = rawBlobs(weightFile(out)).blobs;
    const theirs = rawBlobs(weightFile(ref)).blobs;
    expect(ours.map((b) => [b.metadataOffset, b.size])).toEqual(theirs.map((b) => [b.metadataOffset, b.size]));
    expect(stats.weightBytes).toBe(weightFile(ref).length);
    // The weights themselves are identical bytes.
    const a = weightFile(out);
    const b = weightFile(ref);
    for (let i = 0; i < ours.length; i++) {
      const o = ours[i]!;
      expect(
        Buffer.from(a.subarray(o.dataOffset, o.dataOffset + o.size)).equals(
          Buffer.from(b.subarray(o.dataOffset, o.dataOffset + o.size)),
        ),
      ).toBe(true);
    }
    // Each op (const ones aside) comes out with the same type, name attribute and output names as in the reference.
    const summary = (pkg: string): string[] => {
      const program = only(fields(modelFile(pkg)), 502).bytes!;
      const block = fields(mapEntries(fields(mapEntries(fields(program), 2).get('main')!), 3).get('CoreML7')!);
      return block
        .filter((f) => f.field === 3)
        .map((f) => fields(f.bytes!))
        .filter((op) => text(only(op, 1).bytes) !== 'const')
        .map((op) => {
          const name = fields(mapEntries(op, 5).get('name')!); // Value {2: type, 3: immediateValue}
          const strings = fields(only(fields(only(name, 3).bytes!), 1).bytes!); // ImmediateValue.tensor
          const value = text(only(fields(only(strings, 4).bytes!), 1).bytes); // TensorValue.strings.values[0]
          const outs = op.filter((x) => x.field === 3).map((x) => text(only(fields(x.bytes!), 1).bytes));
          return `${text(only(op, 1).bytes)} ${value} -> ${outs.join(',')}`;
        });
    };
    expect(summary(out)).toEqual(summary(ref));
  });

  it('writes Manifest.json as ModelPackage does', async () => {
    const { graph } = readMLPackage(REFERENCES[0]!);
    const out = join(dir, 'manifest.mlpackage');
    await writeMLPackage(out, { graph });
    const raw = readFileSync(join(out, 'Manifest.json'), 'utf8');
    const m = JSON.parse(raw) as {
      itemInfoEntries: Record<string, Record<string, string>>;
      rootModelIdentifier: string;
    };
    expect(JSON.stringify(m, null, 2)).toBe(raw);
    const entries = Object.entries(m.itemInfoEntries);
    expect(entries.map(([, e]) => e)).toEqual([
      {
        author: 'com.apple.CoreML',
        description: 'CoreML Model Specification',
        name: 'model.mlmodel',
        path: 'com.apple.CoreML/model.mlmodel',
      },
      {
        author: 'com.apple.CoreML',
        description: 'CoreML Model Weights',
        name: 'weights',
        path: 'com.apple.CoreML/weights',
      },
    ]);
    expect(m.rootModelIdentifier).toBe(entries[0]![0]);
    expect(raw.startsWith('{\n  "fileFormatVersion": "1.0.0",\n  "itemInfoEntries": {\n')).toBe(true);
  });

  it('BlobWriter streams aligned blobs that BlobReader and a DataView agree on', () => {
    const path = join(dir, 'weights.bin');
    const w = BlobWriter.create(path);
    const payloads: [Parameters<BlobWriter['append']>[0], Uint8Array][] = [
      ['fp16', new Uint8Array([1, 2, 3, 4, 5, 6])],
      ['fp32', new Uint8Array(64 * 3).fill(7)],
      ['int8', new Uint8Array([255])],
      ['uint8', new Uint8Array(100).fill(9)],
    ];
    const offsets = payloads.map(([t, d]) => w.append(t, d));
    w.close();
    expect(offsets).toEqual([64, 192, 448, 576]);
    const raw = rawBlobs(readFileSync(path));
    expect(raw.count).toBe(4);
    expect(raw.blobs.map((b) => [b.metadataOffset, b.dtype, b.size, b.dataOffset])).toEqual([
      [64, 1, 6, 128],
      [192, 2, 192, 256],
      [448, 4, 1, 512],
      [576, 3, 100, 640],
    ]);
    const r = BlobReader.open(path);
    try {
      expect(r.list().map((b) => b.offset)).toEqual(offsets);
      offsets.forEach((o, i) => {
        const { info, data } = r.read(o);
        expect(info.dataType).toBe(payloads[i]![0]);
        expect([...data]).toEqual([...payloads[i]![1]]);
      });
    } finally {
      r.close();
    }
  });

  it('BlobReader takes padding bits only on sub-byte types, and fewer than 8', () => {
    const cases: [Parameters<BlobWriter['append']>[0], number, boolean][] = [
      ['uint3', 7, true],
      ['int4', 4, true],
      ['uint3', 8, false],
      ['uint8', 1, false],
      ['fp16', 4, false],
    ];
    for (const [type, bits, ok] of cases) {
      const path = join(dir, `pad-${type}-${bits}.bin`);
      const w = BlobWriter.create(path);
      const offset = w.append(type, new Uint8Array([1, 2]), bits);
      w.close();
      const r = BlobReader.open(path);
      try {
        if (ok) expect(r.read(offset).info.paddingBits).toBe(bits);
        else expect(() => r.read(offset), `${type} ${bits}`).toThrow(`${bits} padding bits for data type ${type}`);
      } finally {
        r.close();
      }
    }
  });
});
