// Synthetic ModernBERT checkpoints: full-size weights from the portable PRNG, either served in memory as
// a WeightSource or written as a Hugging Face folder (config.json + float32 model.safetensors), tensor
// by tensor, so ModernBERT-base (150M parameters) costs one tensor of memory.

import { existsSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig, type ModernBertConfig } from '../model/config.js';
import { ModernBertError } from '../errors.js';
import { makeFolders } from '../io/fs-errors.js';
import { readJson } from '../model/checkpoint.js';
import { checkFileOutput, writeOutput, type CheckedOutput } from '../io/output.js';
import { writeSafetensors } from '../io/safetensors-writer.js';
import { sharedFloat32, type Tensor, type WeightSource } from '../io/weights.js';
import { applyOverride, checkOverride, type Override } from './overrides.js';
import { SYNTH_PRESETS, type SynthPreset } from './presets.js';
import { synthFill } from '../numeric/prng.js';
import { synthRecipe, type RecipeEntry } from './recipe.js';

const EMBEDDINGS = 'model.embeddings.tok_embeddings.weight';

/** The weights of a synthetic checkpoint, computed when asked (the tied decoder reads the embeddings). */
export class SynthWeights implements WeightSource {
  /** The stored tensors, in checkpoint order. */
  readonly recipe: readonly RecipeEntry[];
  private readonly entries: Map<string, RecipeEntry>;
  private readonly overrides: Map<string, Override[]>;
  private readonly tiedDecoder: boolean;

  /** Throws BAD_ARGUMENT if an override names no stored tensor or falls outside it. */
  constructor(
    readonly config: ModernBertConfig,
    overrides: readonly Override[] = [],
  ) {
    this.recipe = synthRecipe(config);
    this.entries = new Map(this.recipe.map((e) => [e.name, e]));
    this.tiedDecoder = config.head === 'mlm' && config.tieWordEmbeddings;
    this.overrides = new Map();
    for (const o of overrides) {
      const entry = this.entries.get(o.name);
      if (!entry) {
        const hint =
          o.name === 'decoder.weight' && this.tiedDecoder ? ` (the decoder is tied: override ${EMBEDDINGS})` : '';
        throw new ModernBertError(
          'BAD_ARGUMENT',
          `override names "${o.name}", which this checkpoint does not store${hint}`,
          { tensor: o.name },
        );
      }
      checkOverride(o, entry.shape);
      this.overrides.set(o.name, [...(this.overrides.get(o.name) ?? []), o]);
    }
  }

  has(name: string): boolean {
    return this.entries.has(this.storedName(name));
  }

  get(name: string): Tensor {
    const e = this.entry(name);
    return { shape: [...e.shape], data: this.fill(e, sharedFloat32(numel(e.shape))) };
  }

  shape(name: string): number[] {
    return [...this.entry(name).shape];
  }

  names(): string[] {
    const names = this.recipe.map((e) => e.name);
    return this.tiedDecoder ? [...names, 'decoder.weight'] : names;
  }

  /** Fills `out` (numel of the tensor) with tensor `e`'s values, overrides applied. */
  fill(e: RecipeEntry, out: Float32Array): Float32Array {
    synthFill(out, e.name, e.base, e.amp);
    for (const o of this.overrides.get(e.name) ?? []) applyOverride(out, e.shape, o);
    return out;
  }

  storedName(name: string): string {
    return name === 'decoder.weight' && this.tiedDecoder ? EMBEDDINGS : name;
  }

  private entry(name: string): RecipeEntry {
    const e = this.entries.get(this.storedName(name));
    if (!e) throw new ModernBertError('BAD_CONFIG', `weight "${name}" is missing`, { tensor: name });
    return e;
  }
}

/**
 * The config.json object of a synthetic checkpoint: a preset name (`base`, `large`) or the path of a
 * config.json (or of a folder holding one). A config without `architectures` gets a masked-LM head.
 */
export function synthConfigJson(source: string): Record<string, unknown> {
  if (Object.hasOwn(SYNTH_PRESETS, source)) return { ...SYNTH_PRESETS[source as SynthPreset] };
  if (!existsSync(source)) {
    throw new ModernBertError(
      'FILE_NOT_FOUND',
      `"${source}" is neither a preset (${Object.keys(SYNTH_PRESETS).join(', ')}) nor an existing config.json`,
      { path: source },
    );
  }
  const path = statSync(source).isDirectory() ? join(source, 'config.json') : source;
  const json = readJson(path);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModernBertError('BAD_CONFIG', `${path}: not a JSON object`, { file: path });
  }
  return { architectures: ['ModernBertForMaskedLM'], model_type: 'modernbert', ...json };
}

/** What writeSynthCheckpoint wrote. */
export interface SynthCheckpointInfo {
  config: ModernBertConfig;
  tensors: number;
  /** Bytes of tensor data in model.safetensors. */
  bytes: number;
}

/**
 * Writes a synthetic checkpoint folder (config.json, float32 model.safetensors) for a preset or
 * config path, with overrides applied; `onProgress` gets (bytes written, bytes in all) after each
 * tensor. Existing files are kept (OUTPUT_EXISTS) unless `overwrite` is set.
 */
export async function writeSynthCheckpoint(
  source: string,
  outDir: string,
  overrides: readonly Override[] = [],
  onProgress?: (done: number, total: number) => void,
  options: { overwrite?: boolean } = {},
): Promise<SynthCheckpointInfo> {
  const json = synthConfigJson(source);
  const config = parseConfig(json, source);
  const weights = new SynthWeights(config, overrides);

  // Both files are checked before any is written (io/output.ts): existing ones need `overwrite`, and neither may
  // be the config the preset was read from.
  const created = !existsSync(outDir);
  makeFolders(outDir);
  let outputs: { model: CheckedOutput; config: CheckedOutput };
  try {
    const request = {
      what: '--out',
      force: Boolean(options.overwrite),
      inputs: Object.hasOwn(SYNTH_PRESETS, source) ? [] : [source],
    };
    outputs = {
      model: checkFileOutput(join(outDir, 'model.safetensors'), request),
      config: checkFileOutput(join(outDir, 'config.json'), request),
    };
  } catch (e) {
    if (created) rmdirSync(outDir);
    throw e;
  }

  // One buffer, as large as the largest tensor, serves every tensor in turn (the writer is done with
  // each before asking for the next); fresh pages per tensor would cost more than the hashing.
  const scratch = new Float32Array(Math.max(0, ...weights.recipe.map((e) => numel(e.shape))));
  const tensors = weights.recipe.map((e) => ({
    name: e.name,
    dtype: 'F32' as const,
    shape: e.shape,
    data: () => weights.fill(e, scratch.subarray(0, numel(e.shape))),
  }));
  const metadata = {
    format: 'pt',
    synthetic: 'modernbert-ane portable PRNG (docs/FIXTURES.md)',
    overrides: JSON.stringify(overrides),
  };
  await writeSafetensors(outputs.model, tensors, { metadata, onProgress });
  writeOutput(outputs.config, `${JSON.stringify(json, null, 2)}\n`);
  const bytes = weights.recipe.reduce((sum, e) => sum + 4 * numel(e.shape), 0);
  return { config, tensors: tensors.length, bytes };
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
