// Checkpoint -> .onnx: the one model graph (model.ts) in a weight form (plain, folded, rotated), lowered op
// by op to ONNX (onnx/lower.ts) with Hugging Face's interface, so that onnxruntime and transformers.js run it
// as they run optimum's exports: int64 input_ids and attention_mask, per-token outputs (1, S, width).

import { ModernBertError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { buildModel } from '../model/model.js';
import { defaultHead, type OutputHead } from '../model/options.js';
import { lowerGraph } from '../onnx/lower.js';
import { checkOnnxOutput, writeOnnx, type WriteOnnxResult } from '../onnx/write.js';
import { sourceName } from './convert.js';
import { VERSION } from '../version.js';
import type { Rotation } from '../rotation/rotation.js';
import { prepareVariant, type RotationKind } from '../model/variants.js';

export interface ExportOnnxOptions {
  out: string;
  /** A static length (banded local attention when long); undefined: any length up to max_position_embeddings. */
  seqLen?: number;
  fold: boolean;
  rotation: RotationKind;
  /** The rotation of --rotation learned, learned beforehand (learn/learned.ts learnRotation), as convert takes it. */
  learned?: Rotation;
  norm: 'l2' | 'rms';
  seed: number;
  /** Weights and activations; inputs and outputs stay int64 and float32. */
  precision: 'fp32' | 'fp16';
  head?: OutputHead;
  attentionChunk?: number;
  force: boolean;
  externalData: boolean;
  /** Files this run read besides the checkpoint (a calibration file): never written over. */
  inputs?: readonly (string | undefined)[];
  /** The most weight bytes one file may hold (tests make it small). */
  maxInlineBytes?: number;
}

export interface ExportOnnxReport extends WriteOnnxResult {
  variant: string;
  head: OutputHead;
  seqLen: number | 'dynamic';
  nodes: number;
  seconds: number;
}

/** The graph that export-onnx lowers (our interpreter runs the same one to check the export). */
export function exportGraph(ckpt: Checkpoint, o: Omit<ExportOnnxOptions, 'out' | 'force' | 'externalData' | 'inputs'>): { graph: Graph; variant: string; head: OutputHead } {
  const c = ckpt.config;
  if (o.seqLen !== undefined && o.seqLen > c.maxPositions) {
    throw new ModernBertError('BAD_ARGUMENT', `--seq-len ${o.seqLen} is longer than the model allows (max_position_embeddings ${c.maxPositions})`);
  }
  const variant = prepareVariant({ config: c, weights: ckpt.weights, embedding: ckpt.embedding }, { fold: o.fold, rotation: o.rotation, norm: o.norm, seed: o.seed }, o.learned);
  const head = o.head ?? defaultHead(ckpt);
  // A symbolic length 'S' (model.ts takes several lengths as "any of them"): positions and masks come from the input.
  const seqLen = o.seqLen ?? (c.maxPositions > 1 ? [1, c.maxPositions] : 1);
  const graph = buildModel(variant.source, { seqLen, dtype: o.precision, ioDtype: 'fp32', norm: variant.norm, maskFrom: 'attention', head, attentionChunk: o.attentionChunk });
  return { graph, variant: variant.name, head };
}

/** Exports a checkpoint as an ONNX model. */
export function exportOnnx(ckpt: Checkpoint, o: ExportOnnxOptions): ExportOnnxReport {
  const t0 = performance.now();
  const c = ckpt.config;
  const outputs = checkOnnxOutput(o.out, { force: o.force, externalData: o.externalData, inputs: [ckpt.dir, ...(o.inputs ?? [])] });
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
  const written = writeOnnx(lowered, outputs, {
    name: `${sourceName(ckpt)} (${head})`,
    docString: `${c.architecture} exported by modernbert-ane ${VERSION}: ${variant}, ${o.precision}`,
    metadata,
    force: o.force,
    externalData: o.externalData,
    maxInlineBytes: o.maxInlineBytes,
  });
  return { ...written, variant, head, seqLen: o.seqLen ?? 'dynamic', nodes: lowered.nodes.length, seconds: (performance.now() - t0) / 1000 };
}
