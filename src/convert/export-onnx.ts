// Checkpoint -> .onnx: the one model graph (model.ts) in a weight form (plain, folded, rotated), lowered op
// by op to ONNX (onnx/lower.ts) with Hugging Face's interface, so that onnxruntime and transformers.js run it
// as they run optimum's exports: int64 input_ids and attention_mask, per-token outputs (1, S, width).

import { ModernBertError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { buildModel } from '../model/model.js';
import { defaultHead, type OutputHead } from '../model/options.js';
import { lowerGraph } from '../onnx/lower.js';
import { checkOnnxOutput, writeOnnx, type OnnxOutputs, type WriteOnnxResult } from '../onnx/write.js';
import { basename, resolve } from 'node:path';
import type { DownloadProgress } from '../hub/resolve.js';
import type { Precision } from '../runtime/numerics.js';
import { calibrationOf, learnedRotation, openSource } from './prepare.js';
import { sourceName } from './describe-package.js';
import { VERSION } from '../version.js';
import type { Rotation } from '../rotation/rotation.js';
import { keptRotation, type LearnReport } from '../learn/learned.js';
import { prepareVariant, type RotationKind } from '../model/variants.js';

/** How to export a checkpoint as ONNX; every option has the command's default. */
export interface ExportOnnxOptions {
  /** The file to write (default: the model's name with .onnx, in the current folder). */
  out?: string;
  /** Replace an existing file. */
  force?: boolean;
  /** A static length (banded local attention when long); default any length up to max_position_embeddings. */
  seqLen?: number;
  /** Weights and activations (default 'fp32'); inputs and outputs stay int64 and float32. */
  precision?: 'fp32' | 'fp16';
  /** Fold the norms into the matrices (default: with precision 'fp16', where the plain model overflows). */
  fold?: boolean;
  /** Residual-stream rotation of the folded model (default 'none'). */
  rotation?: RotationKind;
  /** RMSNorm of the folded model: 'l2' (overflow-safe, default) or 'rms'. */
  norm?: 'l2' | 'rms';
  /** Seed of the Hadamard signs and of rotation learning (default 0). */
  seed?: number;
  /** Output head (default: the checkpoint's own). */
  head?: OutputHead;
  attentionChunk?: number;
  /** Write the weights to `out`.data beside the model (needed above 2 GiB). */
  externalData?: boolean;
  /** Texts that rotation 'learned' learns on (default: built-in sentences; random ids without a tokenizer). */
  calibration?: string[];
  /** Random token ids for rotation 'learned' on a model without a tokenizer (default 128). */
  random?: number;
  /** The float16 emulation that judges rotation 'learned''s candidates, as convert's (default 'fp16'). */
  fidelity?: Precision;
  /** Time budget of rotation 'learned', in seconds (default 60). */
  learnSeconds?: number;
  /** A branch, tag or commit of a Hub id. */
  revision?: string;
  /** Told the bytes downloaded so far while a Hub model downloads. */
  download?: DownloadProgress;
  /** Told the progress of rotation learning. */
  onProgress?: (stage: 'learn', done: number, total: number) => void;
  /** The most weight bytes one file may hold (tests make it small). */
  maxInlineBytes?: number;
}

/** The weight form and graph of an export, defaults applied (exportOnnx makes it; tests build graphs from it). */
export interface ExportPlan {
  seqLen?: number | undefined;
  fold: boolean;
  rotation: RotationKind;
  /** The rotation of 'learned', learned beforehand (learn/learned.ts learnRotation), as convert takes it. */
  learned?: Rotation | undefined;
  /** What learning it measured and kept. */
  learning?: LearnReport | undefined;
  norm: 'l2' | 'rms';
  seed: number;
  precision: 'fp32' | 'fp16';
  head?: OutputHead | undefined;
  attentionChunk?: number | undefined;
}

export interface ExportOnnxReport extends WriteOnnxResult {
  /** What rotation learning measured and kept (rotation 'learned'). */
  learning: LearnReport | null;
  variant: string;
  head: OutputHead;
  seqLen: number | 'dynamic';
  nodes: number;
  seconds: number;
}

/** The graph that export-onnx lowers (our interpreter runs the same one to check the export). */
export function exportGraph(ckpt: Checkpoint, o: ExportPlan): { graph: Graph; variant: string; head: OutputHead } {
  const c = ckpt.config;
  if (o.seqLen !== undefined && o.seqLen > c.maxPositions) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`seqLen: ${o.seqLen}\` is longer than the model allows (max_position_embeddings ${c.maxPositions})`,
      { option: 'seqLen' },
    );
  }
  const variant = prepareVariant(
    { config: c, weights: ckpt.weights, embedding: ckpt.embedding },
    { fold: o.fold, rotation: o.rotation, norm: o.norm, seed: o.seed },
    o.learned,
  );
  const head = o.head ?? defaultHead(ckpt);
  // A symbolic length 'S' (model.ts takes several lengths as "any of them"): positions and masks come from the input.
  const seqLen = o.seqLen ?? (c.maxPositions > 1 ? [1, c.maxPositions] : 1);
  const graph = buildModel(variant.source, {
    seqLen,
    dtype: o.precision,
    ioDtype: 'fp32',
    norm: variant.norm,
    maskFrom: 'attention',
    head,
    attentionChunk: o.attentionChunk,
  });
  return { graph, variant: variant.name, head };
}

/** The export's weight form and graph options from the user's: the defaults, and the learned rotation learned. */
async function exportPlan(ckpt: Checkpoint, o: ExportOnnxOptions): Promise<ExportPlan> {
  const precision = o.precision ?? 'fp32';
  const fold = o.fold ?? precision === 'fp16';
  const rotation = o.rotation ?? 'none';
  if (!fold && rotation !== 'none')
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`rotation: ${rotation}\` rotates the folded model: add \`fold: true\``,
      { option: 'rotation' },
    );
  const norm = o.norm ?? 'l2';
  const seed = o.seed ?? 0;
  let learned: Rotation | undefined;
  let learning: LearnReport | undefined;
  let used = rotation;
  if (rotation === 'learned') {
    // The same rotation as convert's rotation 'learned' would fold (same calibration, seed and budget).
    const { calibration } = await calibrationOf(ckpt, { texts: o.calibration, random: o.random, seed });
    ({ learned, learnReport: learning } = await learnedRotation(ckpt, calibration, {
      seed,
      norm,
      precision: o.fidelity ?? 'fp16',
      seconds: o.learnSeconds ?? 60,
      onProgress: (d, t) => o.onProgress?.('learn', d, t),
    }));
    // A discarded learned rotation: the export is what was kept instead, and says so.
    used = keptRotation(learning);
    if (used !== 'learned') learned = undefined;
  }
  return {
    seqLen: o.seqLen,
    fold,
    rotation: used,
    learned,
    learning,
    norm,
    seed,
    precision,
    head: o.head,
    attentionChunk: o.attentionChunk,
  };
}

/** Exports a checkpoint (a folder, a Hub id `org/name[@revision]`, or one already open) as an ONNX model. */
export async function exportOnnx(
  model: string | Checkpoint,
  options: ExportOnnxOptions = {},
): Promise<ExportOnnxReport> {
  const { ckpt, close } = await openSource(model, options, 'export-onnx');
  try {
    const out = options.out ?? `${basename(resolve(ckpt.dir))}.onnx`;
    // Before minutes of learning: the model file and its .data, never over the checkpoint's files.
    const outputs = checkOnnxOutput(out, {
      force: Boolean(options.force),
      externalData: Boolean(options.externalData),
      inputs: [ckpt.dir],
    });
    const plan = await exportPlan(ckpt, options);
    return writeOnnxExport(ckpt, plan, {
      outputs,
      force: Boolean(options.force),
      externalData: Boolean(options.externalData),
      maxInlineBytes: options.maxInlineBytes,
    });
  } finally {
    close();
  }
}

function writeOnnxExport(
  ckpt: Checkpoint,
  o: ExportPlan,
  file: { outputs: OnnxOutputs; force: boolean; externalData: boolean; maxInlineBytes?: number | undefined },
): ExportOnnxReport {
  const t0 = performance.now();
  const c = ckpt.config;
  const { graph, variant, head } = exportGraph(ckpt, o);
  const lowered = lowerGraph(graph, { io: 'hf', vocabSize: c.vocabSize });
  const metadata: Record<string, string> = {
    converter: `modernbert-ane ${VERSION}`,
    source_model: sourceName(ckpt),
    ...(ckpt.source ? { source_commit: ckpt.source.commit } : {}),
    architecture: c.architecture,
    head,
    labels: JSON.stringify(c.labels),
    special_token_ids: JSON.stringify({ pad: c.padTokenId, cls: c.clsTokenId, sep: c.sepTokenId }),
    weight_form: variant,
    precision: o.precision,
    sequence_length: o.seqLen === undefined ? `1..${c.maxPositions}` : String(o.seqLen),
  };
  const written = writeOnnx(lowered, file.outputs, {
    name: `${sourceName(ckpt)} (${head})`,
    docString: `${c.architecture} exported by modernbert-ane ${VERSION}: ${variant}, ${o.precision}`,
    metadata,
    force: file.force,
    externalData: file.externalData,
    maxInlineBytes: file.maxInlineBytes,
  });
  return {
    ...written,
    learning: o.learning ?? null,
    variant,
    head,
    seqLen: o.seqLen ?? 'dynamic',
    nodes: lowered.nodes.length,
    seconds: (performance.now() - t0) / 1000,
  };
}
