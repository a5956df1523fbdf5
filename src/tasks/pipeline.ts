// The library's front door, after transformers.js: `const fill = await pipeline('fill-mask')`, then
// `await fill('She opened the [MASK].')`. A pipeline opens the model once (a checkpoint folder, a .mlpackage
// or a Hub id; the built-in model by default) on the runtime the commands would pick (run/runtime-choice.ts),
// and runs each call's texts packed into windows (tasks/batch.ts) through the task table (task-table.ts).

import { ModernBertError } from '../errors.js';
import type { DownloadProgress } from '../hub/resolve.js';
import { packageInfo } from '../coreml/package-info.js';
import { openModel, type LoadedModel } from '../run/load.js';
import { chooseExecutor, type AnyRuntime, type ExecutorChoice } from '../run/executor-choice.js';
import type { ComputeUnits } from '../run/coreml/session.js';
import { setKernelThreads } from '../runtime/kernels/index.js';
import type { Precision } from '../runtime/numerics.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { runBatch, type BatchOptions, type BatchStats } from './batch.js';
import type {
  EntityGroup,
  Features,
  FillMaskItem,
  TaskName,
  TextClassificationItem,
  TokenClassificationItem,
} from './results.js';
import {
  TASKS,
  type FeatureExtractionOptions,
  type FillMaskOptions,
  type TaskTypes,
  type TextClassificationOptions,
  type TokenClassificationOptions,
} from './task-table.js';

/** How a pipeline opens and runs its model; every option may be left out. */
export interface PipelineOptions {
  /** What runs the model at float32: 'ort' (onnxruntime-node, the default when it is installed), 'engine' (ours), or 'coreml' (a package on Core ML itself, macOS). */
  runtime?: AnyRuntime;
  /** With runtime 'coreml': where Core ML may run the model (default 'all'). */
  computeUnits?: ComputeUnits;
  /** 'fp32' (the default), or a float16 emulation of the Neural Engine ('fp16', 'fp16-fused', 'fp16-acc16'), which runs on our engine. */
  precision?: Precision;
  /** Threads of the CPU kernels (and onnxruntime's), for the whole process; default every core, or MODERNBERT_ANE_THREADS. */
  threads?: number;
  /** A branch, tag or commit of a Hub id (as `org/name@revision`). */
  revision?: string;
  /** A tokenizer.json, or a folder with one: for a package converted without its tokenizer. */
  tokenizer?: string;
  /** A head package (convert's `split`) to run on the model, its body package. */
  headPackage?: string;
  /** The function of a multifunction package (default: one whose head the task reads). */
  function?: string;
  /** Tokens per window (default 512 for checkpoints, the package's length for packages). */
  window?: number;
  /** Most texts per window (default 64 for checkpoints; a package's own). */
  pack?: number;
  /** Cut texts longer than the window (keeping the closing [SEP]) instead of failing. */
  truncate?: boolean;
  /** Prepended to every text (a sentence-transformers prompt such as "search_query: "). */
  prefix?: string;
  /** Told the bytes downloaded so far while a Hub model downloads. */
  progress?: DownloadProgress;
}

/** What every pipeline has beside its call. */
export interface PipelineBase {
  readonly task: TaskName;
  /** The folder or package that was opened. */
  readonly model: string;
  /** What runs it: 'ort', 'engine' or 'coreml'. */
  /** 'auto': onnxruntime or our engine, as the first call's work decides. */
  readonly runtime: AnyRuntime | 'auto';
  /** Closes the model's files; the pipeline cannot be called after. The CPU kernels' threads stop with the last pipeline. */
  dispose(): Promise<void>;
}

/** `await fill(text)`: the candidates of each [MASK], best first (several masks: `mask` tells them apart). */
export interface FillMaskPipeline extends PipelineBase {
  (text: string, options?: FillMaskOptions): Promise<FillMaskItem[]>;
  (texts: readonly string[], options?: FillMaskOptions): Promise<FillMaskItem[][]>;
}

/** `await classify(text)`: the most likely label (top_k labels), best first. */
export interface TextClassificationPipeline extends PipelineBase {
  (text: string, options?: TextClassificationOptions): Promise<TextClassificationItem[]>;
  (texts: readonly string[], options?: TextClassificationOptions): Promise<TextClassificationItem[][]>;
}

/** Strategies that group tokens into entities. */
export type GroupingStrategy = 'simple' | 'first' | 'average' | 'max';

/** `await ner(text)`: a label per token, or with an aggregation_strategy the entities. */
export interface TokenClassificationPipeline extends PipelineBase {
  (
    text: string,
    options?: TokenClassificationOptions & { aggregation_strategy?: 'none' },
  ): Promise<TokenClassificationItem[]>;
  (
    texts: readonly string[],
    options?: TokenClassificationOptions & { aggregation_strategy?: 'none' },
  ): Promise<TokenClassificationItem[][]>;
  (
    text: string,
    options: TokenClassificationOptions & { aggregation_strategy: GroupingStrategy },
  ): Promise<EntityGroup[]>;
  (
    texts: readonly string[],
    options: TokenClassificationOptions & { aggregation_strategy: GroupingStrategy },
  ): Promise<EntityGroup[][]>;
  (text: string, options?: TokenClassificationOptions): Promise<TokenClassificationItem[] | EntityGroup[]>;
  (
    texts: readonly string[],
    options?: TokenClassificationOptions,
  ): Promise<(TokenClassificationItem[] | EntityGroup[])[]>;
}

/** `await embed(texts)`: a [texts, hidden] tensor of pooled vectors, or with pooling 'none' [texts, tokens, hidden] (zero-padded). */
export interface FeatureExtractionPipeline extends PipelineBase {
  (
    texts: string | readonly string[],
    options: FeatureExtractionOptions & { pooling: 'none' },
  ): Promise<Features<number[][][]>>;
  (texts: string | readonly string[], options?: FeatureExtractionOptions): Promise<Features<number[][]>>;
}

/** The pipeline of each task. */
export interface Pipelines {
  'fill-mask': FillMaskPipeline;
  'text-classification': TextClassificationPipeline;
  'token-classification': TokenClassificationPipeline;
  'feature-extraction': FeatureExtractionPipeline;
}

/** A model opened for tasks, with its tokenizer: what pipeline() and the commands run. */
export interface TaskModel {
  model: LoadedModel;
  tok: Tokenizer;
  /** What runs it, and the Core ML session it opened (closed with the model). */
  executor: ExecutorChoice;
}

/** What opens a task model: the pipeline's options, and (the commands') an executor already chosen. */
export interface TaskModelOptions extends PipelineOptions {
  executor?: ExecutorChoice;
}

let open = 0;

/**
 * Opens a model for `task` (undefined: the model's own head's task): the runtime chosen as the commands choose
 * it, a multifunction package's function picked by the task's head, and a tokenizer required.
 */
export async function openTaskModel(
  name: string | undefined,
  task: TaskName | undefined,
  o: TaskModelOptions = {},
): Promise<TaskModel> {
  if (o.threads !== undefined) setKernelThreads(o.threads);
  const choice =
    o.executor ?? (await chooseExecutor({ runtime: o.runtime, precision: o.precision, computeUnits: o.computeUnits }));
  const openAs = (fn: string | undefined) =>
    openModel(name, {
      ...(o.precision === undefined ? {} : { precision: o.precision }),
      ...(o.tokenizer === undefined ? {} : { tokenizer: o.tokenizer }),
      ...(o.headPackage === undefined ? {} : { headPackage: o.headPackage }),
      ...(fn === undefined ? {} : { function: fn }),
      ...(o.revision === undefined ? {} : { revision: o.revision }),
      ...(o.progress === undefined ? {} : { progress: o.progress }),
      ...(choice.factory ? { executor: choice.factory } : {}),
    });
  let model: LoadedModel;
  try {
    model = await openAs(o.function);
  } catch (e) {
    await choice.session?.close();
    throw e;
  }
  const fn = o.function === undefined && task !== undefined ? functionFor(model, TASKS[task].head) : undefined;
  if (fn !== undefined) {
    model.close();
    model = await openAs(fn);
  }
  const tok = model.tokenizer;
  if (!tok) {
    model.close();
    await choice.session?.close();
    throw new ModernBertError(
      'FILE_NOT_FOUND',
      `${model.path} has no tokenizer.json, which ${task ?? 'predict'} needs: give \`tokenizer\` (a tokenizer.json or its folder)`,
      { path: model.path, option: 'tokenizer' },
    );
  }
  open++;
  return { model, tok, executor: choice };
}

/** A multifunction package's function with `head`, when its default function has another head. */
function functionFor(model: LoadedModel, head: string): string | undefined {
  if (!model.pkg || model.head === head || model.pkg.functions.length < 2) return undefined;
  const functions = packageInfo(model.pkg, model.path).functions;
  return Object.keys(functions).find((name) => functions[name]!.head === head);
}

/** Closes a task model; the kernel threads stop when no model is left open. */
export async function closeTaskModel(tm: TaskModel): Promise<void> {
  tm.model.close();
  await tm.executor.session?.close();
  if (--open === 0) {
    const { shutdownRuntime } = await import('../runtime/shutdown.js');
    await shutdownRuntime();
  }
}

/** Runs a task on texts: one result per text, in order, and the batch's figures. */
export async function runTask<T extends TaskName>(
  tm: TaskModel,
  task: T,
  texts: readonly string[],
  options: TaskTypes[T]['options'],
  batch: BatchOptions = {},
): Promise<{ results: TaskTypes[T]['result'][]; stats: BatchStats }> {
  const plan = TASKS[task].plan(tm.model, tm.tok, options);
  return runBatch(tm.model, tm.tok, texts, plan, batch);
}

/** Row-major data as nested arrays of `dims`. */
function nested(data: Float32Array, dims: readonly number[]): unknown {
  if (dims.length === 1) return Array.from(data);
  const n = dims.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: dims[0]! }, (_, i) => nested(data.subarray(i * n, (i + 1) * n), dims.slice(1)));
}

/** One tensor of every text's features: [N, C], or for per-token vectors [N, T, C] padded with zeros to the longest. */
export function stackFeatures(rows: readonly Float32Array[], hidden: number, perToken: boolean): Features<never> {
  const lengths = rows.map((r) => r.length / hidden);
  const T = Math.max(0, ...lengths);
  const dims = perToken ? [rows.length, T, hidden] : [rows.length, hidden];
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
  rows.forEach((r, i) => data.set(r, i * (perToken ? T * hidden : hidden)));
  return { type: 'float32', data, dims, tolist: () => nested(data, dims) as never };
}

function checkTexts(input: unknown): string[] {
  const texts = typeof input === 'string' ? [input] : Array.isArray(input) ? input : undefined;
  if (!texts || texts.some((t) => typeof t !== 'string'))
    throw new ModernBertError('BAD_ARGUMENT', 'a pipeline takes a text or an array of texts');
  if (texts.length === 0)
    throw new ModernBertError('BAD_ARGUMENT', 'no texts given: an empty array has nothing to run');
  return texts as string[];
}

/** The width of a model's per-token vectors: its config's, or its body package's (1, C, 1, S) output's. */
function hiddenSize(model: LoadedModel): number {
  return model.config?.hidden ?? model.pkg?.description.outputs[0]?.shape[1] ?? 0;
}

/**
 * Opens `model` (a checkpoint folder, a .mlpackage or a Hub id `org/name[@revision]`; the built-in model when
 * left out) for `task`, and returns the function that runs it on a text or an array of texts (arrays run packed,
 * several texts per window).
 */
export async function pipeline<T extends TaskName>(
  task: T,
  model?: string,
  options: PipelineOptions = {},
): Promise<Pipelines[T]> {
  if (!(task in TASKS))
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `unknown task ${JSON.stringify(task)}: one of ${Object.keys(TASKS).join(', ')}`,
      { task },
    );
  const tm = await openTaskModel(model, task, options);
  try {
    TASKS[task].plan(tm.model, tm.tok, {}); // a model without the task's head fails here, not at the first call
  } catch (e) {
    await closeTaskModel(tm);
    throw e;
  }
  const { window, pack, truncate, prefix } = options;
  const batch: BatchOptions = { window, pack, truncate, prefix };
  let disposed = false;
  const call = async (
    input: string | readonly string[],
    callOptions: TaskTypes[T]['options'] = {},
  ): Promise<unknown> => {
    if (disposed) throw new ModernBertError('BAD_ARGUMENT', 'this pipeline was disposed');
    const texts = checkTexts(input);
    const { results } = await runTask(tm, task, texts, callOptions, batch);
    if (task === 'feature-extraction') {
      const perToken = (callOptions as FeatureExtractionOptions).pooling === 'none';
      const rows = results as Float32Array[];
      return stackFeatures(rows, perToken ? hiddenSize(tm.model) : rows[0]!.length, perToken);
    }
    return typeof input === 'string' ? results[0] : results;
  };
  const base: PipelineBase = {
    task,
    model: tm.model.path,
    runtime: tm.executor.runtime,
    dispose: async () => {
      if (disposed) return;
      disposed = true;
      await closeTaskModel(tm);
    },
  };
  // One function with the overloads of Pipelines[T]: the call's result is typed by them, not here.
  return Object.assign(call, base) as unknown as Pipelines[T];
}
