// What a Core ML package says about itself: the metadata keys that conversion writes, and the head,
// labels, special ids and lengths read back from them (checked against the program), with defaults for
// packages from elsewhere.

import { CONFIG_LIMITS } from '../model/config.js';
import { ModernBertError } from '../errors.js';
import { brief } from '../io/files.js';
import type { OutputHead } from '../model/options.js';
import type { ReadPackageResult } from './mil-read.js';

/** Metadata keys (userDefined) that conversion writes and the runner reads. */
export const META = {
  converter: 'converter',
  /** The Hub id (org/name) of a model from the Hub, else the config's `_name_or_path` id or the folder's name. */
  source: 'source_model',
  /** The commit of the Hub repository it was converted from (models from the Hub only). */
  sourceCommit: 'source_commit',
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
  /** 'body' (input_ids -> hidden_states) or 'head' (hidden_states -> the head's output) of `convert --split`. */
  part: 'part',
  /** A head's body: bodyHash() of the body package it was converted with (a body records its own). */
  bodyHash: 'body_hash',
  /** A multifunction package's functions: JSON {name: {head, labels?, seq_len?}}. */
  functions: 'functions',
  pack: 'texts_per_window',
  compression: 'compression',
} as const;

/** What a multifunction package's metadata says about one function. */
export interface FunctionInfo {
  head: OutputHead;
  labels?: string[];
  /** The one length of a shape bucket's function. */
  seq_len?: number;
}

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
  /** 'head' for a head package of `convert --split` (input hidden_states), else 'model' (input_ids). */
  part: 'model' | 'head';
  /** A multifunction package's functions (the metadata's), empty for one function. */
  functions: Record<string, FunctionInfo>;
  /** Texts per window of a packed package (its `segment_ids` input), else undefined. */
  pack?: number;
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
  const hidden = pkg.description.inputs.find((f) => f.name === 'hidden_states');
  const ids = pkg.description.inputs.find((f) => f.name === 'input_ids');
  // A head package of `convert --split` reads the body's hidden states (1, C, 1, S).
  const part = hidden ? 'head' : 'model';
  const lengthInput = hidden ?? ids;
  if (!lengthInput)
    throw new ModernBertError(
      'UNSUPPORTED',
      `${path}: the package has no "input_ids" input, so it is not a ModernBERT package this tool can run`,
      { path },
    );
  const rank = hidden ? 4 : 2;
  const shapes = lengthInput.enumeratedShapes ?? (lengthInput.shape.length === rank ? [lengthInput.shape] : []);
  for (const s of shapes) {
    const S = s[rank - 1];
    if (s.length !== rank || s[0] !== 1 || !Number.isSafeInteger(S) || S! < 1 || S! > MAX_SEQ_LEN) {
      corrupt(
        `"${lengthInput.name}" has shape [${s.join(', ')}]; a ModernBERT package takes ${hidden ? '(1, C, 1, S)' : '(1, S)'} with S in 1..${MAX_SEQ_LEN}`,
      );
    }
  }
  const seqLens = [...new Set(shapes.map((s) => s[rank - 1]!))].sort((a, b) => a - b);
  if (seqLens.length === 0)
    throw new ModernBertError('UNSUPPORTED', `${path}: "input_ids" has no fixed or enumerated length`, { path });
  const out = pkg.description.outputs.map((f) => f.name);
  const output = ['logits', 'embedding', 'hidden_states'].find((n) => out.includes(n));
  if (!output)
    throw new ModernBertError(
      'UNSUPPORTED',
      `${path}: outputs ${out.join(', ')} are none of logits, embedding, hidden_states`,
      { path },
    );
  const shape = outputShape(pkg, output);
  const outRank = shape.length;
  // Packages from elsewhere: a (1, V, 1, S) logits output is a masked LM, a (1, L) one a classifier.
  // A packed package's pooled outputs have one row per text: (1, K, L) logits, (1, K, C) embeddings.
  const packed = pkg.description.inputs.some((f) => f.name === 'segment_ids');
  const pooledRank = packed ? 3 : 2;
  const guessed: OutputHead =
    output === 'embedding'
      ? 'embedding'
      : output === 'hidden_states'
        ? 'none'
        : outRank === pooledRank
          ? 'seqcls'
          : 'mlm';
  const functions = functionsInfo(parseJson(get(META.functions), META.functions, path), corrupt);
  const own = functions[pkg.functionName];
  if (pkg.functions.length > 1 && !own && get(META.functions) !== undefined)
    corrupt(`metadata "functions" does not describe function "${pkg.functionName}"`, META.functions);
  const headMeta = own?.head ?? get(META.head);
  if (headMeta !== undefined && !HEADS.includes(headMeta as OutputHead))
    corrupt(`metadata "head" is ${brief(headMeta)}, not one of ${HEADS.join(', ')}`, META.head);
  const head = (headMeta as OutputHead | undefined) ?? guessed;
  const fits =
    head === 'embedding'
      ? output === 'embedding'
      : head === 'none'
        ? output === 'hidden_states'
        : head === 'seqcls'
          ? output === 'logits' && outRank === pooledRank
          : output === 'logits' && outRank === 4;
  if (!fits)
    corrupt(`metadata "head" says ${head}, but the program's output is ${output} of rank ${outRank}`, META.head);
  const widthAxis = packed && (head === 'seqcls' || head === 'embedding') ? 2 : 1;
  const width = typeof shape[widthAxis] === 'number' ? shape[widthAxis] : undefined;
  let pack: number | undefined;
  if (packed) {
    pack = Number(get(META.pack) ?? (outRank === 3 ? shape[1] : NaN));
    if (!Number.isInteger(pack) || pack < 1 || pack > Math.min(...seqLens))
      corrupt(
        `metadata "${META.pack}" is ${brief(get(META.pack))}; a packed package needs 1..${Math.min(...seqLens)} texts per window`,
        META.pack,
      );
  }

  const labelsMeta = own?.labels ?? parseJson(get(META.labels), META.labels, path);
  let labels: string[] = [];
  if (labelsMeta !== undefined) {
    if (!Array.isArray(labelsMeta) || !labelsMeta.every((l) => typeof l === 'string'))
      return corrupt(`metadata "labels" is not a list of names: ${brief(labelsMeta)}`, META.labels);
    labels = labelsMeta as string[];
  }
  if (head === 'seqcls' || head === 'tokcls') {
    if (width === undefined) corrupt(`the ${head} output has no fixed number of classes`);
    if (labelsMeta === undefined) labels = Array.from({ length: width! }, (_, i) => `LABEL_${i}`);
    if (labels.length !== width)
      corrupt(`metadata "labels" names ${labels.length} classes but the classifier computes ${width}`, META.labels);
  }

  const vocab = embeddingRows(pkg) ?? (head === 'mlm' ? width : undefined);
  const specialMeta = parseJson(get(META.specialIds), META.specialIds, path);
  let special: SpecialIds = { pad: 0, cls: 0, sep: 0 };
  if (specialMeta !== undefined) {
    const isId = (v: unknown): v is number =>
      typeof v === 'number' && Number.isInteger(v) && v >= 0 && (vocab === undefined || v < vocab);
    const o = specialMeta as Record<string, unknown>;
    if (
      typeof o !== 'object' ||
      o === null ||
      !isId(o.pad) ||
      !isId(o.cls) ||
      !isId(o.sep) ||
      (o.mask !== undefined && o.mask !== null && !isId(o.mask))
    ) {
      corrupt(
        `metadata "special_token_ids" must give pad, cls and sep ids${vocab === undefined ? '' : ` in 0..${vocab - 1}`}: ${brief(specialMeta)}`,
        META.specialIds,
      );
    }
    special = {
      pad: o.pad as number,
      cls: o.cls as number,
      sep: o.sep as number,
      ...(typeof o.mask === 'number' ? { mask: o.mask } : {}),
    };
  }
  const layersMeta = get(META.numLayers);
  const numLayers = Number(layersMeta ?? 0);
  if (!Number.isInteger(numLayers) || numLayers < 0 || numLayers > CONFIG_LIMITS.num_hidden_layers)
    corrupt(`metadata "num_layers" is ${brief(layersMeta)}`, META.numLayers);
  return {
    seqLens,
    maskInput: pkg.description.inputs.some((f) => f.name === 'mask'),
    head,
    labels,
    special,
    numLayers,
    output,
    part,
    functions,
    ...(pack === undefined ? {} : { pack }),
    metadata: meta,
  };
}

/** The metadata's "functions" (absent: none), checked. */
function functionsInfo(raw: unknown, corrupt: (msg: string, key?: string) => never): Record<string, FunctionInfo> {
  if (raw === undefined) return {};
  const bad = (): never =>
    corrupt(`metadata "functions" is not {name: {head, labels?, seq_len?}}: ${brief(raw)}`, META.functions);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad();
  const out: Record<string, FunctionInfo> = {};
  for (const [name, v] of Object.entries(raw)) {
    const f = v as Record<string, unknown>;
    if (typeof f !== 'object' || f === null || !HEADS.includes(f.head as OutputHead)) return bad();
    if (f.labels !== undefined && (!Array.isArray(f.labels) || !f.labels.every((l) => typeof l === 'string')))
      return bad();
    if (
      f.seq_len !== undefined &&
      !(Number.isSafeInteger(f.seq_len) && (f.seq_len as number) >= 1 && (f.seq_len as number) <= MAX_SEQ_LEN)
    )
      return bad();
    out[name] = {
      head: f.head as OutputHead,
      ...(f.labels ? { labels: f.labels as string[] } : {}),
      ...(f.seq_len ? { seq_len: f.seq_len as number } : {}),
    };
  }
  return out;
}

/** Rows of the embedding table: the constant of the first gather indexed by (a value computed from) input_ids. */
export function embeddingRows(pkg: ReadPackageResult): number | undefined {
  const fromIds = new Set(['input_ids']);
  for (const op of pkg.graph.ops) {
    const uses = (v: unknown): boolean =>
      (typeof v === 'string' && fromIds.has(v)) ||
      (Array.isArray(v) && v.some((x) => typeof x === 'string' && fromIds.has(x)));
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
