// Running a Core ML package on the CPU: the package's own MIL program in our interpreter (float32 or a
// float16 emulation), with inputs padded to one of the package's sequence lengths. Works for packages we
// wrote (whose metadata names the head, labels and special ids) and, with defaults, for others.

import { additiveMask, unfoldLogits } from './engine.js';
import type { Executor, ExecutorFactory, ForwardOptions, ForwardResult, Runner, Sequence } from './runner.js';
import { embeddingRows, outputShape, packageInfo, type PackageInfo } from '../coreml/package-info.js';
import type { ReadPackageResult } from '../coreml/mil-read.js';
import { ModernBertError } from '../errors.js';
import { Interpreter } from '../graph/interpreter.js';
import type { Precision } from '../runtime/numerics.js';
import type { RtTensor } from '../runtime/tensor.js';

/** A head package of `convert --split`, run on a body package's hidden states. */
export interface HeadPackage {
  pkg: ReadPackageResult;
  path: string;
}

/** Runs sequences through a package's program (a body package followed by a head package, when one is given). */
export class PackageRunner implements Runner {
  readonly info: PackageInfo;
  private readonly interp: Executor;
  private readonly head?: { interp: Executor; pkg: ReadPackageResult; info: PackageInfo };

  /** `executor` runs the programs (our interpreter by default; ort-executor.ts at float32); `head` follows a body package. */
  constructor(
    readonly pkg: ReadPackageResult,
    readonly path: string,
    private readonly precision: Precision = 'fp32',
    executor?: ExecutorFactory,
    head?: HeadPackage,
  ) {
    const own = packageInfo(pkg, path);
    const run = (p: ReadPackageResult, at: string): Executor =>
      executor ? executor(p.graph, precision, { path: at, pkg: p }) : new Interpreter(p.graph, precision);
    this.interp = run(pkg, path);
    if (!head) {
      this.info = own;
      return;
    }
    const hi = packageInfo(head.pkg, head.path);
    if (hi.part !== 'head')
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `\`headPackage\` ${head.path} is not a head package (convert --split writes them; its input is input_ids, not hidden_states)`,
        { path: head.path },
      );
    if (own.output !== 'hidden_states')
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `${path} is not a body package: its output is ${own.output}, a head reads hidden_states`,
        { path },
      );
    const missing = own.seqLens.filter((s) => !hi.seqLens.includes(s));
    if (missing.length > 0)
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `\`headPackage\` ${head.path} takes lengths ${hi.seqLens.join(',')}, the body ${own.seqLens.join(',')}`,
        { path: head.path },
      );
    this.head = { interp: run(head.pkg, head.path), pkg: head.pkg, info: hi };
    this.info = { ...own, head: hi.head, labels: hi.labels, output: hi.output };
  }

  get numLayers(): number {
    return this.info.numLayers;
  }

  /** Rows of the embedding table (else the width of the per-token output, the vocabulary of a masked LM). */
  get vocabSize(): number {
    const rows = embeddingRows(this.pkg);
    if (rows !== undefined) return rows;
    // A split decoder's logits are (1, V/K, K, S) (model/decoder.ts).
    const shape = outputShape(this.pkg, this.info.output);
    const width = shape.length === 4 ? Number(shape[1]) * Number(shape[2]) : Number(shape[1]);
    return Number.isFinite(width) ? width : 0;
  }

  get maxLen(): number {
    return Math.max(...this.info.seqLens);
  }

  hasTap(role: string): boolean {
    return this.interp.tapsAvailable !== false && this.pkg.graph.taps.has(role);
  }

  /** Pads the sequence to the shortest length the package takes, runs it, and crops to the real tokens. */
  async forward(seq: Sequence, o: ForwardOptions = {}): Promise<ForwardResult> {
    if (this.info.part === 'head')
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `${this.path} is a head package (its input is hidden_states): give its body package as the model and this one as \`headPackage\``,
        { path: this.path },
      );
    const n = seq.ids.length;
    const S = this.info.seqLens.find((s) => s >= n);
    if (S === undefined) {
      throw new ModernBertError(
        'BAD_INPUT',
        `the input has ${n} tokens but ${this.path} takes at most ${this.maxLen} (converted with --seq-len ${this.info.seqLens.join(',')})`,
        { tokens: n },
      );
    }
    if (o.head && o.head !== this.info.head) {
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `${this.path} was converted with the ${this.info.head} head; it cannot produce ${o.head} (convert again with --head ${o.head})`,
      );
    }
    // The program would wrap a negative id to the last row (coremltools' gather), and read past the table
    // for a large one: refuse both, as the checkpoint path does.
    const V = this.vocabSize;
    for (let i = 0; i < n; i++) {
      const id = seq.ids[i]!;
      if (!Number.isInteger(id) || id < 0 || (V > 0 && id >= V)) {
        throw new ModernBertError(
          'BAD_INPUT',
          `token id ${id} at position ${i} is outside the vocabulary (0..${V - 1})`,
          { position: i },
        );
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
      if (given.length !== n)
        throw new ModernBertError(
          'BAD_ARGUMENT',
          `the segment ids (${given.length}) and the token ids (${n}) differ in length`,
        );
      const segments = new Int32Array(S);
      segments.set(Array.from(given));
      inputs.segment_ids = { dtype: 'int32', shape: [1, S], data: segments };
    } else if (seq.segments) {
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `${this.path} runs one text per window (convert with --pack K to pack several)`,
      );
    }
    if (this.info.maskInput) inputs.mask = { dtype: 'fp32', shape: [1, S, 1, S], data: additiveMask(attention, S) };
    const roles = o.taps === 'all' ? [...this.pkg.graph.taps.keys()] : (o.taps ?? []);
    const keep = roles.map((r) => {
      const v = this.pkg.graph.taps.get(r);
      if (!v) throw new ModernBertError('BAD_ARGUMENT', `${this.path} has no value "${r}"`, { tap: r });
      return v;
    });
    let res = await this.interp.run(inputs, { keep: this.head ? [...keep, 'hidden_states'] : keep, onOp: o.onOp });
    if (this.head) {
      // The head reads the body's output as it is, at the body's length, and the ids when it pools.
      const headInputs: Record<string, RtTensor> = { hidden_states: res.get('hidden_states')! };
      for (const v of this.head.pkg.graph.inputs) if (v.name !== 'hidden_states') headInputs[v.name] = inputs[v.name]!;
      const out = await this.head.interp.run(headInputs, {});
      res = new Map([...res, ...out]);
    }
    const cols = o.positions ?? Array.from({ length: n }, (_, i) => i);
    const outputs = new Map<string, RtTensor>();
    for (const name of this.head?.pkg.graph.outputs ?? this.pkg.graph.outputs) {
      const t = name === 'logits' ? unfoldLogits(res.get(name)!) : res.get(name)!;
      // A package whose program overflows (or holds a corrupt constant) must not print null probabilities.
      // (The float16 emulation may overflow by design; its callers measure that.)
      const bad = this.precision === 'fp32' ? t.data.findIndex((x) => !Number.isFinite(x)) : -1;
      if (bad >= 0) {
        throw new ModernBertError(
          'CORRUPT_FILE',
          `${this.path}: output "${name}" holds ${t.data[bad]} at element ${bad} (the program overflows or a constant is corrupt)`,
          { output: name, index: bad },
        );
      }
      outputs.set(
        name,
        t.shape.length === 4 && t.shape[3] === S ? columns(t, cols) : single && t.shape.length === 3 ? firstRow(t) : t,
      );
    }
    const taps = new Map(
      roles.map((r, i) => [
        r,
        columns(
          res.get(keep[i]!)!,
          Array.from({ length: n }, (_, k) => k),
        ),
      ]),
    );
    return { outputs, taps };
  }
}

/**
 * A multifunction package of shape buckets (`convert --buckets`): one function per length, each static, and
 * each input runs in the smallest that fits (functions are read when first needed).
 */
export class BucketRunner implements Runner {
  readonly info: PackageInfo;
  private readonly runners = new Map<string, PackageRunner>();

  /** `buckets`: function names by length; `open` reads one function as a runner; `first` is one already read. */
  constructor(
    readonly path: string,
    private readonly buckets: { name: string; seqLen: number }[],
    private readonly open: (fn: string) => PackageRunner,
    first: PackageRunner,
  ) {
    this.buckets = [...buckets].sort((a, b) => a.seqLen - b.seqLen);
    this.runners.set(first.pkg.functionName, first);
    this.info = { ...first.info, seqLens: this.buckets.map((b) => b.seqLen) };
  }

  get numLayers(): number {
    return this.info.numLayers;
  }

  get maxLen(): number {
    return this.buckets[this.buckets.length - 1]!.seqLen;
  }

  get vocabSize(): number {
    return this.runners.values().next().value!.vocabSize;
  }

  hasTap(role: string): boolean {
    return this.runners.values().next().value!.hasTap(role);
  }

  /** The function an input of n tokens runs in. */
  bucketFor(n: number): string {
    const b = this.buckets.find((x) => x.seqLen >= n);
    if (!b)
      throw new ModernBertError(
        'BAD_INPUT',
        `the input has ${n} tokens but ${this.path} takes at most ${this.maxLen} (buckets ${this.buckets.map((x) => x.seqLen).join(',')})`,
        { tokens: n },
      );
    return b.name;
  }

  async forward(seq: Sequence, o: ForwardOptions = {}): Promise<ForwardResult> {
    const name = this.bucketFor(seq.ids.length);
    let r = this.runners.get(name);
    if (!r) this.runners.set(name, (r = this.open(name)));
    return r.forward(seq, o);
  }
}

/** Columns (last axis) of a (1, C, 1, S) tensor. */
function columns(t: RtTensor, cols: number[]): RtTensor {
  const C = t.shape[1]!;
  const S = t.shape[3]!;
  const out = new Float32Array(C * cols.length);
  for (let c = 0; c < C; c++)
    for (let j = 0; j < cols.length; j++) out[c * cols.length + j] = t.data[c * S + cols[j]!]!;
  return { dtype: t.dtype, shape: [1, C, 1, cols.length], data: out };
}

/** Row 0 of a packed pooled output (1, K, N), as the (1, N) of an unpacked package. */
function firstRow(t: RtTensor): RtTensor {
  const N = t.shape[2]!;
  return { dtype: t.dtype, shape: [1, N], data: t.data.slice(0, N) };
}
