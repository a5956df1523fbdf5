// inspect(model): what a checkpoint or a Core ML package is, as one plain object (the `inspect` command prints
// it, or with --json writes it as it is).

import type { FeatureInfo } from '../coreml/description.js';
import type { HubSource } from '../hub/id.js';
import type { DownloadProgress } from '../hub/resolve.js';
import { isConstexpr } from '../ops/index.js';
import { opBudget } from '../ane/placement.js';
import { longestLength } from '../ane/predict-package.js';
import { defaultRules } from '../ane/rules.js';
import { openModel, type LoadedModel } from '../run/load.js';
import type { OutputHead } from '../model/options.js';
import type { PackageRunner } from '../run/package-runner.js';

/** How inspect opens a model. */
export interface InspectOptions {
  /** A branch, tag or commit of a Hub id. */
  revision?: string;
  /** Told the bytes downloaded so far while a Hub model downloads. */
  download?: DownloadProgress;
}

/** A checkpoint's configuration, size and head. */
export interface CheckpointInspection {
  kind: 'checkpoint';
  path: string;
  source: HubSource | null;
  architecture: string;
  head: OutputHead;
  parameters: number;
  dtypes: string[];
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  head_dim: number;
  vocab: number;
  max_positions: number;
  local_window: number;
  /** G (global) or L (sliding window) per layer. */
  layer_kinds: string;
  rope_theta: { global: number; local: number };
  norm_eps: number;
  biases: { norm: boolean; attention: boolean; mlp: boolean; decoder: boolean; classifier: boolean };
  activations: { hidden: string; classifier: string };
  classifier_pooling: 'cls' | 'mean';
  labels: string[];
  special_ids: { pad: number; cls: number; sep: number; mask: number | null };
  tokenizer: boolean;
}

/** An input or output of a package. */
export interface FeatureInspection {
  name: string;
  dtype: string;
  shape: (number | string)[];
  enumerated_shapes?: number[][];
  description?: string;
}

/** A package's interface, program and metadata. */
export interface PackageInspection {
  kind: 'package';
  path: string;
  specification_version: number;
  target: string;
  opset: string;
  head: OutputHead;
  labels: string[];
  sequence_lengths: number[];
  /** A multifunction package's functions (the default first), each with its head and bucket length. */
  functions: { name: string; head?: OutputHead; labels?: string[]; seq_len?: number }[];
  inputs: FeatureInspection[];
  outputs: FeatureInspection[];
  parameters: number;
  weight_dtypes: string[];
  ops: Record<string, number>;
  op_count: number;
  /** Ops that run (constexpr ops decompress weights at load time): what the Neural Engine's op budget counts. */
  non_constant_ops: number;
  /** The op budget at the package's longest length (ane/placement.ts opBudget). */
  op_budget: number;
  taps: string[];
  tokenizer: boolean;
  metadata: Record<string, string | null>;
}

/** What inspect finds: a checkpoint or a package (`kind` tells them apart). */
export type Inspection = CheckpointInspection | PackageInspection;

/** Describes a checkpoint folder, a Hub id or a .mlpackage. */
export async function inspect(model: string, options: InspectOptions = {}): Promise<Inspection> {
  const m = await openModel(model, {
    ...(options.revision === undefined ? {} : { revision: options.revision }),
    ...(options.download ? { progress: options.download } : {}),
  });
  try {
    return m.pkg ? inspectPackage(m) : inspectCheckpoint(m);
  } finally {
    m.close();
  }
}

function inspectCheckpoint(model: LoadedModel): CheckpointInspection {
  const c = model.config!;
  const w = model.weights!;
  // Tied decoder weights are one tensor stored once.
  const stored = w.names().filter((n) => !(n === 'decoder.weight' && c.tieWordEmbeddings));
  return {
    path: model.path,
    kind: 'checkpoint',
    source: model.source ?? null,
    architecture: c.architecture,
    head: model.head,
    parameters: stored.reduce((s, n) => s + w.shape(n).reduce((a, b) => a * b, 1), 0),
    dtypes: model.dtypes,
    hidden: c.hidden,
    intermediate: c.intermediate,
    layers: c.numLayers,
    heads: c.numHeads,
    head_dim: c.headDim,
    vocab: c.vocabSize,
    max_positions: c.maxPositions,
    local_window: c.localWindow,
    layer_kinds: c.layerTypes.map((t) => (t === 'global' ? 'G' : 'L')).join(''),
    rope_theta: { global: c.globalRopeTheta, local: c.localRopeTheta },
    norm_eps: c.normEps,
    biases: {
      norm: c.normBias,
      attention: c.attentionBias,
      mlp: c.mlpBias,
      decoder: c.decoderBias,
      classifier: c.classifierBias,
    },
    activations: { hidden: c.hiddenActivation, classifier: c.classifierActivation },
    classifier_pooling: c.classifierPooling,
    labels: c.labels,
    special_ids: {
      pad: c.padTokenId,
      cls: c.clsTokenId,
      sep: c.sepTokenId,
      mask: model.tokenizer?.maskTokenId ?? null,
    },
    tokenizer: Boolean(model.tokenizer),
  };
}

function inspectPackage(model: LoadedModel): PackageInspection {
  const pkg = model.pkg!;
  const runner = model.runner as PackageRunner;
  const meta = pkg.description.metadata;
  const ops = new Map<string, number>();
  for (const op of pkg.graph.ops) ops.set(op.op, (ops.get(op.op) ?? 0) + 1);
  let parameters = 0;
  // Compressed weights count as the tensors their constexpr ops produce, not as their tables and scales.
  const size = (shape: readonly (number | string)[]) => (shape as number[]).reduce((a, b) => a * b, 1);
  const constexprInputs = new Set(
    pkg.graph.ops
      .filter((op) => isConstexpr(op.op))
      .flatMap((op) => Object.values(op.inputs).filter((a): a is string => typeof a === 'string')),
  );
  for (const c of pkg.graph.consts.values())
    if ((c.type.dtype === 'fp16' || c.type.dtype === 'fp32') && !constexprInputs.has(c.name))
      parameters += size(c.type.shape);
  for (const op of pkg.graph.ops) if (isConstexpr(op.op)) parameters += size(op.outputs[0]!.type.shape);
  // The Neural Engine's op budget counts the ops that run (constexpr ops decompress weights at load time).
  const nonConstant = pkg.graph.ops.filter((op) => !isConstexpr(op.op)).length;
  const budget = opBudget(defaultRules().get('op-count')!.threshold!, longestLength(pkg.description));
  const feature = (f: FeatureInfo): FeatureInspection => ({
    name: f.name,
    dtype: f.dtype,
    shape: f.shape,
    ...(f.enumeratedShapes ? { enumerated_shapes: f.enumeratedShapes } : {}),
    ...(f.description ? { description: f.description } : {}),
  });
  return {
    path: model.path,
    kind: 'package',
    specification_version: pkg.specificationVersion,
    target: pkg.target,
    opset: pkg.opset,
    head: model.head,
    labels: model.labels,
    sequence_lengths: runner.info.seqLens,
    functions:
      pkg.functions.length > 1 ? pkg.functions.map((name) => ({ name, ...(runner.info.functions[name] ?? {}) })) : [],
    inputs: pkg.description.inputs.map(feature),
    outputs: pkg.description.outputs.map(feature),
    parameters,
    weight_dtypes: model.dtypes,
    ops: Object.fromEntries([...ops].sort((a, b) => b[1] - a[1])),
    op_count: pkg.graph.ops.length,
    non_constant_ops: nonConstant,
    op_budget: budget,
    taps: [...pkg.graph.taps.keys()],
    tokenizer: Boolean(model.tokenizer),
    metadata: {
      short_description: meta.shortDescription ?? null,
      author: meta.author ?? null,
      version: meta.versionString ?? null,
      ...(meta.userDefined ?? {}),
    },
  };
}
