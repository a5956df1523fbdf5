// A Hugging Face ModernBERT folder: config.json, model.safetensors (or shards listed in
// model.safetensors.index.json), optional tokenizer.json and sentence-transformers modules. Tensor shapes
// are checked against the config before any data is read; tensors are read one at a time when asked.

import { existsSync, lstatSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import { parseConfig, type ModernBertConfig } from './config.js';
import { ModernBertError } from '../errors.js';
import { assertFinite, type StoredTensor, type Tensor, type WeightSource } from '../io/weights.js';
import { brief, fileError, readJsonFile } from '../io/files.js';
import { READ_LIMITS } from '../io/limits.js';
import { SafetensorsFile } from '../io/safetensors.js';

/** Pooling of a sentence-transformers embedding model (1_Pooling/config.json, 2_Normalize). */
export interface EmbeddingSpec {
  pooling: 'mean' | 'cls';
  normalize: boolean;
}

/** Where a checkpoint came from on the Hugging Face Hub (src/hub/ finds and fetches it). */
export interface HubSource {
  /** The repository, `org/name`. */
  id: string;
  /** The branch, tag or commit the user asked for (`main` by default). */
  revision: string;
  /** The 40-hex commit that revision pointed to. */
  commit: string;
}

export interface Checkpoint {
  dir: string;
  config: ModernBertConfig;
  weights: WeightSource;
  /** Present when the folder is a sentence-transformers model. */
  embedding?: EmbeddingSpec;
  /** Path of tokenizer.json when the folder has one. */
  tokenizerPath?: string;
  /** dtype of the stored weights (F32, BF16, ...), for inspect. */
  storedDtypes: string[];
  /** Where it came from on the Hugging Face Hub, when it did (set by openCheckpoint). */
  source?: HubSource;
  close(): void;
}

/** Reads and parses a JSON file of at most `maxBytes` (a config's, unless told), with FILE_NOT_FOUND / CORRUPT_FILE errors naming it. */
export function readJson(path: string, maxBytes: number = READ_LIMITS.config): unknown {
  return readJsonFile(path, 'JSON file', maxBytes);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Opens a checkpoint folder and checks that config and weights agree. */
export function loadCheckpoint(dir: string): Checkpoint {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (e) {
    const err = fileError(e, dir, 'model folder');
    if (err.code === 'FILE_NOT_FOUND')
      throw new ModernBertError('FILE_NOT_FOUND', `model folder ${dir} does not exist`, { path: dir });
    throw err;
  }
  if (!isDir)
    throw new ModernBertError(
      'BAD_INPUT',
      `${dir} is not a folder (expected a Hugging Face model folder or an .mlpackage)`,
      { path: dir },
    );
  const configPath = join(dir, 'config.json');
  const rawConfig = readJson(configPath);
  if (!isObject(rawConfig))
    throw new ModernBertError('BAD_CONFIG', `${configPath}: not a JSON object`, { file: configPath });
  let config = parseConfig(rawConfig, configPath);

  const files = openWeightFiles(dir);
  try {
    const weights = new CheckpointWeights(files, config);
    // Without id2label or num_labels the classifier's shape gives the number of labels.
    if (
      (config.head === 'seqcls' || config.head === 'tokcls') &&
      rawConfig.id2label === undefined &&
      rawConfig.num_labels === undefined &&
      weights.has('classifier.weight')
    ) {
      const n = weights.shape('classifier.weight')[0]!;
      config = { ...config, labels: Array.from({ length: n }, (_, i) => `LABEL_${i}`) };
    }
    checkShapes(weights, config, dir);
    const tokenizerPath = existsSync(join(dir, 'tokenizer.json')) ? join(dir, 'tokenizer.json') : undefined;
    const storedDtypes = [...new Set(files.flatMap((f) => [...f.tensors.values()].map((t) => t.dtype)))];
    return {
      dir,
      config,
      weights,
      embedding: readEmbeddingSpec(dir),
      tokenizerPath,
      storedDtypes,
      close: () => files.forEach((f) => f.close()),
    };
  } catch (e) {
    files.forEach((f) => f.close());
    throw e;
  }
}

function openWeightFiles(dir: string): SafetensorsFile[] {
  const single = join(dir, 'model.safetensors');
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(single)) return [SafetensorsFile.open(single)];
  if (existsSync(index)) {
    const { entries, shards } = readIndex(index);
    const opened: SafetensorsFile[] = [];
    try {
      for (const s of shards) opened.push(SafetensorsFile.open(shardPath(dir, s, index)));
      // The index must describe the shards: a tensor listed in a shard that lacks it means a mixed-up folder.
      for (const [name, s] of entries) {
        const file = opened[shards.indexOf(s)]!;
        if (!file.tensors.has(name))
          throw new ModernBertError('CORRUPT_FILE', `${index} puts tensor "${name}" in ${s}, which does not hold it`, {
            file: index,
            tensor: name,
          });
      }
    } catch (e) {
      opened.forEach((f) => f.close());
      throw e;
    }
    return opened;
  }
  const hint = existsSync(join(dir, 'pytorch_model.bin'))
    ? ' (pytorch_model.bin is not supported: save with safe_serialization=True)'
    : '';
  throw new ModernBertError(
    'FILE_NOT_FOUND',
    `${dir} has no model.safetensors or model.safetensors.index.json${hint}`,
    { path: dir },
  );
}

/** The tensor -> shard entries of model.safetensors.index.json, and its shards (each named once). */
function readIndex(index: string): { entries: [string, string][]; shards: string[] } {
  const indexJson = readJson(index, READ_LIMITS.index);
  const map = isObject(indexJson) && Object.hasOwn(indexJson, 'weight_map') ? indexJson.weight_map : undefined;
  if (!isObject(map)) throw new ModernBertError('CORRUPT_FILE', `${index} has no "weight_map" object`, { file: index });
  const entries = Object.entries(map);
  const notShard = entries.find(([, s]) => typeof s !== 'string' || s === '');
  if (notShard)
    throw new ModernBertError(
      'CORRUPT_FILE',
      `${index}: weight_map gives ${brief(notShard[1])} as the shard of "${brief(notShard[0], 80)}"`,
      { file: index, tensor: notShard[0] },
    );
  return { entries: entries as [string, string][], shards: [...new Set(entries.map(([, s]) => s as string))] };
}

/**
 * The path of a shard named by the index, which must lie inside the checkpoint folder: absolute names
 * and ".." are refused before anything is looked up, and a symbolic link out of the folder after
 * resolving it, with the same message, so the error says nothing about files outside. The one place
 * outside that a link may lead is the blobs/ folder of a Hugging Face cache snapshot (inCacheBlobs).
 */
function shardPath(dir: string, name: string, index: string): string {
  const outside = (): ModernBertError =>
    new ModernBertError('CORRUPT_FILE', `${index} names shard ${brief(name, 80)}, which is not a file inside ${dir}`, {
      file: index,
      shard: name,
    });
  if (
    isAbsolute(name) ||
    name.includes('\\') ||
    name.split('/').some((part) => part === '..' || part === '') ||
    name.includes('\0')
  )
    throw outside();
  const path = join(dir, name);
  let real: string;
  let realDir: string;
  try {
    realDir = realpathSync(dir);
    real = realpathSync(path);
  } catch (e) {
    // A link whose target is missing: say no more than for a link out of the folder.
    let isLink = false;
    try {
      isLink = lstatSync(path).isSymbolicLink();
    } catch {
      // not even the link exists (or the name is too long): the first error says why
    }
    if (isLink) throw outside();
    throw fileError(e, path, 'shard');
  }
  if (!real.startsWith(realDir + sep) && !inCacheBlobs(realDir, real)) throw outside();
  return path;
}

/**
 * Whether `real` lies in the blobs/ folder of the Hugging Face cache repository whose snapshot is `realDir`
 * (`<repo>/snapshots/<commit>`), where huggingface_hub's links (and ours) point: `<repo>/blobs/<etag>`.
 */
function inCacheBlobs(realDir: string, real: string): boolean {
  const snapshots = dirname(realDir);
  if (basename(snapshots) !== 'snapshots' || !/^[0-9a-f]{40}$/.test(basename(realDir))) return false;
  const blobs = join(dirname(snapshots), 'blobs');
  return dirname(real) === blobs;
}

/** Checkpoint tensors under canonical names ("model." prefix, decoder tied to the embeddings). */
class CheckpointWeights implements WeightSource {
  private readonly where = new Map<string, { file: SafetensorsFile; stored: string }>();
  private readonly aliases = new Map<string, string>();

  constructor(files: SafetensorsFile[], config: ModernBertConfig) {
    for (const file of files) {
      for (const stored of file.tensors.keys()) {
        // ModernBertModel checkpoints (and sentence-transformers) store the body without "model.".
        const isBody =
          stored.startsWith('embeddings.') || stored.startsWith('layers.') || stored.startsWith('final_norm.');
        const name = isBody ? `model.${stored}` : stored;
        if (this.where.has(name))
          throw new ModernBertError('CORRUPT_FILE', `tensor "${name}" is stored twice`, { tensor: name });
        this.where.set(name, { file, stored });
      }
    }
    const emb = this.where.get('model.embeddings.tok_embeddings.weight');
    if (config.head === 'mlm' && !this.where.has('decoder.weight') && emb && config.tieWordEmbeddings) {
      this.where.set('decoder.weight', emb);
      this.aliases.set('decoder.weight', 'model.embeddings.tok_embeddings.weight');
    }
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  get(name: string): Tensor {
    const w = this.locate(name);
    const data = w.file.readFloat32(w.stored);
    // A NaN or infinite weight would only show up as `null` probabilities far downstream.
    assertFinite(data, w.stored, w.file.path);
    return { shape: [...w.file.info(w.stored).shape], data };
  }

  shape(name: string): number[] {
    const w = this.locate(name);
    return [...w.file.info(w.stored).shape];
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  storedName(name: string): string {
    return this.aliases.get(name) ?? name;
  }

  location(name: string): StoredTensor | undefined {
    const w = this.locate(name);
    return w.file.location(w.stored);
  }

  private locate(name: string): { file: SafetensorsFile; stored: string } {
    const w = this.where.get(name);
    if (!w) throw new ModernBertError('BAD_CONFIG', `the checkpoint has no tensor "${name}"`, { tensor: name });
    return w;
  }
}

/** The tensors (name and shape) that a config implies, in checkpoint order. */
export function expectedTensors(c: ModernBertConfig): Map<string, number[]> {
  const n = c.hidden;
  const out = new Map<string, number[]>();
  const norm = (prefix: string) => {
    out.set(`${prefix}.weight`, [n]);
    if (c.normBias) out.set(`${prefix}.bias`, [n]);
  };
  const linear = (prefix: string, rows: number, cols: number, bias: boolean) => {
    out.set(`${prefix}.weight`, [rows, cols]);
    if (bias) out.set(`${prefix}.bias`, [rows]);
  };
  out.set('model.embeddings.tok_embeddings.weight', [c.vocabSize, n]);
  norm('model.embeddings.norm');
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    if (i > 0) norm(`${p}.attn_norm`);
    linear(`${p}.attn.Wqkv`, 3 * n, n, c.attentionBias);
    linear(`${p}.attn.Wo`, n, n, c.attentionBias);
    norm(`${p}.mlp_norm`);
    linear(`${p}.mlp.Wi`, 2 * c.intermediate, n, c.mlpBias);
    linear(`${p}.mlp.Wo`, n, c.intermediate, c.mlpBias);
  }
  norm('model.final_norm');
  if (c.head !== 'none') {
    linear('head.dense', n, n, c.classifierBias);
    norm('head.norm');
  }
  if (c.head === 'mlm') {
    out.set('decoder.weight', [c.vocabSize, n]);
    if (c.decoderBias) out.set('decoder.bias', [c.vocabSize]);
  }
  if (c.head === 'seqcls' || c.head === 'tokcls') linear('classifier', c.labels.length, n, true);
  return out;
}

function checkShapes(weights: WeightSource, config: ModernBertConfig, dir: string): void {
  const expected = expectedTensors(config);
  for (const [name, shape] of expected) {
    if (!weights.has(name)) {
      throw new ModernBertError(
        'BAD_CONFIG',
        `${dir}: the config implies tensor "${name}" [${shape.join(', ')}], which the weights do not have`,
        { tensor: name },
      );
    }
    const got = weights.shape(name);
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new ModernBertError(
        'SHAPE_MISMATCH',
        `${dir}: tensor "${name}" has shape [${got.join(', ')}] but the config implies [${shape.join(', ')}]`,
        { tensor: name, got, expected: shape },
      );
    }
  }
  const extra = weights.names().filter((k) => !expected.has(k));
  if (extra.length > 0) {
    throw new ModernBertError(
      'BAD_CONFIG',
      `${dir}: the weights hold tensor${extra.length > 1 ? 's' : ''} that the config does not describe: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', ...' : ''}`,
      { tensors: extra },
    );
  }
}

/** A sentence-transformers module: its class name and, for a Pooling module, its config's path in the folder. */
interface SentenceModule {
  type: string;
  /** `<module folder>/config.json`, relative to the checkpoint folder (Pooling modules only). */
  config?: string;
}

/** The modules that modules.json lists, or undefined when the folder has none (not a sentence-transformers model). */
function readModules(dir: string): SentenceModule[] | undefined {
  const modulesPath = join(dir, 'modules.json');
  if (!existsSync(modulesPath)) return undefined;
  const modules = readJson(modulesPath);
  if (!Array.isArray(modules))
    throw new ModernBertError('CORRUPT_FILE', `${modulesPath} is not a list of modules`, { file: modulesPath });
  return (modules as unknown[]).map((m) => {
    const type = isObject(m) && typeof m.type === 'string' ? m.type : '';
    if (!type.endsWith('.Pooling')) return { type };
    const sub = isObject(m) && m.path !== undefined ? m.path : '1_Pooling';
    if (typeof sub !== 'string' || isAbsolute(sub) || sub.split(/[\\/]/).includes('..')) {
      throw new ModernBertError(
        'CORRUPT_FILE',
        `${modulesPath}: the Pooling module's path ${brief(sub)} is not a folder inside ${dir}`,
        { file: modulesPath },
      );
    }
    return { type, config: [...sub.split(/[\\/]/).filter((p) => p !== '' && p !== '.'), 'config.json'].join('/') };
  });
}

function readEmbeddingSpec(dir: string): EmbeddingSpec | undefined {
  const modules = readModules(dir);
  if (!modules) return undefined;
  const modulesPath = join(dir, 'modules.json');
  let pooling: EmbeddingSpec['pooling'] | undefined;
  let normalize = false;
  for (const { type, config } of modules) {
    if (config !== undefined) {
      const cfgPath = join(dir, config);
      const p = readJson(cfgPath);
      if (!isObject(p)) throw new ModernBertError('CORRUPT_FILE', `${cfgPath} is not a JSON object`, { file: cfgPath });
      const modes = Object.entries(p)
        .filter(([k, v]) => k.startsWith('pooling_mode') && v === true)
        .map(([k]) => k);
      if (modes.length !== 1 || (modes[0] !== 'pooling_mode_mean_tokens' && modes[0] !== 'pooling_mode_cls_token')) {
        throw new ModernBertError(
          'UNSUPPORTED',
          `${cfgPath}: pooling ${modes.join(' + ') || '(none)'} is not supported (mean tokens or cls token)`,
          { file: cfgPath },
        );
      }
      pooling = modes[0] === 'pooling_mode_mean_tokens' ? 'mean' : 'cls';
    } else if (type.endsWith('.Normalize')) {
      normalize = true;
    } else if (!type.endsWith('.Transformer')) {
      throw new ModernBertError(
        'UNSUPPORTED',
        `${modulesPath}: sentence-transformers module ${type} is not supported (Transformer, Pooling, Normalize)`,
        { file: modulesPath },
      );
    }
  }
  if (!pooling)
    throw new ModernBertError('CORRUPT_FILE', `${modulesPath} lists no Pooling module`, { file: modulesPath });
  return { pooling, normalize };
}

/**
 * The files of a checkpoint folder that loading it (with its tokenizer) reads at its top; convert also
 * copies special_tokens_map.json into a package. A Hub download fetches these and referencedFiles', nothing else.
 */
export const CHECKPOINT_FILES = [
  'config.json',
  'model.safetensors',
  'model.safetensors.index.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'modules.json',
] as const;

/**
 * The further files that a folder's own top-level files name: the shards of model.safetensors.index.json
 * (when there is no model.safetensors) and the Pooling config of a sentence-transformers model, as
 * `/`-separated paths inside the folder.
 */
export function referencedFiles(dir: string): string[] {
  const index = join(dir, 'model.safetensors.index.json');
  const shards = !existsSync(join(dir, 'model.safetensors')) && existsSync(index) ? readIndex(index).shards : [];
  const pooling = (readModules(dir) ?? []).flatMap((m) => (m.config === undefined ? [] : [m.config]));
  return [...shards, ...pooling];
}
