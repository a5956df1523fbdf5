// What every runner shares: the inputs of a forward pass (token ids, attention, packed segments), its
// options and result, the Runner interface (our engine, a Core ML package), the Executor that runs one
// prepared graph (our interpreter, onnxruntime), and the token ids a model reserves.

import type { ReadPackageResult } from '../coreml/mil-read.js';
import type { Graph } from '../ir/graph.js';
import type { EmbeddingSpec } from '../model/checkpoint.js';
import type { NormStyle, OutputHead } from '../model/options.js';
import type { Precision } from '../runtime/numerics.js';
import type { RtTensor } from '../runtime/tensor.js';
import type { Workload } from './runtime-cost.js';

/** One sequence: token ids and which of them are real (1) or padding (0). */
export interface Sequence {
  ids: ArrayLike<number>;
  attention?: ArrayLike<number>;
  /** Packed runs: which text each token belongs to, 1..K, 0 = padding (model/packing.ts). */
  segments?: ArrayLike<number>;
}

export interface ForwardOptions {
  precision?: Precision;
  norm?: NormStyle;
  head?: OutputHead;
  /** How the embedding head pools (a checkpoint's own sentence-transformers spec, else mean, when absent). */
  embedding?: EmbeddingSpec;
  /** Evaluate a per-token head only at these positions. */
  positions?: number[];
  /** Queries per chunk of global attention (model/options.ts DEFAULT_ATTENTION_CHUNK when absent). */
  attentionChunk?: number;
  /** Run up to this many texts per window, told apart by Sequence.segments (model/packing.ts). */
  pack?: number;
  /** Packed texts each lie inside one block of this many tokens (model/options.ts packBlocks; checkpoints only). */
  packBlocks?: number;
  /** Also return these taps ('hidden_states.3', 'residual.5', ...), or 'all'. */
  taps?: string[] | 'all';
  onOp?: (done: number, total: number) => void;
}

export interface ForwardResult {
  /** The head's output: 'logits', 'embedding' or 'hidden_states', as (1, C, 1, S), (1, L) or (1, C). */
  outputs: Map<string, RtTensor>;
  /** Tapped values by role. */
  taps: Map<string, RtTensor>;
}

/** Anything that runs sequences: a checkpoint's Engine or a Core ML package. */
export interface Runner {
  numLayers: number;
  forward(seq: Sequence, o?: ForwardOptions): Promise<ForwardResult>;
  /** Whether the runner can return a tapped value ('hidden_states.3'). */
  hasTap(role: string): boolean;
  /** Whether every input up to S tokens runs on one prepared graph, so that inputs of many lengths cost no setup each. */
  sharesGraph?(S: number): boolean;
}

/** What runs a prepared graph: our Interpreter, or another runtime with its `run` (ort-executor.ts). */
export interface Executor {
  readonly graph: Graph;
  /** False when only the graph's outputs can be read back (Core ML): no taps then. */
  readonly tapsAvailable?: boolean;
  run(
    inputs: Record<string, RtTensor>,
    opts?: { keep?: string[]; onOp?: (done: number, total: number) => void },
  ): Promise<Map<string, RtTensor>>;
  /** Frees what the runtime holds for this graph (onnxruntime's sessions) before the garbage collector would. */
  release?(): Promise<void>;
}

/** The package a graph was read from (absent for a checkpoint's graph): runtimes that load packages themselves need it. */
export interface PackageSource {
  path: string;
  pkg: ReadPackageResult;
}

/**
 * Which graph runs an input of S tokens, for a runtime whose setup is costly (onnxruntime: a session reads
 * every weight), so that it sets up once for many lengths: one graph with a symbolic length for every input
 * up to `len` tokens (`shared`), or a static graph of `len` >= S tokens that the input is padded to. Either
 * takes the head's positions as an input. Padding keys are masked, so real tokens see exactly what they see
 * unpadded.
 */
export interface LengthPlan {
  len: number;
  shared: boolean;
}

/** How a prepared graph will be used, for a runtime whose setup can be traded against the cost of its runs. */
export interface GraphUse {
  /** About how many forward passes will run it before it is released (absent: many). */
  runs?: number;
}

/** Prepares a graph to run at a precision; `plan` (absent: one graph per length) says which graph serves a length. */
export type ExecutorFactory = ((
  graph: Graph,
  precision: Precision,
  source?: PackageSource,
  use?: GraphUse,
) => Executor) & {
  /** `bytes`: the model's float32 weights (a runtime chosen by the work may weigh its setup by them). */
  plan?: (S: number, precision: Precision, bytes?: number) => LengthPlan | undefined;
  /**
   * Whether the runtime reads weights that lie in files in place (Const.stored), rather than copies in memory
   * (a runtime chosen by the work decides from `work` when it was not told its own).
   */
  readsFiles?: (work: Workload) => boolean;
};

/** The token ids of a model's vocabulary that inputs are checked and drawn against. */
export interface ModelIds {
  vocabSize: number;
  maxLen: number;
  clsTokenId: number;
  sepTokenId: number;
  /** Ids never drawn at random (pad, mask, ...). */
  special: number[];
}
