// Running a Core ML package on the CPU: the package's own MIL program in our interpreter (float32 or a
// float16 emulation), with inputs padded to one of the package's sequence lengths. Works for packages we
// wrote (whose metadata names the head, labels and special ids) and, with defaults, for others.

import type { ForwardOptions, ForwardResult, Sequence } from '../engine.js';
import { additiveMask, unfoldLogits } from '../engine.js';
import { ModernBertError } from '../errors.js';
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

function parseJson<T>(text: string | undefined, fallback: T): T {
  if (text === undefined) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

/** Reads what the runner needs from a package's description and metadata. */
export function packageInfo(pkg: ReadPackageResult, path: string): PackageInfo {
  const meta = pkg.description.metadata.userDefined ?? {};
  const ids = pkg.description.inputs.find((f) => f.name === 'input_ids');
  if (!ids) throw new ModernBertError('UNSUPPORTED', `${path}: the package has no "input_ids" input, so it is not a ModernBERT package this tool can run`, { path });
  const shapes = ids.enumeratedShapes ?? (ids.shape.length === 2 ? [ids.shape] : []);
  const seqLens = [...new Set(shapes.map((s) => s[1]!))].sort((a, b) => a - b);
  if (seqLens.length === 0) throw new ModernBertError('UNSUPPORTED', `${path}: "input_ids" has no fixed or enumerated length`, { path });
  const out = pkg.description.outputs.map((f) => f.name);
  const output = ['logits', 'embedding', 'hidden_states'].find((n) => out.includes(n));
  if (!output) throw new ModernBertError('UNSUPPORTED', `${path}: outputs ${out.join(', ')} are none of logits, embedding, hidden_states`, { path });
  // Packages from elsewhere: a (1, V, 1, S) logits output is a masked LM, a (1, L) one a classifier.
  const rank = outputRank(pkg, output);
  const guessed: OutputHead = output === 'embedding' ? 'embedding' : output === 'hidden_states' ? 'none' : rank === 2 ? 'seqcls' : 'mlm';
  const special = parseJson<SpecialIds>(meta[META.specialIds], { pad: 0, cls: 0, sep: 0 });
  return {
    seqLens,
    maskInput: pkg.description.inputs.some((f) => f.name === 'mask'),
    head: (meta[META.head] as OutputHead | undefined) ?? guessed,
    labels: parseJson<string[]>(meta[META.labels], []),
    special,
    numLayers: Number(meta[META.numLayers] ?? 0),
    output,
    metadata: meta,
  };
}

function outputRank(pkg: ReadPackageResult, name: string): number {
  for (const op of pkg.graph.ops) for (const o of op.outputs) if (o.name === name) return o.type.shape.length;
  return 0;
}

/** Runs sequences through a package's program. */
export class PackageRunner implements Runner {
  readonly info: PackageInfo;
  private readonly interp: Interpreter;

  constructor(readonly pkg: ReadPackageResult, readonly path: string, precision: Precision = 'fp32') {
    this.info = packageInfo(pkg, path);
    this.interp = new Interpreter(pkg.graph, precision);
  }

  get numLayers(): number {
    return this.info.numLayers;
  }

  /** Size of the per-token output (the vocabulary for a masked LM). */
  get vocabSize(): number {
    // A split decoder's logits are (1, V/K, K, S) (model.ts decoder).
    for (const op of this.pkg.graph.ops) for (const o of op.outputs) if (o.name === this.info.output) return Number(o.type.shape[1]) * (o.type.shape.length === 4 ? Number(o.type.shape[2]) : 1);
    return 0;
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
