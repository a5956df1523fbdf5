// Running a model on token ids: one graph per sequence length (batch rows run one at a time, as on the
// Neural Engine), weights loaded once and shared across lengths, masks built from the attention mask.

import { ModernBertError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import { buildModel } from '../model/model.js';
import { type BuildOptions, type ModelSource } from '../model/options.js';
import { Interpreter } from '../graph/interpreter.js';
import { roundToF16InPlace } from '../runtime/kernels/index.js';
import { F16_EXACT, shareable, type RtTensor } from '../runtime/tensor.js';
import { WrappedWeights, type StoredTensor, type Tensor, type WeightSource } from '../io/weights.js';
import type {
  Executor,
  ExecutorFactory,
  ForwardOptions,
  ForwardResult,
  GraphUse,
  LengthPlan,
  Sequence,
} from './runner.js';
import { weightBytes } from './runtime-cost.js';

/** Additive attention mask (1, S, 1, S), laid out (batch, key, 1, query): padding keys get -1e4. */
export function additiveMask(attention: ArrayLike<number> | undefined, S: number): Float32Array {
  const m = new Float32Array(S * S);
  if (!attention) return m;
  for (let k = 0; k < S; k++) if (!attention[k]) m.fill(-1e4, k * S, (k + 1) * S);
  return m;
}

/**
 * Logits of a split decoder, (1, rows, K, S) with logit v at (v % rows, v / rows), as (1, V, 1, S)
 * (model/decoder.ts); other tensors are returned as they are.
 */
export function unfoldLogits(t: RtTensor, V = Infinity): RtTensor {
  if (t.shape.length !== 4 || t.shape[2] === 1) return t;
  const [, rows, K, S] = t.shape as [number, number, number, number];
  const n = Math.min(V, rows * K);
  const out = new Float32Array(n * S);
  for (let k = 0; k < K; k++) {
    for (let c = 0; c < rows && k * rows + c < n; c++) {
      const src = (c * K + k) * S;
      out.set(t.data.subarray(src, src + S), (k * rows + c) * S);
    }
  }
  return { dtype: t.dtype, shape: [1, n, 1, S], data: out };
}

/**
 * Keeps each tensor once it has been read, so graphs of different lengths share one copy of the weights.
 * With `roundF16` the cached copies are rounded to float16 once (for models that only run in float16).
 * Unlike other sources it returns the cached array itself, which readers must not modify.
 */
export class CachedWeights extends WrappedWeights {
  private readonly cache = new Map<string, Tensor>();
  constructor(
    inner: WeightSource,
    private readonly roundF16 = false,
  ) {
    super(inner);
  }
  get(name: string): Tensor {
    const key = this.storedName(name); // a tied decoder shares the embeddings' copy
    let t = this.cache.get(key);
    if (!t) {
      const raw = this.inner.get(name);
      // The inner source hands over a fresh array (WeightSource.get), so it can be rounded in place.
      const data = shareable(raw.data);
      if (this.roundF16) F16_EXACT.add(roundToF16InPlace(data));
      t = { shape: raw.shape, data };
      this.cache.set(key, t);
    }
    return t;
  }
  location(name: string): StoredTensor | undefined {
    return this.roundF16 ? undefined : this.inner.location?.(name);
  }
}

const interpreterFactory: ExecutorFactory = (graph, precision) => new Interpreter(graph, precision);

/** Runs sequences through a model on the CPU, caching one prepared graph per length. */
export class Engine {
  private readonly source: ModelSource;
  private readonly graphs = new Map<string, Executor>();

  /**
   * `defaults` apply to every forward pass unless it overrides them; `executor` runs the graphs (our interpreter
   * by default), told `use` (how many passes each graph will run, when the caller knows).
   */
  constructor(
    model: ModelSource,
    private readonly defaults: Omit<ForwardOptions, 'onOp' | 'taps' | 'positions'> = {},
    private readonly executor: ExecutorFactory = interpreterFactory,
    private readonly use: GraphUse = {},
  ) {
    this.source = {
      ...model,
      weights: model.weights instanceof CachedWeights ? model.weights : new CachedWeights(model.weights),
    };
  }

  get numLayers(): number {
    return this.source.config.numLayers;
  }

  /** Whether forward passes can return this tapped value. */
  hasTap(role: string): boolean {
    return this.graph(1).taps.has(role);
  }

  /** The graph of one length that a forward pass runs on our interpreter (for inspection and export). */
  graph(seqLen: number, o: Omit<ForwardOptions, 'onOp' | 'taps'> = {}): Graph {
    const opts = { ...this.defaults, ...o };
    return buildModel(
      opts.embedding ? { ...this.source, embedding: opts.embedding } : this.source,
      Engine.buildOptions(seqLen, opts),
    );
  }

  private weightBytes: number | undefined;
  /** The model's weights as float32, in bytes (from their shapes). */
  private bytes(): number {
    return (this.weightBytes ??= weightBytes(this.source.weights));
  }

  /** Whether every input up to S tokens runs on one prepared graph (the executor's shared length plan). */
  sharesGraph(S: number): boolean {
    return (
      S <= this.source.config.maxPositions &&
      this.executor.plan?.(S, this.defaults.precision ?? 'fp32', this.bytes())?.shared === true
    );
  }

  /** Frees what the runtime holds for every prepared graph (onnxruntime's sessions); graphs are prepared again when needed. */
  async release(): Promise<void> {
    const all = [...this.graphs.values()];
    this.graphs.clear();
    for (const g of all) await g.release?.();
  }

  /** Runs one sequence. */
  async forward(seq: Sequence, opts: ForwardOptions = {}): Promise<ForwardResult> {
    const o = { ...this.defaults, ...opts };
    const S = seq.ids.length;
    const c = this.source.config;
    if (S > c.maxPositions) {
      throw new ModernBertError(
        'BAD_INPUT',
        `the input has ${S} tokens but the model allows at most ${c.maxPositions} (max_position_embeddings)`,
        { tokens: S },
      );
    }
    for (let i = 0; i < S; i++) {
      const id = seq.ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
        throw new ModernBertError(
          'BAD_INPUT',
          `token id ${id} at position ${i} is outside the vocabulary (0..${c.vocabSize - 1})`,
          { position: i },
        );
      }
    }
    if (o.pack !== undefined && !seq.segments)
      throw new ModernBertError('BAD_ARGUMENT', 'a packed run needs segment ids', { pack: o.pack });
    const planned = this.executor.plan?.(S, o.precision ?? 'fp32', this.bytes());
    // Packed windows have one length already; on a runtime with a plan their head positions are an input too.
    // A plan's length is cut to what the model takes.
    const len = planned && Math.min(planned.len, c.maxPositions);
    const plan =
      o.pack !== undefined
        ? planned && { len: S, shared: false }
        : planned && len! >= S
          ? { len: len!, shared: planned.shared }
          : undefined;
    const interp = this.interpreter(S, o, plan);
    const g = interp.graph;
    const roles = o.taps === 'all' ? [...g.taps.keys()] : (o.taps ?? []);
    const keep = roles.map((r) => {
      const v = g.taps.get(r);
      if (!v) throw new ModernBertError('BAD_ARGUMENT', `this model has no value "${r}"`, { tap: r });
      return v;
    });
    const pad = plan && !plan.shared ? plan.len - S : 0;
    const inputs = Engine.inputs(pad ? padded(seq, pad, c.padTokenId) : seq, o.pack !== undefined);
    if (plan && g.inputs.some((i) => i.name === 'head_positions')) {
      inputs.head_positions = {
        dtype: 'int32',
        shape: [o.positions?.length ?? S],
        data: o.positions ? Int32Array.from(o.positions) : Int32Array.from({ length: S }, (_, i) => i),
      };
    }
    const out = await interp.run(inputs, { keep, onOp: o.onOp });
    // Values over every token of a padded input (taps, a body's hidden states) lose the padding's columns.
    const cut = (t: RtTensor) => (pad ? firstColumns(t, S) : t);
    const outputs = new Map(
      g.outputs.map((n) => [n, n === 'logits' ? unfoldLogits(out.get(n)!, c.vocabSize) : cut(out.get(n)!)]),
    );
    const taps = new Map(roles.map((r, i) => [r, cut(out.get(keep[i]!)!)]));
    return { outputs, taps };
  }

  /** The graph inputs of a sequence: its ids, and Hugging Face's attention_mask (1 = token, 0 = padding) or, packed, its segment ids. */
  static inputs(seq: Sequence, packed = false): Record<string, RtTensor> {
    const S = seq.ids.length;
    if (packed) {
      if (seq.segments?.length !== S)
        throw new ModernBertError(
          'BAD_ARGUMENT',
          `the segment ids (${seq.segments?.length ?? 0}) and the token ids (${S}) differ in length`,
        );
      return {
        input_ids: { dtype: 'int32', shape: [1, S], data: Int32Array.from(seq.ids) },
        segment_ids: { dtype: 'int32', shape: [1, S], data: Int32Array.from(seq.segments) },
      };
    }
    return {
      input_ids: { dtype: 'int32', shape: [1, S], data: Int32Array.from(seq.ids) },
      attention_mask: {
        dtype: 'int32',
        shape: [1, S],
        data: seq.attention ? Int32Array.from(seq.attention, (a) => (a ? 1 : 0)) : new Int32Array(S).fill(1),
      },
    };
  }

  /** The build options of a static graph of length S. */
  private static buildOptions(S: number, o: Omit<ForwardOptions, 'onOp' | 'taps'>): BuildOptions {
    // Padding as a per-key attention_mask input: O(S) and it lets local layers run banded; banded windows
    // cut per head, so that one head's are alive at a time (model/options.ts bandWindows).
    return {
      seqLen: S,
      dtype: 'fp32',
      norm: o.norm,
      head: o.head,
      positions: o.positions,
      maskFrom: o.pack === undefined ? 'attention' : undefined,
      attentionChunk: o.attentionChunk,
      pack: o.pack,
      ...(o.packBlocks === undefined ? {} : { packBlocks: o.packBlocks }),
      bandWindows: 'per-head',
    };
  }

  /** The prepared graph of a run: one per length, or the one that the executor's length plan picks. */
  private interpreter(S: number, o: Omit<ForwardOptions, 'onOp' | 'taps'>, plan: LengthPlan | undefined): Executor {
    const key = JSON.stringify(
      plan
        ? [
            plan.shared ? 'shared' : 'padded',
            plan.len,
            o.precision,
            o.norm,
            o.head,
            o.attentionChunk,
            o.pack,
            o.packBlocks,
            o.embedding,
          ]
        : [S, o.precision, o.norm, o.head, o.positions, o.attentionChunk, o.pack, o.packBlocks, o.embedding],
    );
    let it = this.graphs.get(key);
    if (!it) {
      const seqLen = plan ? (plan.shared ? [1, plan.len] : plan.len) : S;
      const opts: BuildOptions = {
        ...Engine.buildOptions(S, o),
        seqLen,
        ...(plan ? { positions: 'input' as const } : {}),
      };
      const source = o.embedding ? { ...this.source, embedding: o.embedding } : this.source;
      it = this.executor(buildModel(source, opts), o.precision ?? 'fp32', undefined, this.use);
      // Prepared graphs of other lengths hold large per-length tables; keep a few.
      if (this.graphs.size >= 4) {
        const [first, old] = this.graphs.entries().next().value!;
        this.graphs.delete(first);
        void old.release?.();
      }
      this.graphs.set(key, it);
    }
    return it;
  }
}

/** A sequence with `n` padding tokens after it (masked out). */
function padded(seq: Sequence, n: number, padId: number): Sequence {
  const S = seq.ids.length;
  return {
    ids: [...Array.from(seq.ids), ...new Array<number>(n).fill(padId)],
    attention: [
      ...(seq.attention ? Array.from(seq.attention) : new Array<number>(S).fill(1)),
      ...new Array<number>(n).fill(0),
    ],
  };
}

/** The first S columns of a (1, C, 1, W) tensor with W > S (other tensors as they are). */
function firstColumns(t: RtTensor, S: number): RtTensor {
  if (t.shape.length !== 4 || t.shape[3]! <= S || t.shape[2] !== 1) return t;
  const [, C, , W] = t.shape as [number, number, number, number];
  const out = new Float32Array(C * S);
  for (let ch = 0; ch < C; ch++) out.set(t.data.subarray(ch * W, ch * W + S), ch * S);
  return { dtype: t.dtype, shape: [1, C, 1, S], data: out };
}
