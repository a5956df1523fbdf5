// Opening what the user names as MODEL: a Hugging Face checkpoint folder or a Core ML package, or the
// built-in default model when nothing is named.

import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModernBertConfig } from './config.js';
import { Engine } from './engine.js';
import type { Runner } from './eval/verify.js';
import { loadCheckpoint } from './io/checkpoint.js';
import { defaultHead, type NormStyle, type OutputHead } from './model.js';
import type { Precision } from './runtime/numerics.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';
import type { WeightSource } from './weights.js';

/** The built-in default model shipped in the package (a small trained masked LM). */
export const DEFAULT_MODEL = fileURLToPath(new URL('../models/mini-trained', import.meta.url));

export interface LoadedModel {
  path: string;
  kind: 'checkpoint' | 'package';
  runner: Runner;
  head: OutputHead;
  labels: string[];
  /** Longest input the model takes. */
  maxLen: number;
  config?: ModernBertConfig;
  /** Element types of the stored weights. */
  dtypes: string[];
  weights?: WeightSource;
  tokenizer?: Tokenizer;
  close(): void;
}

export interface OpenOptions {
  precision?: Precision;
  norm?: NormStyle;
}

/** True when a path names a Core ML package rather than a checkpoint folder. */
export function isPackagePath(path: string): boolean {
  return /\.mlpackage\/?$/.test(path) || existsSync(`${path}/Manifest.json`);
}

/** Opens a checkpoint folder (or the default model when `path` is undefined). */
export async function openModel(path: string | undefined, o: OpenOptions = {}): Promise<LoadedModel> {
  const dir = path ?? DEFAULT_MODEL;
  const ckpt = loadCheckpoint(dir);
  const engine = new Engine(ckpt, { precision: o.precision, norm: o.norm });
  return {
    path: dir,
    kind: 'checkpoint',
    runner: engine,
    head: defaultHead(ckpt),
    labels: ckpt.config.labels,
    maxLen: ckpt.config.maxPositions,
    config: ckpt.config,
    dtypes: ckpt.storedDtypes,
    weights: ckpt.weights,
    tokenizer: ckpt.tokenizerPath ? await loadTokenizer(dirname(ckpt.tokenizerPath)) : undefined,
    close: () => ckpt.close(),
  };
}
