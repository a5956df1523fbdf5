// Opening what the user names as MODEL: a Hugging Face checkpoint folder or a Core ML package, or the
// built-in default model when nothing is named.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readMLPackage, type ReadPackageResult } from '../coreml/mil-read.js';
import { TOKENIZER_ITEM_PATH } from '../coreml/package.js';
import { BucketRunner, PackageRunner } from './package-runner.js';
import { bodyHash } from '../coreml/body-hash.js';
import { META, packageInfo } from '../coreml/package-info.js';
import { ModernBertError } from '../errors.js';
import { fileURLToPath } from 'node:url';
import type { ModernBertConfig } from '../model/config.js';
import { Engine } from './engine.js';
import type { ExecutorFactory, ModelIds, Runner } from './runner.js';
import { loadCheckpoint, type Checkpoint, type EmbeddingSpec } from '../model/checkpoint.js';
import type { HubSource } from '../hub/id.js';
import { resolveModel, type HubOptions } from '../hub/resolve.js';
import { defaultHead, type NormStyle, type OutputHead } from '../model/options.js';
import type { Precision } from '../runtime/numerics.js';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer.js';
import type { WeightSource } from '../io/weights.js';

/** The built-in default model shipped in the package (a small trained masked LM). */
export const DEFAULT_MODEL = fileURLToPath(new URL('../../models/mini-trained', import.meta.url));

export interface LoadedModel {
  path: string;
  /** The Hub id and commit it came from, for a Hub model (or a snapshot folder of the Hugging Face cache). */
  source?: HubSource;
  kind: 'checkpoint' | 'package';
  runner: Runner;
  head: OutputHead;
  labels: string[];
  /** Longest input the model takes. */
  maxLen: number;
  /** Texts per window of a package converted with --pack (checkpoints pack any number). */
  pack?: number;
  config?: ModernBertConfig;
  /** A checkpoint's sentence-transformers pooling, when it has one. */
  embedding?: EmbeddingSpec;
  /** Token-id facts that random inputs and padding need. */
  ids: ModelIds;
  /** Element types of the stored weights. */
  dtypes: string[];
  weights?: WeightSource;
  /** The package as read, for packages. */
  pkg?: ReadPackageResult;
  tokenizer?: Tokenizer;
  close(): void;
}

export interface OpenOptions extends HubOptions {
  precision?: Precision;
  norm?: NormStyle;
  /** A tokenizer.json, or a folder with one, for packages that do not carry one (or to use instead of the model's). */
  tokenizer?: string;
  /** A head package of `convert --split` to run on the package's hidden states (the package is then its body). */
  headPackage?: string;
  /** The function of a multifunction package to run (default: its default function; for buckets, a head name picks that head's buckets). */
  function?: string;
  /** What runs the graphs (runtime-choice.ts executorFor); our interpreter when absent. */
  executor?: ExecutorFactory;
}

/** True when a path names a Core ML package rather than a checkpoint folder. */
export function isPackagePath(path: string): boolean {
  return /\.mlpackage\/?$/.test(path) || existsSync(`${path}/Manifest.json`);
}

/** Where conversion puts the tokenizer inside a package (a manifest item of its own). */
const PACKAGE_TOKENIZER_DIR = join('Data', TOKENIZER_ITEM_PATH);

/**
 * Opens a checkpoint folder, a Core ML package or a Hugging Face Hub model (`org/name`, `org/name@revision`,
 * found in the Hugging Face cache or downloaded into it), or the default model when `name` is undefined.
 */
export async function openModel(name: string | undefined, o: OpenOptions = {}): Promise<LoadedModel> {
  if (name === undefined && o.revision !== undefined)
    throw new ModernBertError('BAD_ARGUMENT', '`revision` picks a revision of a Hub id: name the model (org/name)');
  const resolved = name === undefined ? undefined : await resolveModel(name, o);
  const path = resolved?.path;
  const source = resolved?.source ? { source: resolved.source } : {};
  if (path !== undefined && isPackagePath(path)) return { ...(await openPackage(path, o)), ...source };
  if (o.headPackage !== undefined)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`headPackage\` runs a head on a body package (convert --split); ${path ?? 'the built-in model'} is a checkpoint`,
    );
  if (o.function !== undefined)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`function\` picks a function of a multifunction package; ${path ?? 'the built-in model'} is a checkpoint`,
    );
  const dir = path ?? DEFAULT_MODEL;
  const ckpt = loadCheckpoint(dir);
  if (resolved?.source) ckpt.source = resolved.source;
  const engine = new Engine(ckpt, { precision: o.precision, norm: o.norm }, o.executor);
  return {
    path: dir,
    ...source,
    kind: 'checkpoint',
    runner: engine,
    head: defaultHead(ckpt),
    labels: ckpt.config.labels,
    maxLen: ckpt.config.maxPositions,
    config: ckpt.config,
    ...(ckpt.embedding ? { embedding: ckpt.embedding } : {}),
    ids: {
      vocabSize: ckpt.config.vocabSize,
      maxLen: ckpt.config.maxPositions,
      clsTokenId: ckpt.config.clsTokenId,
      sepTokenId: ckpt.config.sepTokenId,
      special: [ckpt.config.padTokenId],
    },
    dtypes: ckpt.storedDtypes,
    weights: ckpt.weights,
    tokenizer: o.tokenizer
      ? await loadTokenizer(o.tokenizer)
      : ckpt.tokenizerPath
        ? await loadTokenizer(dirname(ckpt.tokenizerPath))
        : undefined,
    close: () => ckpt.close(),
  };
}

/** Opens a checkpoint folder or a Hub model (as openModel), for conversion and export; the caller closes it. */
export async function openCheckpoint(name: string, o: HubOptions = {}): Promise<Checkpoint> {
  const { path, source } = await resolveModel(name, o);
  const ckpt = loadCheckpoint(path);
  if (source) ckpt.source = source;
  return ckpt;
}

/** The runner of a package: one function, a body with a head package, or the shape buckets of one head. */
function packageRunner(path: string, o: OpenOptions): PackageRunner | BucketRunner {
  const precision = o.precision ?? 'fp32';
  const first = readMLPackage(path);
  const functions = first.functions.length > 1 ? packageInfo(first, path).functions : {};
  const bucketsOf = (head: string) =>
    Object.entries(functions)
      .filter(([, f]) => f.head === head && f.seq_len !== undefined)
      .map(([name, f]) => ({ name, seqLen: f.seq_len! }));
  // A head name picks that head's buckets; otherwise the name must be a function's (readMLPackage says which exist).
  const byHead = o.function !== undefined && !first.functions.includes(o.function) ? bucketsOf(o.function) : [];
  const pkg =
    o.function !== undefined && byHead.length === 0 && o.function !== first.functionName
      ? readMLPackage(path, o.function)
      : byHead.length > 0
        ? readMLPackage(path, byHead[0]!.name)
        : first;
  if (o.headPackage !== undefined) {
    if (!existsSync(o.headPackage))
      throw new ModernBertError('FILE_NOT_FOUND', `head package ${o.headPackage} does not exist`, {
        path: o.headPackage,
      });
    const head = readMLPackage(o.headPackage);
    const recorded = head.description.metadata.userDefined?.[META.bodyHash];
    if (recorded === undefined)
      throw new ModernBertError(
        'BAD_INPUT',
        `\`headPackage\` ${o.headPackage} records no body (metadata "${META.bodyHash}"); convert --split writes heads that do`,
        { path: o.headPackage },
      );
    if (recorded !== bodyHash(path))
      throw new ModernBertError(
        'BAD_INPUT',
        `\`headPackage\` ${o.headPackage} belongs to another body than ${path} (its weights or program differ): convert the head with this body (convert --split)`,
        { path: o.headPackage },
      );
    return new PackageRunner(pkg, path, precision, o.executor, { pkg: head, path: o.headPackage });
  }
  const runner = new PackageRunner(pkg, path, precision, o.executor);
  const buckets = byHead.length > 0 ? byHead : o.function === undefined ? bucketsOf(runner.info.head) : [];
  if (buckets.length > 1)
    return new BucketRunner(
      path,
      buckets,
      (fn) => new PackageRunner(readMLPackage(path, fn), path, precision, o.executor),
      runner,
    );
  return runner;
}

async function openPackage(path: string, o: OpenOptions): Promise<LoadedModel> {
  if (!existsSync(path)) throw new ModernBertError('FILE_NOT_FOUND', `package ${path} does not exist`, { path });
  const runner = packageRunner(path, o);
  const pkg = runner instanceof PackageRunner ? runner.pkg : readMLPackage(path);
  const own = join(path, PACKAGE_TOKENIZER_DIR);
  const tokDir = o.tokenizer ?? own;
  const hasTok = o.tokenizer !== undefined || existsSync(join(own, 'tokenizer.json'));
  return {
    path,
    kind: 'package',
    runner,
    pkg,
    head: runner.info.head,
    labels: runner.info.labels,
    maxLen: runner.maxLen,
    ...(runner.info.pack === undefined ? {} : { pack: runner.info.pack }),
    ids: {
      vocabSize: runner.vocabSize,
      maxLen: runner.maxLen,
      clsTokenId: runner.info.special.cls,
      sepTokenId: runner.info.special.sep,
      special: [runner.info.special.pad],
    },
    dtypes: [...new Set([...pkg.graph.consts.values()].map((c) => c.type.dtype))],
    tokenizer: hasTok ? await loadTokenizer(tokDir) : undefined,
    close: () => {},
  };
}
