// What a Core ML package says about itself: the metadata keys that conversion writes, and the head,
// labels, special ids and lengths read back from them (checked against the program), with defaults for
// packages from elsewhere.

import { CONFIG_LIMITS } from '../config.js';
import { ModernBertError } from '../errors.js';
import { brief } from '../io/files.js';
import type { OutputHead } from '../model.js';
import type { ReadPackageResult } from './mil-read.js';

/** Metadata keys (userDefined) that conversion writes and the runner reads. */
export const META = {
  converter: 'converter',
  source: 'source_model',
  architecture: 'architecture',
  head: 'head',
  labels: 'labels',
  specialIds: 'special_token_ids',
  seqLens: 'sequence_lengths',
  rotation: 'rotation',
  norm: 'norm',
  weights: 'weights',
  numLayers: 'num_layers',
  fidelity: 'fidelity',
  rotationLearning: 'rotation_learning',
  compression: 'compression',
} as const;

export interface SpecialIds {
  pad: number;
  cls: number;
  sep: number;
  mask?: number;
}

/** What a package says about itself (or what we assume for packages from elsewhere). */
export interface PackageInfo {
  seqLens: number[];
  /** Whether the package takes an additive `mask` input (else padding is read from the pad id). */
  maskInput: boolean;
  head: OutputHead;
  labels: string[];
  special: SpecialIds;
  numLayers: number;
  /** Name of the output the head produces. */
  output: string;
  metadata: Record<string, string>;
}

/** Our metadata's JSON values: absent is the fallback, present but not JSON a corrupt package. */
function parseJson(text: string | undefined, key: string, path: string): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ModernBertError('CORRUPT_FILE', `${path}: metadata "${key}" is not JSON: ${brief(text)}`, { path, key });
  }
}

const HEADS: readonly OutputHead[] = ['mlm', 'seqcls', 'tokcls', 'none', 'embedding'];

/** The longest input a package may declare (as config.json's max_position_embeddings bound). */
const MAX_SEQ_LEN = CONFIG_LIMITS.max_position_embeddings;

/**
 * Reads what the runner needs from a package's description and metadata, and checks the metadata
 * against the program: the head must be the one its output computes, the labels must match the
 * classifier's width, the special ids must lie in the embedding table.
 */
export function packageInfo(pkg: ReadPackageResult, path: string): PackageInfo {
  const corrupt = (msg: string, key?: string): never => {
    throw new ModernBertError('CORRUPT_FILE', `${path}: ${msg}`, { path, ...(key ? { key } : {}) });
  };
  const meta: Record<string, string> = pkg.description.metadata.userDefined ?? {};
  const get = (key: string): string | undefined => (Object.hasOwn(meta, key) ? meta[key] : undefined);
  const ids = pkg.description.inputs.find((f) => f.name === 'input_ids');
  if (!ids) throw new ModernBertError('UNSUPPORTED', `${path}: the package has no "input_ids" input, so it is not a ModernBERT package this tool can run`, { path });
  const shapes = ids.enumeratedShapes ?? (ids.shape.length === 2 ? [ids.shape] : []);
  for (const s of shapes) {
    if (s.length !== 2 || s[0] !== 1 || !Number.isSafeInteger(s[1]) || s[1]! < 1 || s[1]! > MAX_SEQ_LEN) {
      corrupt(`"input_ids" has shape [${s.join(', ')}]; a ModernBERT package takes (1, S) with S in 1..${MAX_SEQ_LEN}`);
    }
  }
  const seqLens = [...new Set(shapes.map((s) => s[1]!))].sort((a, b) => a - b);
  if (seqLens.length === 0) throw new ModernBertError('UNSUPPORTED', `${path}: "input_ids" has no fixed or enumerated length`, { path });
  const out = pkg.description.outputs.map((f) => f.name);
  const output = ['logits', 'embedding', 'hidden_states'].find((n) => out.includes(n));
  if (!output) throw new ModernBertError('UNSUPPORTED', `${path}: outputs ${out.join(', ')} are none of logits, embedding, hidden_states`, { path });
  const shape = outputShape(pkg, output);
  const rank = shape.length;
  // Packages from elsewhere: a (1, V, 1, S) logits output is a masked LM, a (1, L) one a classifier.
  const guessed: OutputHead = output === 'embedding' ? 'embedding' : output === 'hidden_states' ? 'none' : rank === 2 ? 'seqcls' : 'mlm';
  const headMeta = get(META.head);
  if (headMeta !== undefined && !HEADS.includes(headMeta as OutputHead)) corrupt(`metadata "head" is ${brief(headMeta)}, not one of ${HEADS.join(', ')}`, META.head);
  const head = (headMeta as OutputHead | undefined) ?? guessed;
  const fits =
    head === 'embedding' ? output === 'embedding' : head === 'none' ? output === 'hidden_states' : head === 'seqcls' ? output === 'logits' && rank === 2 : output === 'logits' && rank === 4;
  if (!fits) corrupt(`metadata "head" says ${head}, but the program's output is ${output} of rank ${rank}`, META.head);
  const width = typeof shape[1] === 'number' ? shape[1] : undefined;

  const labelsMeta = parseJson(get(META.labels), META.labels, path);
  let labels: string[] = [];
  if (labelsMeta !== undefined) {
    if (!Array.isArray(labelsMeta) || !labelsMeta.every((l) => typeof l === 'string')) return corrupt(`metadata "labels" is not a list of names: ${brief(labelsMeta)}`, META.labels);
    labels = labelsMeta as string[];
  }
  if (head === 'seqcls' || head === 'tokcls') {
    if (width === undefined) corrupt(`the ${head} output has no fixed number of classes`);
    if (labelsMeta === undefined) labels = Array.from({ length: width! }, (_, i) => `LABEL_${i}`);
    if (labels.length !== width) corrupt(`metadata "labels" names ${labels.length} classes but the classifier computes ${width}`, META.labels);
  }

  const vocab = embeddingRows(pkg) ?? (head === 'mlm' ? width : undefined);
  const specialMeta = parseJson(get(META.specialIds), META.specialIds, path);
  let special: SpecialIds = { pad: 0, cls: 0, sep: 0 };
  if (specialMeta !== undefined) {
    const isId = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && (vocab === undefined || v < vocab);
    const o = specialMeta as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || !isId(o.pad) || !isId(o.cls) || !isId(o.sep) || (o.mask !== undefined && o.mask !== null && !isId(o.mask))) {
      corrupt(`metadata "special_token_ids" must give pad, cls and sep ids${vocab === undefined ? '' : ` in 0..${vocab - 1}`}: ${brief(specialMeta)}`, META.specialIds);
    }
    special = { pad: o.pad as number, cls: o.cls as number, sep: o.sep as number, ...(typeof o.mask === 'number' ? { mask: o.mask } : {}) };
  }
  const layersMeta = get(META.numLayers);
  const numLayers = Number(layersMeta ?? 0);
  if (!Number.isInteger(numLayers) || numLayers < 0 || numLayers > CONFIG_LIMITS.num_hidden_layers) corrupt(`metadata "num_layers" is ${brief(layersMeta)}`, META.numLayers);
  return {
    seqLens,
    maskInput: pkg.description.inputs.some((f) => f.name === 'mask'),
    head,
    labels,
    special,
    numLayers,
    output,
    metadata: meta,
  };
}

/** Rows of the embedding table: the constant of the first gather indexed by (a value computed from) input_ids. */
export function embeddingRows(pkg: ReadPackageResult): number | undefined {
  const fromIds = new Set(['input_ids']);
  for (const op of pkg.graph.ops) {
    const uses = (v: unknown): boolean => (typeof v === 'string' && fromIds.has(v)) || (Array.isArray(v) && v.some((x) => typeof x === 'string' && fromIds.has(x)));
    if (op.op === 'gather' && uses(op.inputs.indices)) {
      const x = op.inputs.x;
      const c = typeof x === 'string' ? pkg.graph.consts.get(x) : undefined;
      return c && c.type.shape.length === 2 && typeof c.type.shape[0] === 'number' ? c.type.shape[0] : undefined;
    }
    // Values of the ids, not their shape (a sequence length indexes the rotary tables).
    if (op.op !== 'shape' && Object.values(op.inputs).some(uses)) for (const o of op.outputs) fromIds.add(o.name);
  }
  return undefined;
}

export function outputShape(pkg: ReadPackageResult, name: string): readonly (number | string)[] {
  for (const op of pkg.graph.ops) for (const o of op.outputs) if (o.name === name) return o.type.shape;
  const c = pkg.graph.consts.get(name);
  return c ? c.type.shape : [];
}
