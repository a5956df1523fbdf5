// Running a Core ML package on the CPU: the package's own MIL program in our interpreter (float32 or a
// float16 emulation), with inputs padded to one of the package's sequence lengths. Works for packages we
// wrote (whose metadata names the head, labels and special ids) and, with defaults, for others.

import { additiveMask, unfoldLogits, type ForwardOptions, type ForwardResult, type Sequence } from './engine.js';
import { embeddingRows, outputShape, packageInfo, type PackageInfo } from './coreml/package-info.js';
import type { ReadPackageResult } from './coreml/mil-read.js';
import { ModernBertError } from './errors.js';
import type { Runner } from './eval/verify.js';
import { Interpreter } from './graph/interpreter.js';
import type { Precision } from './runtime/numerics.js';
import type { RtTensor } from './runtime/tensor.js';

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
    // A single sequence through a packed package is text 1 (its real tokens), and gets row 0 of pooled outputs.
    const single = this.info.pack !== undefined && !seq.segments;
    if (this.info.pack !== undefined) {
      // Packed: segment ids, 0 (padding) past the real tokens.
      const given = seq.segments ?? Array.from(attention.subarray(0, n), (a) => (a ? 1 : 0));
      if (given.length !== n) throw new ModernBertError('BAD_ARGUMENT', `the segment ids (${given.length}) and the token ids (${n}) differ in length`);
      const segments = new Int32Array(S);
      segments.set(Array.from(given));
      inputs.segment_ids = { dtype: 'int32', shape: [1, S], data: segments };
    } else if (seq.segments) {
      throw new ModernBertError('BAD_ARGUMENT', `${this.path} runs one text per window (convert with --pack K to pack several)`);
    }
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
      outputs.set(name, t.shape.length === 4 && t.shape[3] === S ? columns(t, cols) : single && t.shape.length === 3 ? firstRow(t) : t);
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

/** Row 0 of a packed pooled output (1, K, N), as the (1, N) of an unpacked package. */
function firstRow(t: RtTensor): RtTensor {
  const N = t.shape[2]!;
  return { dtype: t.dtype, shape: [1, N], data: t.data.slice(0, N) };
}
