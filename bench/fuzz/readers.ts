// The readers the fuzzer exercises, each with its seed files (built once from the project's fixtures)
// and its case: mutate the seed, write it into a fresh folder, read it as a user would, and when it is
// accepted, use it (read every tensor, run a short forward pass, encode a text) so that "accepted"
// also means "works, with finite outputs". What a user names on the command line (batch inputs, head
// names, output targets) is in user-files.ts.

import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../dist/run/engine.js';
import { ModernBertError } from '../../dist/errors.js';
import { readGolden } from '../../dist/eval/golden.js';
import { loadCheckpoint } from '../../dist/model/checkpoint.js';
import { SafetensorsFile } from '../../dist/io/safetensors.js';
import { writeSafetensors, type TensorToWrite } from '../../dist/io/safetensors-writer.js';
import { readMLPackage } from '../../dist/coreml/mil-read.js';
import { BlobReader } from '../../dist/coreml/milblob.js';
import { PackageRunner } from '../../dist/run/package-runner.js';
import { decodeModel, encodeModel } from '../../dist/coreml/schema.js';
import { loadTokenizer } from '../../dist/tokenizer/tokenizer.js';
import { BUILTIN_SENTENCES } from '../../dist/eval/sentences.js';
import { concat, mutateBytes, mutateJsonText, type Mutated } from './mutate.js';
import { batchSeeds, runUserFileCase, USER_FILE_READERS } from './user-files.js';
import type { Rng } from './random.js';

export const READERS = [
  'safetensors',
  'index',
  'config',
  'tokenizer',
  'package',
  'golden',
  ...USER_FILE_READERS,
] as const;
export type ReaderName = (typeof READERS)[number];

/** Seed files, built once per run from the fixtures folder. */
export interface Seeds {
  dir: string;
  safetensors: Uint8Array;
  /** A sharded checkpoint folder: config.json, two shards and the index. */
  sharded: string;
  index: string;
  /** tiny-mlm: config.json and model.safetensors. */
  checkpoint: string;
  config: string;
  tokenizer: string;
  tokenizerConfig: string;
  package: string;
  manifest: string;
  model: Uint8Array;
  weights: Uint8Array;
  /** Offsets of the blob metadata records in weight.bin. */
  blobs: number[];
  golden: Uint8Array;
  /** Batch inputs: one text per line, and JSONL. */
  plain: string;
  jsonl: string;
}

/** Builds the seeds in `dir` from `fixtures` (test/fixtures). */
export async function prepareSeeds(fixtures: string, dir: string): Promise<Seeds> {
  mkdirSync(dir, { recursive: true });
  const tiny = join(fixtures, 'tiny-mlm');
  const source = SafetensorsFile.open(join(tiny, 'model.safetensors'));
  const names = [...source.tensors.keys()];
  const tensors = new Map(
    names.map((n) => [n, { shape: source.info(n).shape, data: Float32Array.from(source.readFloat32(n)) }]),
  );
  source.close();

  // A small safetensors file with several dtypes, and a little metadata.
  const small: TensorToWrite[] = [
    { name: 'f32', dtype: 'F32', shape: [4, 8], data: () => tensors.get(names[1]!)!.data.slice(0, 32) },
    { name: 'f16', dtype: 'F16', shape: [3, 5], data: () => Uint16Array.from({ length: 15 }, (_, i) => 0x3c00 + i) },
    { name: 'bf16', dtype: 'BF16', shape: [6], data: () => Uint16Array.from({ length: 6 }, (_, i) => 0x3f80 + i) },
    { name: 'i64', dtype: 'I64', shape: [2, 3], data: () => BigInt64Array.from([1n, -2n, 3n, 1000n, 0n, 7n]) },
    { name: 'i32', dtype: 'I32', shape: [5], data: () => Int32Array.from([5, 4, 3, 2, 1]) },
    { name: 'empty', dtype: 'F32', shape: [0, 4], data: () => new Float32Array(0) },
  ];
  const stPath = join(dir, 'seed.safetensors');
  await writeSafetensors(stPath, small, { metadata: { format: 'pt' } });

  // The sharded checkpoint: tiny-mlm's tensors in two files and an index.
  const sharded = join(dir, 'sharded');
  mkdirSync(sharded, { recursive: true });
  copyFileSync(join(tiny, 'config.json'), join(sharded, 'config.json'));
  const half = Math.ceil(names.length / 2);
  const shardNames = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const weightMap: Record<string, string> = {};
  for (const [s, part] of [names.slice(0, half), names.slice(half)].entries()) {
    await writeSafetensors(
      join(sharded, shardNames[s]!),
      part.map((n) => ({
        name: n,
        dtype: 'F32' as const,
        shape: tensors.get(n)!.shape,
        data: () => tensors.get(n)!.data,
      })),
    );
    for (const n of part) weightMap[n] = shardNames[s]!;
  }
  const index = JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2);
  writeFileSync(join(sharded, 'model.safetensors.index.json'), index);

  // A golden file with one case.
  const g = SafetensorsFile.open(join(tiny, 'golden.safetensors'));
  const keys = ['single.input_ids', 'single.attention_mask', 'single.logits', 'single.hidden_states'];
  const goldenTensors: TensorToWrite[] = keys.map((k) =>
    k.endsWith('logits') || k.endsWith('states')
      ? { name: k, dtype: 'F32', shape: g.info(k).shape, data: () => Float32Array.from(g.readFloat32(k)) }
      : {
          name: k,
          dtype: 'I64',
          shape: g.info(k).shape,
          data: () => BigInt64Array.from(Array.from(g.readInt32(k), BigInt)),
        },
  );
  const goldenPath = join(dir, 'golden.safetensors');
  await writeSafetensors(goldenPath, goldenTensors);
  g.close();

  const pkg = join(fixtures, 'coreml-reference', 'tiny-mlm-S32-norot', 'model.mlpackage');
  const weightsPath = join(pkg, 'Data', 'com.apple.CoreML', 'weights', 'weight.bin');
  const blobReader = BlobReader.open(weightsPath);
  const blobs = blobReader.list().map((b) => b.offset);
  blobReader.close();
  return {
    dir,
    safetensors: readFileSync(stPath),
    sharded,
    index,
    checkpoint: tiny,
    config: readFileSync(join(tiny, 'config.json'), 'utf8'),
    tokenizer: readFileSync(join(tiny, 'tokenizer.json'), 'utf8'),
    tokenizerConfig: readFileSync(join(tiny, 'tokenizer_config.json'), 'utf8'),
    package: pkg,
    manifest: readFileSync(join(pkg, 'Manifest.json'), 'utf8'),
    model: readFileSync(join(pkg, 'Data', 'com.apple.CoreML', 'model.mlmodel')),
    weights: readFileSync(weightsPath),
    blobs,
    golden: readFileSync(goldenPath),
    ...batchSeeds(BUILTIN_SENTENCES),
  };
}

/** What a case did: the mutations, for the report of a failing case. */
export interface CaseLog {
  what: string[];
  /** Called once the inputs are written, just before the reader runs (so a hang can name the case). */
  ready?: (what: string) => void;
}

/** Replaces `path` with something that is not a regular file (cheap kinds only). */
function swapKind(rng: Rng, path: string, log: CaseLog): void {
  rmSync(path, { recursive: true, force: true });
  const kind = rng.pick(['folder', 'fifo', 'loop', 'dangling', 'dev-zero', 'empty']);
  if (kind === 'folder') mkdirSync(path);
  else if (kind === 'fifo') execFileSync('mkfifo', [path]);
  else if (kind === 'loop') symlinkSync(path, path);
  else if (kind === 'dangling') symlinkSync(`${path}.missing`, path);
  else if (kind === 'dev-zero') symlinkSync('/dev/zero', path);
  else writeFileSync(path, '');
  log.what.push(`${path.split('/').slice(-1)[0]} -> ${kind}`);
}

/** A JSON text mutated structurally (mostly) or byte-wise. */
function mutateJsonFile(rng: Rng, text: string, log: CaseLog): Uint8Array {
  let current = text;
  const rounds = 1 + rng.int(3);
  for (let r = 0; r < rounds; r++) {
    if (rng.chance(0.75)) {
      try {
        const m = mutateJsonText(rng, current);
        log.what.push(m.what);
        current = m.text;
        continue;
      } catch {
        // The text is no longer JSON (an earlier byte mutation): mutate bytes instead.
      }
    }
    const m = mutateBytes(rng, Buffer.from(current, 'utf8'));
    log.what.push(m.what);
    current = Buffer.from(m.bytes).toString('latin1');
    return m.bytes;
  }
  return Buffer.from(current, 'utf8');
}

/** Checks that every value is finite (an accepted input must not give NaN or infinity silently). */
function expectFinite(data: ArrayLike<number>, what: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new Error(`accepted, but ${what} holds ${data[i]} at ${i}`);
  }
}

/** Links (or copies) every file of `from` into `to`. */
function linkFolder(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const e of readdirSync(from, { withFileTypes: true })) {
    if (e.isDirectory()) linkFolder(join(from, e.name), join(to, e.name));
    else linkSync(join(from, e.name), join(to, e.name));
  }
}

const IDS = [1001, 5, 17, 300, 1002];

async function forwardCheckpoint(dir: string): Promise<void> {
  const ckpt = loadCheckpoint(dir);
  try {
    for (const name of ckpt.weights.names()) ckpt.weights.get(name);
    const engine = new Engine(ckpt);
    const ids = IDS.map((id) => Math.min(id, ckpt.config.vocabSize - 1));
    const res = await engine.forward({ ids });
    for (const [name, t] of res.outputs) expectFinite(t.data, `output ${name}`);
  } finally {
    ckpt.close();
  }
}

/** Runs one case of `reader` in `dir` (a fresh, empty folder). Throws what the reader threw. */
export async function runReaderCase(
  reader: ReaderName,
  seeds: Seeds,
  rng: Rng,
  dir: string,
  log: CaseLog,
): Promise<void> {
  switch (reader) {
    case 'batch-input':
    case 'head-name':
    case 'output':
      return runUserFileCase(reader, seeds, rng, dir, log);
    case 'safetensors': {
      const path = join(dir, 'model.safetensors');
      const m = mutateSafetensors(rng, seeds.safetensors);
      log.what.push(m.what);
      writeFileSync(path, m.bytes);
      if (rng.chance(0.02)) swapKind(rng, path, log);
      log.ready?.(log.what.join('; '));
      const f = SafetensorsFile.open(path);
      try {
        for (const [name, info] of f.tensors) {
          const data = ['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)
            ? f.readFloat32(name)
            : ['I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'].includes(info.dtype)
              ? f.readInt32(name)
              : undefined;
          if (data && data.length !== info.shape.reduce((a, b) => a * b, 1))
            throw new Error(`tensor ${name} read ${data.length} values for shape [${info.shape.join(', ')}]`);
        }
      } finally {
        f.close();
      }
      return;
    }
    case 'index': {
      const ckpt = join(dir, 'ckpt');
      linkFolder(seeds.sharded, ckpt);
      const path = join(ckpt, 'model.safetensors.index.json');
      rmSync(path);
      writeFileSync(path, mutateIndex(rng, seeds.index, log));
      if (rng.chance(0.05)) swapKind(rng, rng.chance(0.5) ? path : join(ckpt, 'model-00002-of-00002.safetensors'), log);
      log.ready?.(log.what.join('; '));
      await forwardCheckpoint(ckpt);
      return;
    }
    case 'config': {
      const ckpt = join(dir, 'ckpt');
      mkdirSync(ckpt);
      linkSync(join(seeds.checkpoint, 'model.safetensors'), join(ckpt, 'model.safetensors'));
      writeFileSync(join(ckpt, 'config.json'), mutateJsonFile(rng, seeds.config, log));
      if (rng.chance(0.02)) swapKind(rng, join(ckpt, 'config.json'), log);
      log.ready?.(log.what.join('; '));
      await forwardCheckpoint(ckpt);
      return;
    }
    case 'tokenizer': {
      const tok = join(dir, 'tok');
      mkdirSync(tok);
      const which = rng.chance(0.8) ? 'tokenizer.json' : 'tokenizer_config.json';
      writeFileSync(
        join(tok, 'tokenizer.json'),
        which === 'tokenizer.json' ? mutateJsonFile(rng, seeds.tokenizer, log) : seeds.tokenizer,
      );
      writeFileSync(
        join(tok, 'tokenizer_config.json'),
        which === 'tokenizer_config.json' ? mutateJsonFile(rng, seeds.tokenizerConfig, log) : seeds.tokenizerConfig,
      );
      if (rng.chance(0.02)) swapKind(rng, join(tok, which), log);
      log.ready?.(log.what.join('; '));
      const t = await loadTokenizer(tok);
      const enc = t.encode('The capital of France is [MASK]. Ünïcödé text, numbers 12345!', 'a second text');
      if (!enc.ids.every((id) => Number.isInteger(id)))
        throw new Error(`accepted, but encoding gave ids ${enc.ids.slice(0, 10).join(',')}`);
      t.decode(enc.ids);
      return;
    }
    case 'package': {
      const pkg = join(dir, 'model.mlpackage');
      linkFolder(seeds.package, pkg);
      mutatePackage(rng, seeds, pkg, log);
      log.ready?.(log.what.join('; '));
      const read = readMLPackage(pkg);
      const runner = new PackageRunner(read, pkg);
      const vocab = runner.vocabSize;
      const res = await runner.forward({ ids: IDS.map((id) => Math.min(id, Math.max(0, vocab - 1))) });
      for (const [name, t] of res.outputs) expectFinite(t.data, `output ${name}`);
      return;
    }
    case 'golden': {
      const path = join(dir, 'golden.safetensors');
      const m = rng.chance(0.6) ? mutateSafetensors(rng, seeds.golden, true) : mutateBytes(rng, seeds.golden, 400);
      log.what.push(m.what);
      writeFileSync(path, m.bytes);
      if (rng.chance(0.02)) swapKind(rng, path, log);
      log.ready?.(log.what.join('; '));
      for (const c of readGolden(path)) {
        if (c.inputIds.data.length !== c.inputIds.shape[0] * c.inputIds.shape[1])
          throw new Error('accepted, but input_ids do not fill their shape');
      }
      return;
    }
  }
}

/** The header of a safetensors file as text and the data after it. */
function splitSafetensors(bytes: Uint8Array): { header: string; data: Uint8Array } {
  const n = Number(Buffer.from(bytes.buffer, bytes.byteOffset, 8).readBigUInt64LE(0));
  return { header: Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8'), data: bytes.subarray(8 + n) };
}

function joinSafetensors(header: string, data: Uint8Array, lengthDelta = 0): Uint8Array {
  const text = Buffer.from(header, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Math.max(0, text.length + lengthDelta)));
  return concat(len, text, data);
}

/** Header-aware edits (offsets, shapes, dtypes, keys, metadata, length) or byte-level ones. */
export function mutateSafetensors(rng: Rng, seed: Uint8Array, golden = false): Mutated {
  const { header, data } = splitSafetensors(seed);
  if (rng.chance(0.3)) return mutateBytes(rng, seed, 8 + Buffer.byteLength(header));
  const json = JSON.parse(header) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
  const names = Object.keys(json).filter((k) => k !== '__metadata__');
  const name = rng.pick(names);
  const t = json[name]!;
  let what: string;
  let text: string | undefined;
  let body = data;
  let delta = 0;
  switch (rng.int(golden ? 10 : 9)) {
    case 0: {
      const i = rng.int(2);
      const v = rng.pick([
        t.data_offsets[i]! + 1,
        t.data_offsets[i]! - 1,
        0,
        -1,
        2 ** 53,
        1e20,
        0.5,
        t.data_offsets[1 - i]!,
      ]);
      t.data_offsets[i] = v;
      what = `${name}.data_offsets[${i}] = ${v}`;
      break;
    }
    case 1: {
      const v = rng.pick([0, 1, -1, 2 ** 31, 2 ** 40, 2 ** 62, 3, 1.5]);
      if (rng.chance(0.5) && t.shape.length > 0) t.shape[rng.int(t.shape.length)] = v;
      else t.shape.push(v);
      what = `${name}.shape = [${t.shape.join(', ')}]`;
      break;
    }
    case 2: {
      const v = rng.pick([
        'F32',
        'F16',
        'BF16',
        'F64',
        'I64',
        'I32',
        'I8',
        'U8',
        'BOOL',
        'F4',
        'F8_E4M3',
        'U64',
        'C64',
        'f32',
        '__proto__',
        'constructor',
        '',
      ]);
      t.dtype = v;
      what = `${name}.dtype = ${v}`;
      break;
    }
    case 3: {
      text = JSON.stringify(json).replace(`"${name}":`, `"${name}":${JSON.stringify(t)},"${name}":`);
      what = `duplicate key ${name}`;
      break;
    }
    case 4: {
      const v = rng.pick<unknown>([{ format: 1 }, [], 'pt', { a: null }, { __proto__: 'x' }, null, { ok: 'yes' }]);
      Object.defineProperty(json, '__metadata__', { value: v, enumerable: true, configurable: true, writable: true });
      what = `__metadata__ = ${JSON.stringify(v)}`;
      break;
    }
    case 5: {
      delta = rng.pick([-1, 1, -8, 8, 1000]);
      what = `header length ${delta > 0 ? '+' : ''}${delta}`;
      break;
    }
    case 6: {
      const cut = rng.int(data.length + 1);
      body = rng.chance(0.5) ? data.subarray(0, cut) : concat(data, new Uint8Array(1 + rng.int(16)));
      what = `data ${body.length} bytes instead of ${data.length}`;
      break;
    }
    case 7: {
      const depth = rng.pick([200, 10_000]);
      text = JSON.stringify(json).replace(
        `"shape":${JSON.stringify(t.shape)}`,
        `"shape":${'['.repeat(depth)}1${']'.repeat(depth)}`,
      );
      what = `${name}.shape nested ${depth} deep`;
      break;
    }
    case 8: {
      const key = rng.pick(['__proto__', 'constructor', 'toString', 'x'.repeat(1000), '']);
      Object.defineProperty(json, key, { value: { ...t }, enumerable: true, configurable: true, writable: true });
      what = `add tensor "${key.slice(0, 20)}"`;
      break;
    }
    default: {
      // Golden keys: a case or key renamed to an odd name.
      const odd = rng.pick(['__proto__', 'constructor', 'toString', '', 'x.y']);
      const [c, k] = name.includes('.')
        ? [name.slice(0, name.lastIndexOf('.')), name.slice(name.lastIndexOf('.') + 1)]
        : ['', name];
      const renamed = rng.chance(0.5) ? `${odd}.${k}` : `${c}.${odd}`;
      Object.defineProperty(json, renamed, { value: t, enumerable: true, configurable: true, writable: true });
      delete json[name];
      what = `rename ${name} -> ${renamed}`;
    }
  }
  return { bytes: joinSafetensors(text ?? JSON.stringify(json), body, delta), what };
}

/** The index with its weight map edited: odd shard names (paths outside the folder), odd keys, odd types. */
function mutateIndex(rng: Rng, text: string, log: CaseLog): Uint8Array {
  if (rng.chance(0.4)) {
    const json = JSON.parse(text) as { weight_map: Record<string, string> };
    const names = Object.keys(json.weight_map);
    const name = rng.pick(names);
    const shard = rng.pick([
      '../elsewhere/shard.safetensors',
      '../../etc/passwd',
      '/etc/passwd',
      '/dev/zero',
      'model-00001-of-00002.safetensors/',
      './model-00001-of-00002.safetensors',
      'missing.safetensors',
      '',
      '.',
      'config.json',
      'model.safetensors.index.json',
      '__proto__',
    ]);
    if (rng.chance(0.7)) json.weight_map[name] = shard;
    else
      Object.defineProperty(json.weight_map, rng.pick(['__proto__', 'constructor', 'toString']), {
        value: rng.chance(0.5) ? shard : json.weight_map[name],
        enumerable: true,
      });
    log.what.push(`weight_map edit: ${name} -> ${shard}`);
    return Buffer.from(JSON.stringify(json));
  }
  return mutateJsonFile(rng, text, log);
}

/** Manifest edits, model.mlmodel byte flips, weight.bin header and blob edits, file kind swaps. */
function mutatePackage(rng: Rng, seeds: Seeds, pkg: string, log: CaseLog): void {
  const coreml = join(pkg, 'Data', 'com.apple.CoreML');
  const replace = (path: string, bytes: Uint8Array): void => {
    rmSync(path, { force: true });
    writeFileSync(path, bytes);
  };
  const k = rng.int(12);
  if (k >= 10) {
    replace(join(coreml, 'model.mlmodel'), mutateProgram(rng, seeds.model, log));
  } else if (k <= 1) {
    replace(join(pkg, 'Manifest.json'), mutateManifest(rng, seeds.manifest, log));
  } else if (k <= 5) {
    const m = mutateBytes(rng, seeds.model);
    log.what.push(`model.mlmodel: ${m.what}`);
    replace(join(coreml, 'model.mlmodel'), m.bytes);
  } else if (k <= 8) {
    const w = Uint8Array.from(seeds.weights);
    const view = Buffer.from(w.buffer);
    if (rng.chance(0.3)) {
      const field = rng.pick([0, 4]);
      const v = rng.pick([0, 1, 3, 0xffffffff, 1000]);
      view.writeUInt32LE(v, field);
      log.what.push(`weight.bin header u32 at ${field} = ${v}`);
    } else if (rng.chance(0.8)) {
      const blob = rng.pick(seeds.blobs);
      const field = rng.pick([0, 4, 8, 16, 24]);
      const v = rng.pick([
        0n,
        1n,
        2n,
        7n,
        14n,
        99n,
        0xdeadbeefn,
        2n ** 32n - 1n,
        2n ** 53n,
        2n ** 63n,
        BigInt(seeds.weights.length),
        BigInt(seeds.weights.length + 64),
      ]);
      if (field < 8) view.writeUInt32LE(Number(v & 0xffffffffn), field + blob);
      else view.writeBigUInt64LE(v, field + blob);
      log.what.push(`blob at ${blob} field ${field} = ${v}`);
    } else {
      const m = mutateBytes(rng, w, 256);
      log.what.push(`weight.bin: ${m.what}`);
      replace(join(coreml, 'weights', 'weight.bin'), m.bytes);
      return;
    }
    replace(join(coreml, 'weights', 'weight.bin'), w);
  } else {
    const path = rng.pick([
      join(pkg, 'Manifest.json'),
      join(coreml, 'model.mlmodel'),
      join(coreml, 'weights', 'weight.bin'),
      join(coreml, 'weights'),
    ]);
    swapKind(rng, path, log);
  }
}

/** Structure-aware edits of model.mlmodel: its metadata, an op's type, an input's dimensions, the outputs. */
function mutateProgram(rng: Rng, bytes: Uint8Array, log: CaseLog): Uint8Array {
  const m = decodeModel(bytes, 'model.mlmodel');
  const fn = Object.values(m.mlProgram?.functions ?? {})[0];
  const block = fn ? Object.values(fn.block_specializations ?? {})[0] : undefined;
  const odd = rng.pick<string>([
    '__proto__',
    'constructor',
    'toString',
    '',
    'seqcls',
    'mlm',
    'none',
    'embedding',
    '[1e400]',
    '{"pad":-1,"cls":0,"sep":0}',
    '{"pad":99999,"cls":0,"sep":0}',
    '["a"]',
    '[]',
    'null',
    '1e12',
    '-1',
    '{',
  ]);
  switch (rng.int(4)) {
    case 0: {
      const key = rng.pick([
        'head',
        'labels',
        'special_token_ids',
        'num_layers',
        'sequence_lengths',
        '__proto__',
        'modernbert-ane.symbols',
        'modernbert-ane.taps',
      ]);
      const userDefined = { ...(m.description?.metadata?.userDefined ?? {}) };
      Object.defineProperty(userDefined, key, { value: odd, enumerable: true, configurable: true, writable: true });
      m.description = { ...m.description, metadata: { ...m.description?.metadata, userDefined } };
      log.what.push(`metadata ${key} = ${odd}`);
      break;
    }
    case 1: {
      const ops = block?.operations ?? [];
      const op = ops.length > 0 ? rng.pick(ops) : undefined;
      if (op)
        op.type = rng.pick([
          '__proto__',
          'constructor',
          'toString',
          'hasOwnProperty',
          '',
          'const',
          'gather',
          'not_an_op',
        ]);
      log.what.push(`op ${op?.outputs?.[0]?.name ?? '?'} type = ${op?.type ?? '?'}`);
      break;
    }
    case 2: {
      const input = fn?.inputs?.length ? rng.pick(fn.inputs) : undefined;
      const dims = input?.type?.tensorType?.dimensions;
      const size = rng.pick([0, 1, 2 ** 31, 2 ** 40, 2 ** 53, 3]);
      if (dims && dims.length > 0) dims[rng.int(dims.length)] = { constant: { size } };
      log.what.push(`input ${input?.name ?? '?'} dim = ${size}`);
      break;
    }
    default: {
      if (block)
        block.outputs = rng.pick([
          [],
          ['input_ids'],
          ['__proto__'],
          [...(block.outputs ?? []), ...(block.outputs ?? [])],
        ]);
      log.what.push(`block outputs = ${JSON.stringify(block?.outputs)}`);
    }
  }
  return encodeModel(m);
}

function mutateManifest(rng: Rng, text: string, log: CaseLog): Uint8Array {
  if (rng.chance(0.5)) {
    const m = JSON.parse(text) as { rootModelIdentifier: string; itemInfoEntries: Record<string, { path: string }> };
    const ids = Object.keys(m.itemInfoEntries);
    if (rng.chance(0.5)) {
      m.rootModelIdentifier = rng.pick(['constructor', '__proto__', 'toString', '', ids[1] ?? 'x']);
      log.what.push(`rootModelIdentifier = ${m.rootModelIdentifier}`);
    } else {
      const id = rng.pick(ids);
      m.itemInfoEntries[id]!.path = rng.pick([
        '../../etc',
        '/etc/passwd',
        'com.apple.CoreML/weights',
        'com.apple.CoreML',
        '',
        'com.apple.CoreML/model.mlmodel/x',
        '../Manifest.json',
      ]);
      log.what.push(`item ${id}.path = ${m.itemInfoEntries[id]!.path}`);
    }
    return Buffer.from(JSON.stringify(m));
  }
  return mutateJsonFile(rng, text, log);
}

/** Whether an error is a clear one: a ModernBertError with a non-empty one-line message. */
export function isClearError(e: unknown): boolean {
  return e instanceof ModernBertError && e.message.trim() !== '' && !e.message.includes('\n');
}
