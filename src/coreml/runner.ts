// Running a Core ML package on the CPU: the package's own MIL program in our interpreter (float32 or a
// float16 emulation), with inputs padded to one of the package's sequence lengths. Works for packages we
// wrote (whose metadata names the head, labels and special ids) and, with defaults, for others.

import type { ForwardOptions, ForwardResult, Sequence } from '../engine.js';
import { additiveMask, unfoldLogits } from '../engine.js';
import { CONFIG_LIMITS } from '../config.js';
import { ModernBertError } from '../errors.js';
import { brief } from '../io/files.js';
import type { Runner } from '../eval/verify.js';
import type { OutputHead } from '../model.js';
import { Interpreter } from '../runtime/interpreter.js';
import type { Precision } from '../runtime/numerics.js';
import type { RtTensor } from '../runtime/tensor.js';
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

function outputShape(pkg: ReadPackageResult, name: string): readonly (number | string)[] {
  for (const op of pkg.graph.ops) for (const o of op.outputs) if (o.name === name) return o.type.shape;
  const c = pkg.graph.consts.get(name);
  return c ? c.type.shape : [];
}

/** Runs sequences through a package's program. */
export class PackageRunner implements Runner {
  readonly info: PackageInfo;
  private readonly interp: Interpreter;

  constructor(readonly pkg: ReadPackageResult, readonly path: string, private readonly precision: Precision = 'fp32') {
    this.info = packageInfo(pkg, path);
    this.interp = new Interpreter(pkg.graph, precision);
  }

  get numLayers(): number {
    return this.info.numLayers;
  }

  /** Rows of the embedding table (else the width of the per-token output, the vocabulary of a masked LM). */
  get vocabSize(): number {
    const rows = embeddingRows(this.pkg);
    if (rows !== undefined) return rows;
    // A split decoder's logits are (1, V/K, K, S) (model.ts decoder).
    const shape = outputShape(this.pkg, this.info.output);
    const width = shape.length === 4 ? Number(shape[1]) * Number(shape[2]) : Number(shape[1]);
    return Number.isFinite(width) ? width : 0;
  }

  get maxLen(): number {
    return Math.max(...this.info.seqLens);
  }

  hasTap(role: string): boolean {
    return this.pkg.graph.taps.has(role);
  }

  /** Pads the sequence to the shortest length the package takes, runs it, and crops to the real tokens. */
  async forward(seq: Sequence, o: ForwardOptions = {}): Promise<ForwardResult> {
    const n = seq.ids.length;
    const S = this.info.seqLens.find((s) => s >= n);
    if (S === undefined) {
      throw new ModernBertError('BAD_INPUT', `the input has ${n} tokens but ${this.path} takes at most ${this.maxLen} (converted with --seq-len ${this.info.seqLens.join(',')})`, { tokens: n });
    }
    if (o.head && o.head !== this.info.head) {
      throw new ModernBertError('BAD_ARGUMENT', `${this.path} was converted with the ${this.info.head} head; it cannot produce ${o.head} (convert again with --head ${o.head})`);
    }
    // The program would wrap a negative id to the last row (coremltools' gather), and read past the table
    // for a large one: refuse both, as the checkpoint path does.
    const V = this.vocabSize;
    for (let i = 0; i < n; i++) {
      const id = seq.ids[i]!;
      if (!Number.isInteger(id) || id < 0 || (V > 0 && id >= V)) {
        throw new ModernBertError('BAD_INPUT', `token id ${id} at position ${i} is outside the vocabulary (0..${V - 1})`, { position: i });
      }
    }
    const ids = new Int32Array(S).fill(this.info.special.pad);
    ids.set(Array.from(seq.ids));
    const attention = new Int32Array(S);
    for (let i = 0; i < n; i++) attention[i] = seq.attention ? seq.attention[i]! : 1;
    const inputs: Record<string, RtTensor> = { input_ids: { dtype: 'int32', shape: [1, S], data: ids } };
    if (this.info.maskInput) inputs.mask = { dtype: 'fp32', shape: [1, S, 1, S], data: additiveMask(attention, S) };
    const roles = o.taps === 'all' ? [...this.pkg.graph.taps.keys()] : o.taps ?? [];
    const keep = roles.map((r) => {
      const v = this.pkg.graph.taps.get(r);
      if (!v) throw new ModernBertError('BAD_ARGUMENT', `${this.path} has no value "${r}"`, { tap: r });
      return v;
    });
    const res = await this.interp.run(inputs, { keep, onOp: o.onOp });
    const cols = o.positions ?? Array.from({ length: n }, (_, i) => i);
    const outputs = new Map<string, RtTensor>();
    for (const name of this.pkg.graph.outputs) {
      const t = name === 'logits' ? unfoldLogits(res.get(name)!) : res.get(name)!;
      // A package whose program overflows (or holds a corrupt constant) must not print null probabilities.
      // (The float16 emulation may overflow by design; its callers measure that.)
      const bad = this.precision === 'fp32' ? t.data.findIndex((x) => !Number.isFinite(x)) : -1;
      if (bad >= 0) {
        throw new ModernBertError('CORRUPT_FILE', `${this.path}: output "${name}" holds ${t.data[bad]} at element ${bad} (the program overflows or a constant is corrupt)`, { output: name, index: bad });
      }
      outputs.set(name, t.shape.length === 4 && t.shape[3] === S ? columns(t, cols) : t);
    }
    const taps = new Map(roles.map((r, i) => [r, columns(res.get(keep[i]!)!, Array.from({ length: n }, (_, k) => k))]));
    return { outputs, taps };
  }
}

/** Columns (last axis) of a (1, C, 1, S) tensor. */
function columns(t: RtTensor, cols: number[]): RtTensor {
  const C = t.shape[1]!;
  const S = t.shape[3]!;
  const out = new Float32Array(C * cols.length);
  for (let c = 0; c < C; c++) for (let j = 0; j < cols.length; j++) out[c * cols.length + j] = t.data[c * S + cols[j]!]!;
  return { dtype: t.dtype, shape: [1, C, 1, cols.length], data: out };
}
