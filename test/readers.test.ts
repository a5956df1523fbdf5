// Regression tests of issue 7's reader defects: each input below once loaded silently wrong, hung, ran
// out of memory, leaked a file outside the model, or failed with an internal error. Each must now be one
// clear ModernBertError naming the file.

import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.js';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { PackageRunner } from '../src/run/package-runner.js';
import { decodeModel, encodeModel } from '../src/coreml/schema.js';
import { readGolden } from '../src/eval/golden.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { READ_LIMITS } from '../src/io/limits.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { loadTokenizer } from '../src/tokenizer/tokenizer.js';
import { cli, expectOneLineError } from './helpers/cli.js';
import {
  cleanupTempDirs,
  copyFixture,
  FX,
  readFixtureJson,
  rawSafetensors,
  tempDir,
  writeCheckpoint,
  readTensors,
} from './helpers/fixtures.js';
import { expectError } from './helpers/run.js';

afterAll(cleanupTempDirs);

const REF_PKG = join(FX, 'coreml-reference', 'tiny-mlm-S32-norot', 'model.mlpackage');
const MODEL_FILE = join('Data', 'com.apple.CoreML', 'model.mlmodel');
const WEIGHT_FILE = join('Data', 'com.apple.CoreML', 'weights', 'weight.bin');

/** A copy of the reference tiny-mlm package. */
function copyPackage(): string {
  const dir = join(tempDir('mbane-readers-pkg-'), 'model.mlpackage');
  cpSync(REF_PKG, dir, { recursive: true });
  return dir;
}

/** Rewrites a package's model.mlmodel through the protobuf schema. */
function editModel(pkg: string, edit: (m: ReturnType<typeof decodeModel>) => void): void {
  const path = join(pkg, MODEL_FILE);
  const m = decodeModel(readFileSync(path), path);
  edit(m);
  writeFileSync(path, encodeModel(m));
}

function mkfifo(path: string): void {
  rmSync(path, { recursive: true, force: true });
  execFileSync('mkfifo', [path]);
}

describe('silently wrong results', () => {
  it('a NaN or infinite checkpoint weight is an error naming the tensor, and predict exits 2', async () => {
    const dir = copyFixture('tiny-mlm');
    const path = join(dir, 'model.safetensors');
    const f = SafetensorsFile.open(path);
    const info = f.info('model.layers.1.mlp.Wo.weight');
    const dataStart = 8 + Number(readFileSync(path).readBigUInt64LE(0));
    f.close();
    const bytes = readFileSync(path);
    bytes.writeFloatLE(Number.NaN, dataStart + info.begin + 4 * 7);
    writeFileSync(path, bytes);
    const ckpt = loadCheckpoint(dir);
    const e = await expectError(() => ckpt.weights.get('model.layers.1.mlp.Wo.weight'), 'CORRUPT_FILE');
    ckpt.close();
    expect(e.message).toContain('tensor "model.layers.1.mlp.Wo.weight" holds NaN at element 7');
    expectOneLineError(
      await cli('predict', dir, 'The [MASK] is open.'),
      /model\.layers\.1\.mlp\.Wo\.weight" holds NaN/,
    );
    // convert names the tensor too, instead of blaming float16.
    expectOneLineError(
      await cli('convert', dir, '--out', join(dir, 'out.mlpackage'), '--seq-len', '32'),
      /model\.layers\.1\.mlp\.Wo\.weight" holds NaN/,
    );
  });

  it('a header length one byte short (which shifted every tensor by a byte) is an error, padded header or not', async () => {
    const dir = copyFixture('tiny-mlm');
    const path = join(dir, 'model.safetensors');
    const bytes = readFileSync(path);
    bytes.writeBigUInt64LE(bytes.readBigUInt64LE(0) - 1n, 0);
    writeFileSync(path, bytes);
    expect((await expectError(() => loadCheckpoint(dir), 'CORRUPT_FILE')).message).toMatch(
      /model\.safetensors: .*\((InvalidHeaderDeserialization|MetadataIncompleteBuffer)\)$/,
    );
  });

  it('an infinite weight in a package weight.bin is an error when it is loaded', async () => {
    const pkg = copyPackage();
    const path = join(pkg, WEIGHT_FILE);
    const bytes = readFileSync(path);
    // The first blob: metadata at 64, fp16 data at 128.
    bytes.writeUInt16LE(0x7c00, 128 + 2 * 3);
    writeFileSync(path, bytes);
    const read = readMLPackage(pkg);
    const runner = new PackageRunner(read, pkg);
    const e = await expectError(() => runner.forward({ ids: [1001, 5, 1002] }), 'CORRUPT_FILE');
    expect(e.message).toMatch(/weight\.bin: tensor ".*" holds Infinity at element 3/);
  });

  it('a negative or too large token id is refused by the package runner, as by the checkpoint engine', async () => {
    const pkg = copyPackage();
    const runner = new PackageRunner(readMLPackage(pkg), pkg);
    expect((await expectError(() => runner.forward({ ids: [1001, -1, 1002] }), 'BAD_INPUT')).message).toContain(
      'token id -1 at position 1 is outside the vocabulary (0..1023)',
    );
    expect((await expectError(() => runner.forward({ ids: [1024] }), 'BAD_INPUT')).message).toContain(
      'token id 1024 at position 0',
    );
  });

  it('package metadata that contradicts the program (head, labels, special ids) is refused at read time', async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ head: 'seqcls' }, /metadata "head" says seqcls, but the program's output is logits of rank 4/],
      [{ head: 'toString' }, /metadata "head" is "toString"/],
      [{ head: 'tokcls', labels: '["a","b"]' }, /"labels" names 2 classes but the classifier computes 1024/],
      [
        { special_token_ids: '{"pad":5000,"cls":1,"sep":2}' },
        /"special_token_ids" must give pad, cls and sep ids in 0..1023/,
      ],
      [{ labels: 'not json' }, /metadata "labels" is not JSON/],
    ];
    for (const [meta, pattern] of cases) {
      const pkg = copyPackage();
      editModel(pkg, (m) => {
        m.description!.metadata = {
          ...m.description!.metadata,
          userDefined: { ...(m.description!.metadata?.userDefined ?? {}), ...meta },
        };
      });
      const e = await expectError(() => new PackageRunner(readMLPackage(pkg), pkg), 'CORRUPT_FILE');
      expect(e.message).toMatch(pattern);
    }
  });

  it('a config without pad_token_id, whose default lies outside a small vocabulary, is refused up front', async () => {
    const c = readFixtureJson('tiny-mlm');
    delete c.pad_token_id;
    const e = await expectError(() => parseConfig(c, 'config.json'), 'BAD_CONFIG');
    expect(e.message).toBe(
      'config.json: "pad_token_id" is 50283 (the default), outside the vocabulary of 1024 tokens (0..1023)',
    );
    for (const field of ['cls_token_id', 'sep_token_id', 'bos_token_id', 'eos_token_id']) {
      const m = (await expectError(() => parseConfig({ ...readFixtureJson('tiny-mlm'), [field]: 1024 }), 'BAD_CONFIG'))
        .message;
      expect(m).toContain(`"${field}"`);
    }
  });
});

describe('shards must lie inside the checkpoint folder', () => {
  async function sharded(): Promise<string> {
    const dir = tempDir('mbane-readers-shards-');
    await writeCheckpoint(dir, {
      config: readFixtureJson('tiny-mlm'),
      tensors: readTensors(join(FX, 'tiny-mlm', 'model.safetensors')),
      shards: 2,
    });
    return dir;
  }
  function pointShard(dir: string, to: string): void {
    const path = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(path, 'utf8')) as { weight_map: Record<string, string> };
    index.weight_map['model.final_norm.weight'] = to;
    writeFileSync(path, JSON.stringify(index));
  }

  it('"../elsewhere", an absolute path and a symbolic link out of the folder all fail alike, saying nothing of the outside file', async () => {
    const outside = tempDir('mbane-readers-outside-');
    mkdirSync(join(outside, 'elsewhere'));
    writeFileSync(
      join(outside, 'elsewhere', 'shard.safetensors'),
      rawSafetensors({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
    );
    for (const name of [
      '../elsewhere/shard.safetensors',
      '../../etc/passwd',
      '/etc/passwd',
      'link.safetensors',
      'dangling.safetensors',
    ]) {
      const dir = await sharded();
      symlinkSync(join(outside, 'elsewhere', 'shard.safetensors'), join(dir, 'link.safetensors'));
      symlinkSync(join(outside, 'elsewhere', 'missing.safetensors'), join(dir, 'dangling.safetensors'));
      pointShard(dir, name);
      const e = await expectError(() => loadCheckpoint(dir), 'CORRUPT_FILE');
      expect(e.message).toBe(
        `${join(dir, 'model.safetensors.index.json')} names shard ${JSON.stringify(name)}, which is not a file inside ${dir}`,
      );
    }
    // A name too long for the file system (fuzz: index seed 7 case 40).
    const dir = await sharded();
    pointShard(dir, 'a'.repeat(5000));
    expect((await expectError(() => loadCheckpoint(dir), 'BAD_INPUT')).message).toContain('the path is too long');
  });
});

describe('sizes are bounded before anything is allocated', () => {
  it('num_hidden_layers 1e9 and num_labels 3e8 or 1e12 are config errors, at once', async () => {
    const t0 = Date.now();
    expect(
      (
        await expectError(
          () => parseConfig({ ...readFixtureJson('tiny-mlm'), num_hidden_layers: 1e9, layer_types: undefined }),
          'BAD_CONFIG',
        )
      ).message,
    ).toContain('"num_hidden_layers" is 1000000000, more than the 1024');
    const cls = { ...readFixtureJson('tiny-mlm'), architectures: ['ModernBertForSequenceClassification'] };
    for (const n of [3e8, 1e12]) {
      expect((await expectError(() => parseConfig({ ...cls, num_labels: n }), 'BAD_CONFIG')).message).toContain(
        `"num_labels" is ${n} classes, more than the 100000`,
      );
    }
    expect(Date.now() - t0).toBeLessThan(2000);
    expectOneLineError(
      await cli(
        'inspect',
        copyFixture('tiny-mlm', (c) => ({
          ...c,
          num_labels: 1e12,
          architectures: ['ModernBertForSequenceClassification'],
        })),
      ),
      /num_labels/,
    );
  });

  it('a FIFO as any input file is refused at once instead of hanging', async () => {
    const config = copyFixture('tiny-mlm');
    mkfifo(join(config, 'config.json'));
    expect((await expectError(() => loadCheckpoint(config), 'BAD_INPUT')).message).toBe(
      `${join(config, 'config.json')} is a FIFO, not a regular JSON file`,
    );

    const weights = copyFixture('tiny-mlm');
    mkfifo(join(weights, 'model.safetensors'));
    expect((await expectError(() => loadCheckpoint(weights), 'BAD_INPUT')).message).toContain('is a FIFO');

    const tok = copyFixture('tiny-mlm');
    mkfifo(join(tok, 'tokenizer.json'));
    expect((await expectError(() => loadTokenizer(tok), 'BAD_INPUT')).message).toContain('tokenizer.json is a FIFO');

    for (const file of ['Manifest.json', MODEL_FILE, WEIGHT_FILE]) {
      const pkg = copyPackage();
      mkfifo(join(pkg, file));
      expect((await expectError(() => readMLPackage(pkg), 'BAD_INPUT')).message).toContain(
        `${join(pkg, file)} is a FIFO`,
      );
    }

    const golden = join(tempDir('mbane-readers-golden-'), 'golden.safetensors');
    execFileSync('mkfifo', [golden]);
    expect((await expectError(() => readGolden(golden), 'BAD_INPUT')).message).toContain('is a FIFO');
  });

  it('Manifest.json linked to /dev/zero is refused, not read until memory runs out', async () => {
    const pkg = copyPackage();
    rmSync(join(pkg, 'Manifest.json'));
    symlinkSync('/dev/zero', join(pkg, 'Manifest.json'));
    expect((await expectError(() => readMLPackage(pkg), 'BAD_INPUT')).message).toContain(
      'Manifest.json is a character device',
    );
  });

  it("a JSON file above its kind's cap (limits.ts) is refused before it is parsed", async () => {
    const dir = copyFixture('tiny-mlm');
    writeFileSync(join(dir, 'config.json'), Buffer.alloc(READ_LIMITS.config + 1, 0x20));
    expect((await expectError(() => loadCheckpoint(dir), 'BAD_INPUT')).message).toContain(
      `is ${READ_LIMITS.config + 1} bytes, more than the 1 MiB a JSON file may have`,
    );
    writeFileSync(join(dir, 'tokenizer.json'), Buffer.alloc(READ_LIMITS.tokenizer + 1, 0x20));
    expect((await expectError(() => loadTokenizer(dir), 'BAD_INPUT')).message).toContain(
      'more than the 64 MiB a tokenizer file may have',
    );
  });
});

describe('corrupt files are clear errors, not internal ones', () => {
  it('a safetensors shape nested 10,000 deep', async () => {
    const path = join(tempDir('mbane-readers-deep-'), 'deep.safetensors');
    writeFileSync(
      path,
      rawSafetensors(
        `{"a":{"dtype":"F32","shape":${'['.repeat(10_000)}1${']'.repeat(10_000)},"data_offsets":[0,4]}}`,
        new Uint8Array(4),
      ),
    );
    expect((await expectError(() => SafetensorsFile.open(path), 'CORRUPT_FILE')).message).toContain(
      'nesting deeper than 128',
    );
  });

  it('package files that are folders or symbolic link loops', async () => {
    const folder = copyPackage();
    rmSync(join(folder, MODEL_FILE));
    mkdirSync(join(folder, MODEL_FILE));
    expect((await expectError(() => readMLPackage(folder), 'BAD_INPUT')).message).toContain(
      'model.mlmodel is a folder, not a regular Core ML model',
    );
    const loop = copyPackage();
    rmSync(join(loop, WEIGHT_FILE));
    symlinkSync(join(loop, WEIGHT_FILE), join(loop, WEIGHT_FILE));
    expect((await expectError(() => readMLPackage(loop), 'BAD_INPUT')).message).toContain(
      'weight.bin: it is a symbolic link loop',
    );
    const notDir = copyPackage();
    rmSync(join(notDir, 'Data', 'com.apple.CoreML', 'weights'), { recursive: true });
    symlinkSync('/dev/zero', join(notDir, 'Data', 'com.apple.CoreML', 'weights'));
    expect((await expectError(() => readMLPackage(notDir), 'BAD_INPUT')).message).toContain(
      'a part of the path is not a folder',
    );
  });

  it('a Manifest rootModelIdentifier naming a prototype property', async () => {
    for (const id of ['constructor', '__proto__', 'toString']) {
      const pkg = copyPackage();
      const m = JSON.parse(readFileSync(join(pkg, 'Manifest.json'), 'utf8')) as Record<string, unknown>;
      writeFileSync(join(pkg, 'Manifest.json'), JSON.stringify({ ...m, rootModelIdentifier: id }));
      expect((await expectError(() => readMLPackage(pkg), 'CORRUPT_FILE')).message).toBe(
        `Manifest.json names root model ${JSON.stringify(id)}, which is not among its items`,
      );
    }
  });

  it('a protobuf map entry without a value (what bit flips in model.mlmodel give)', async () => {
    const pkg = copyPackage();
    const path = join(pkg, MODEL_FILE);
    const bytes = readFileSync(path);
    bytes.writeUInt32LE(2147483646, 95181); // fuzz case: package seed 1 case 144
    writeFileSync(path, bytes);
    expect((await expectError(() => readMLPackage(pkg), 'CORRUPT_FILE')).message).toContain(
      'is not a valid Core ML model protobuf',
    );
  });

  it('an op of type "__proto__" or "hasOwnProperty" (it reached the kernel table: "impl is not a function")', async () => {
    for (const type of ['__proto__', 'hasOwnProperty']) {
      const pkg = copyPackage();
      editModel(pkg, (m) => {
        const block = Object.values(Object.values(m.mlProgram!.functions!)[0]!.block_specializations!)[0]!;
        block.operations!.find((op) => op.type === 'mul')!.type = type;
      });
      expect((await expectError(() => readMLPackage(pkg), 'UNSUPPORTED')).message).toContain(
        `op type "${type}" is not supported`,
      );
    }
  });

  it('an input dimension of 2^40', async () => {
    const pkg = copyPackage();
    editModel(pkg, (m) => {
      const fn = Object.values(m.mlProgram!.functions!)[0]!;
      fn.inputs![0]!.type!.tensorType!.dimensions![1] = { constant: { size: 2 ** 40 } };
    });
    expect((await expectError(() => readMLPackage(pkg), 'CORRUPT_FILE')).message).toMatch(
      /input "input_ids" has shape \[1, 1099511627776\], more than 2147483647 elements/,
    );
  });
});

describe('names are looked up in own-property tables only', () => {
  it('classifier_activation "toString" and architectures ["constructor"] are unsupported values, not prototype functions', async () => {
    const act = await expectError(
      () => parseConfig({ ...readFixtureJson('tiny-mlm'), classifier_activation: 'toString' }),
      'UNSUPPORTED',
    );
    expect(act.message).toContain('"classifier_activation" = "toString" is not supported');
    const arch = await expectError(
      () => parseConfig({ ...readFixtureJson('tiny-mlm'), architectures: ['constructor'] }),
      'UNSUPPORTED',
    );
    expect(arch.message).toContain('"architectures" names "constructor", which is not supported');
  });

  it('a tokenizer vocabulary id of 1e9 or "NaN" is refused at once (it hung, or encoded to undefined)', async () => {
    for (const id of [1e9, 'NaN', true, [1, 2], -1]) {
      const dir = copyFixture('tiny-mlm');
      const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as {
        model: { vocab: Record<string, unknown> };
      };
      tok.model.vocab.the = id;
      writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok));
      expect((await expectError(() => loadTokenizer(dir), 'CORRUPT_FILE')).message).toContain(
        `model.vocab gives token "the" the id ${JSON.stringify(id)}`,
      );
    }
  });
});
