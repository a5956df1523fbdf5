// Damaged packages and packages we cannot represent: each gives a specific, typed error.

import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { decodeModel, encodeModel, type ModelProto, type OperationProto } from '../src/coreml/schema.js';
import { ModernBertError, type ErrorCode } from '../src/errors.js';

const REFERENCE = 'test/fixtures/coreml-reference/tiny-mlm-S32-norot/model.mlpackage';
const MODEL = 'Data/com.apple.CoreML/model.mlmodel';
const WEIGHTS = 'Data/com.apple.CoreML/weights/weight.bin';
/** Metadata offsets of the first two blobs of the reference weight file. */
const FIRST_BLOB = 64;
const SECOND_BLOB = 131200;

let dir: string;
let counter = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'coreml-corrupt-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A fresh copy of the reference package. */
function copy(): string {
  const p = join(dir, `copy${counter++}.mlpackage`);
  cpSync(REFERENCE, p, { recursive: true });
  return p;
}

function patchWeights(pkg: string, patch: (dv: DataView) => void): void {
  const file = join(pkg, WEIGHTS);
  const bytes = readFileSync(file);
  patch(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  writeFileSync(file, bytes);
}

function editModel(pkg: string, edit: (m: ModelProto) => void): void {
  const file = join(pkg, MODEL);
  const m = decodeModel(readFileSync(file), file);
  edit(m);
  writeFileSync(file, encodeModel(m));
}

function operations(m: ModelProto): OperationProto[] {
  return m.mlProgram!.functions!.main!.block_specializations!.CoreML7!.operations!;
}

function failure(fn: () => unknown, code: ErrorCode): ModernBertError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ModernBertError);
    expect((e as ModernBertError).code).toBe(code);
    return e as ModernBertError;
  }
  throw new Error(`expected a ${code} error`);
}

describe('damaged weight.bin', () => {
  it('truncated inside a blob: the blob that runs past the end is named', () => {
    const pkg = copy();
    truncateSync(join(pkg, WEIGHTS), 200_000);
    const e = failure(() => readMLPackage(pkg), 'CORRUPT_FILE');
    expect(e.message).toMatch(
      /weight\.bin blob at offset \d+ claims \d+ bytes of data at \d+, outside the file \(200000 bytes\)|has no blob metadata at offset \d+ \(file is 200000 bytes\)/,
    );
  });

  it('shorter than its header', () => {
    const pkg = copy();
    truncateSync(join(pkg, WEIGHTS), 40);
    expect(failure(() => readMLPackage(pkg), 'CORRUPT_FILE').message).toMatch(
      /weight\.bin is 40 bytes, shorter than the 64-byte storage header/,
    );
  });

  it('wrong storage version', () => {
    const pkg = copy();
    patchWeights(pkg, (dv) => dv.setUint32(4, 3, true));
    expect(failure(() => readMLPackage(pkg), 'CORRUPT_FILE').message).toMatch(
      /has storage version 3; only version 2 is defined/,
    );
  });

  it('bad sentinel', () => {
    const pkg = copy();
    patchWeights(pkg, (dv) => dv.setUint32(SECOND_BLOB, 0xcafef00d, true));
    const e = failure(() => readMLPackage(pkg), 'CORRUPT_FILE');
    expect(e.message).toMatch(/blob at offset 131200 has sentinel 0xcafef00d, expected 0xdeadbeef/);
    expect(e.context).toMatchObject({ offset: SECOND_BLOB });
  });

  it('a data type that does not match the tensor, an unknown code, or a wrong size', () => {
    const fp32 = copy();
    patchWeights(fp32, (dv) => dv.setUint32(FIRST_BLOB + 4, 2, true));
    expect(failure(() => readMLPackage(fp32), 'CORRUPT_FILE').message).toMatch(
      /blob at offset 64 \(embeddings_embeddings_weight_to_fp16\) holds fp32 data for a fp16 tensor/,
    );
    const unknown = copy();
    patchWeights(unknown, (dv) => dv.setUint32(FIRST_BLOB + 4, 99, true));
    expect(failure(() => readMLPackage(unknown), 'CORRUPT_FILE').message).toMatch(
      /blob at offset 64 has unknown data type code 99/,
    );
    const size = copy();
    patchWeights(size, (dv) => dv.setBigUint64(FIRST_BLOB + 8, 1000n, true));
    expect(failure(() => readMLPackage(size), 'CORRUPT_FILE').message).toMatch(
      /has 1000 bytes, shape \[1024, 64\] of fp16 needs 131072/,
    );
  });

  it('an offset in the program that points outside the file or between blobs', () => {
    const far = copy();
    editModel(far, (m) => {
      operations(m).find((o) => o.attributes?.val?.blobFileValue)!.attributes!.val!.blobFileValue!.offset =
        1_000_000_000;
    });
    expect(failure(() => readMLPackage(far), 'CORRUPT_FILE').message).toMatch(
      /has no blob metadata at offset 1000000000 \(file is 558528 bytes\)/,
    );
    const misaligned = copy();
    editModel(misaligned, (m) => {
      operations(m).find((o) => o.attributes?.val?.blobFileValue)!.attributes!.val!.blobFileValue!.offset = 72;
    });
    expect(failure(() => readMLPackage(misaligned), 'CORRUPT_FILE').message).toMatch(
      /blob metadata offset 72 is not 64-byte aligned/,
    );
  });

  it('damage after reading is caught when a weight is loaded', () => {
    const pkg = copy();
    const { graph } = readMLPackage(pkg);
    patchWeights(pkg, (dv) => dv.setUint32(FIRST_BLOB, 0, true));
    const e = failure(() => graph.consts.get('embeddings_embeddings_weight_to_fp16')!.load(), 'CORRUPT_FILE');
    expect(e.message).toMatch(/blob at offset 64 has sentinel 0x0/);
  });

  it('missing weight file', () => {
    const pkg = copy();
    unlinkSync(join(pkg, WEIGHTS));
    expect(failure(() => readMLPackage(pkg), 'FILE_NOT_FOUND').message).toMatch(
      /weight file .*weight\.bin named by .*model\.mlmodel is missing/,
    );
  });
});

describe('damaged model.mlmodel and Manifest.json', () => {
  it.each([
    ['text', Buffer.from('this is not a protobuf')],
    ['a zip header', Buffer.from('PK\x03\x04 zip file garbage')],
    ['truncated protobuf', readFileSync(join(REFERENCE, MODEL)).subarray(0, 5000)],
  ])('garbage model.mlmodel (%s)', (_, bytes) => {
    const pkg = copy();
    writeFileSync(join(pkg, MODEL), bytes);
    expect(failure(() => readMLPackage(pkg), 'CORRUPT_FILE').message).toMatch(
      /model\.mlmodel is not a valid Core ML model protobuf: /,
    );
  });

  it('an empty model.mlmodel', () => {
    const pkg = copy();
    writeFileSync(join(pkg, MODEL), new Uint8Array(0));
    expect(failure(() => readMLPackage(pkg), 'CORRUPT_FILE').message).toMatch(
      /is not a Core ML model \(no specification version, no model\)/,
    );
  });

  it('a program that uses a value before defining it', () => {
    const pkg = copy();
    editModel(pkg, (m) => {
      operations(m).find((o) => o.type === 'conv')!.inputs!.x = { arguments: [{ name: 'nowhere' }] };
    });
    expect(failure(() => readMLPackage(pkg), 'CORRUPT_FILE').message).toMatch(
      /\(conv\) input "x" uses "nowhere", which is not defined before it/,
    );
  });

  it('a program that is not well formed: every op is checked against the registry, naming the op', () => {
    // A conv renamed to slice_by_index used to load and predict.
    const renamed = copy();
    editModel(renamed, (m) => {
      const conv = operations(m).find((o) => o.type === 'conv')!;
      conv.type = 'slice_by_index';
    });
    expect(failure(() => readMLPackage(renamed), 'CORRUPT_FILE').message).toMatch(
      /\(slice_by_index\): (missing required input "begin"|unknown input)/,
    );
    const unknown = copy();
    editModel(unknown, (m) => {
      operations(m).find((o) => o.type === 'gelu')!.type = '__proto__';
    });
    expect(failure(() => readMLPackage(unknown), 'UNSUPPORTED').message).toMatch(
      /op type "__proto__" is not supported/,
    );
    // A declared output type that the op's inputs do not give (coremltools' type inference disagrees).
    const mistyped = copy();
    editModel(mistyped, (m) => {
      const sm = operations(m).find((o) => o.type === 'softmax')!;
      sm.outputs![0]!.type!.tensorType!.dimensions![1] = { constant: { size: 7 } };
    });
    expect(failure(() => readMLPackage(mistyped), 'CORRUPT_FILE').message).toMatch(
      /\(softmax\): output ".*" is declared fp16\[1, 7, 1, 32\], its inputs give fp16\[1, 32, 1, 32\]/,
    );
  });

  it('manifest missing, not JSON, naming an absent root, or pointing outside the package', () => {
    const none = copy();
    unlinkSync(join(none, 'Manifest.json'));
    expect(failure(() => readMLPackage(none), 'FILE_NOT_FOUND').message).toMatch(
      /is not an \.mlpackage: it has no Manifest\.json/,
    );
    const notJson = copy();
    writeFileSync(join(notJson, 'Manifest.json'), '{"fileFormatVersion": ');
    expect(failure(() => readMLPackage(notJson), 'CORRUPT_FILE').message).toMatch(/Manifest\.json is not valid JSON/);
    const noRoot = copy();
    const manifest = JSON.parse(readFileSync(join(noRoot, 'Manifest.json'), 'utf8')) as {
      rootModelIdentifier: string;
      itemInfoEntries: Record<string, { path: string }>;
    };
    writeFileSync(join(noRoot, 'Manifest.json'), JSON.stringify({ ...manifest, rootModelIdentifier: 'NOPE' }));
    expect(failure(() => readMLPackage(noRoot), 'CORRUPT_FILE').message).toMatch(
      /names root model "NOPE", which is not among its items/,
    );
    const escape = copy();
    manifest.itemInfoEntries[manifest.rootModelIdentifier]!.path = '../../secret.mlmodel';
    writeFileSync(join(escape, 'Manifest.json'), JSON.stringify(manifest));
    expect(failure(() => readMLPackage(escape), 'CORRUPT_FILE').message).toMatch(
      /points outside the package: \.\.\/\.\.\/secret\.mlmodel/,
    );
    expect(failure(() => readMLPackage(join(dir, 'absent.mlpackage')), 'FILE_NOT_FOUND').message).toMatch(
      /no \.mlpackage folder at/,
    );
  });
});

describe('packages from elsewhere that the graph cannot express', () => {
  it('a neural network model, not an ML Program', () => {
    const pkg = copy();
    writeFileSync(
      join(pkg, MODEL),
      encodeModel({ specificationVersion: 4, description: {}, neuralNetwork: new Uint8Array(0) }),
    );
    expect(failure(() => readMLPackage(pkg), 'UNSUPPORTED').message).toMatch(
      /holds a neuralNetwork; only ML Programs \(mlProgram\) are supported/,
    );
  });

  it('several functions without function descriptions', () => {
    const pkg = copy();
    editModel(pkg, (m) => {
      m.mlProgram!.functions!.prefill = m.mlProgram!.functions!.main!;
    });
    expect(failure(() => readMLPackage(pkg), 'UNSUPPORTED').message).toMatch(
      /has 2 functions \(main, prefill\) but no function descriptions/,
    );
  });

  it('function descriptions that do not match the program', () => {
    const pkg = copy();
    editModel(pkg, (m) => {
      m.mlProgram!.functions!.prefill = m.mlProgram!.functions!.main!;
      m.description = {
        ...m.description,
        functions: [{ name: 'main' }, { name: 'decode' }],
        defaultFunctionName: 'main',
      };
    });
    expect(failure(() => readMLPackage(pkg), 'CORRUPT_FILE').message).toMatch(
      /describes functions main, decode but the program has main, prefill/,
    );
  });

  it('control flow (nested blocks)', () => {
    const pkg = copy();
    editModel(pkg, (m) => {
      operations(m).find((o) => o.type === 'softmax')!.blocks = [{ outputs: ['x'] }];
    });
    expect(failure(() => readMLPackage(pkg), 'UNSUPPORTED').message).toMatch(
      /\(softmax\) has nested blocks \(control flow is not supported\)/,
    );
  });

  it('list types, int64 data and image features', () => {
    const list = copy();
    editModel(list, (m) => {
      operations(m).find((o) => o.type === 'softmax')!.outputs![0]!.type = { listType: {} };
    });
    expect(failure(() => readMLPackage(list), 'UNSUPPORTED').message).toMatch(
      /value type listType is not supported \(tensors only\)/,
    );
    const int64 = copy();
    editModel(int64, (m) => {
      const c = operations(m).find((o) => o.type === 'const' && o.attributes?.val?.immediateValue?.tensor?.ints)!;
      c.attributes!.val = {
        type: { tensorType: { dataType: 'INT64' } },
        immediateValue: { tensor: { longInts: { values: [3] } } },
      };
      c.outputs![0]!.type = { tensorType: { dataType: 'INT64' } };
    });
    expect(failure(() => readMLPackage(int64), 'UNSUPPORTED').message).toMatch(/MIL data type INT64 is not supported/);
    const image = copy();
    editModel(image, (m) => {
      // FeatureType.imageType (field 4), kept opaque by our schema: ImageFeatureType {width: 10}.
      m.description!.input![0]!.type = { imageType: new Uint8Array([0x08, 0x0a]) };
    });
    expect(failure(() => readMLPackage(image), 'UNSUPPORTED').message).toMatch(
      /model input "input_ids" has feature type imageType; only multi-arrays are supported/,
    );
  });
});
