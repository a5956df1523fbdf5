// Which runtime finishes a command's work sooner, from measured costs: the setup before the first forward
// pass (our engine reads every weight into memory; onnxruntime maps the checkpoint and plans its session,
// and in float16 emulation also folds the weights' rounding), then a cost per token, several times lower on
// onnxruntime. The constants are seconds on synth-base (ModernBERT-base's shape, 599 MB of float32
// weights) on the project's 2-core machine (docs/PERFORMANCE.md, "Command-level benchmark", with the
// commands that measured them). Both runtimes' costs grow with the model's size alike, so which one wins
// holds for other sizes too.

import type { Graph } from '../ir/graph.js';
import type { Precision } from '../runtime/numerics.js';

/** What a command will run: its tokens over all forward passes, how many passes, and the model's size. */
export interface Workload {
  tokens: number;
  passes: number;
  /** The model's weights as float32, in bytes (SYNTH_BASE_BYTES when unknown). */
  bytes?: number;
}

/** synth-base's float32 weights, where the costs were measured. */
export const SYNTH_BASE_BYTES = 598_635_128;

interface Costs {
  /** Seconds before the first forward pass whatever the model (loading the runtime, its session). */
  fixed: number;
  /** Seconds before the first forward pass per GB of weights (reading them; for onnxruntime, its session). */
  perGB: number;
  /** Seconds per token of a forward pass, per GB of weights. */
  perTokenGB: number;
  /** Seconds per forward pass beyond its tokens (onnxruntime's run overhead). */
  perPass: number;
}

// Measured on synth-base (0.6 GB) and the built-in mini-trained (0.01 GB): predict of one short text, verify
// of goldens, embed of 300 texts. In float16 emulation onnxruntime pads each input to a static length
// (ortLengthPlan): about 32 tokens a pass.
const COSTS: Record<'fp32' | 'fp16', { engine: Costs; ort: Costs }> = {
  fp32: {
    engine: { fixed: 0.3, perGB: 1.5, perTokenGB: 0.0145, perPass: 0 },
    ort: { fixed: 0.45, perGB: 1.1, perTokenGB: 0.0018, perPass: 0.004 },
  },
  fp16: {
    engine: { fixed: 0.3, perGB: 3.2, perTokenGB: 0.04, perPass: 0 },
    ort: { fixed: 0.45, perGB: 3.3, perTokenGB: 0.006, perPass: 0.11 },
  },
};

/** Estimated wall seconds of the work on one runtime. */
export function estimateSeconds(w: Workload, runtime: 'engine' | 'ort', precision: Precision): number {
  const c = COSTS[precision === 'fp32' ? 'fp32' : 'fp16'][runtime];
  const gb = (w.bytes ?? SYNTH_BASE_BYTES) / 1e9;
  return c.fixed + gb * (c.perGB + w.tokens * c.perTokenGB) + w.passes * c.perPass;
}

/** Whether onnxruntime finishes the work sooner than our engine. */
export function prefersOrt(w: Workload, precision: Precision): boolean {
  return estimateSeconds(w, 'ort', precision) < estimateSeconds(w, 'engine', precision);
}

/** The work of one pass of a graph: its static length (a package's), or one token for a symbolic one, and its weights' size. */
export function workOf(graph: Graph): Workload {
  const ids = graph.inputs.find((i) => i.name === 'input_ids' || i.name === 'hidden_states');
  const S = ids?.type.shape[ids.type.shape.length - 1];
  const bytes = [...graph.consts.values()].reduce(
    (n, c) => n + 4 * c.type.shape.reduce<number>((p, d) => p * (typeof d === 'number' ? d : 1), 1),
    0,
  );
  return { tokens: typeof S === 'number' ? S : 1, passes: 1, bytes };
}

/** A model's weights as float32, in bytes, from their shapes. */
export function weightBytes(w: { names(): string[]; shape(name: string): number[] }): number {
  return w.names().reduce((n, name) => n + 4 * w.shape(name).reduce((p, d) => p * d, 1), 0);
}

/**
 * onnxruntime's cost of a forward pass beyond its tokens, in tokens' worth: 0.09 against 0.0038 CPU seconds
 * a token on synth-base (300 texts of 5-60 tokens one per pass, 30 of 100-500, and 512-token windows).
 */
const ORT_PASS_TOKENS = 24;

/**
 * Whether texts of these lengths run sooner one per pass, each at its own length, than packed into windows
 * of `window` tokens (`windows` of them), on a runtime that runs every length on one prepared graph: packing
 * pays its padding and a window's all-pairs attention, one pass per text pays the run's overhead.
 */
export function prefersOnePerPass(lengths: readonly number[], windows: number, window: number): boolean {
  const tokens = lengths.reduce((n, s) => n + s, 0);
  return lengths.length * ORT_PASS_TOKENS + tokens < windows * (ORT_PASS_TOKENS + window);
}

/** Characters per token assumed before tokenizing (English text runs at about four with ModernBERT's tokenizer). */
const CHARS_PER_TOKEN = 4;

/** The work of texts run one pass each, estimated from their length before they are tokenized. */
export function textsWork(texts: readonly string[]): Workload {
  return { tokens: texts.reduce((n, t) => n + Math.ceil(t.length / CHARS_PER_TOKEN) + 2, 0), passes: texts.length };
}

/** The work of texts packed into windows of `window` tokens (embed, predict --input). */
export function packedWork(texts: readonly string[], window: number): Workload {
  const { tokens } = textsWork(texts);
  return { tokens, passes: Math.max(1, Math.ceil(tokens / window)) };
}

/** The work of sequences of these lengths, one pass each (golden cases, probes). */
export function lengthsWork(lengths: readonly number[]): Workload {
  return { tokens: lengths.reduce((n, s) => n + s, 0), passes: lengths.length };
}
