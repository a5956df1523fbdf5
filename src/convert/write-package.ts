// A conversion plan -> .mlpackage: the weight form (folded, rotated), the one model graph at the planned
// lengths, the weights streamed into the package, and its float16 fidelity measured before the package is
// committed (the report goes into its metadata). convert.ts makes the plan from the user's options.

import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeMLPackage, type WriteStats } from '../coreml/mil-write.js';
import { BlobReader } from '../coreml/milblob.js';
import type { Graph, StoredTensor } from '../ir/graph.js';
import { checkHeadsOptions, writeHeads, type HeadsOptions } from './heads.js';
import { checkPackageOutput, TOKENIZER_ITEM_PATH, type ExtraItem } from '../coreml/package.js';
import { atLeast, type Target } from '../ir/target.js';
import { META } from '../coreml/package-info.js';
import { ModernBertError } from '../errors.js';
import { measureFidelity, type FidelityForm, type FidelityReport, type ReferenceRun } from '../eval/fidelity.js';
import { nonFiniteSummary } from '../eval/fidelity-text.js';
import { startReferenceThread } from '../eval/reference-thread.js';
import type { ProbeSequence } from '../eval/inputs.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { CachedWeights } from '../run/engine.js';
import type { ExecutorFactory } from '../run/runner.js';
import { lengthsWork, weightBytes, type Workload } from '../run/runtime-cost.js';
import { lintAneLimits, type AneIssue } from '../graph/ane-limits.js';
import { buildModel } from '../model/model.js';
import {
  ANE_ATTENTION_CHUNK,
  defaultHead,
  type ModelSource,
  type NormStyle,
  type OutputHead,
} from '../model/options.js';
import { checkPack } from '../model/packing.js';
import type { Precision } from '../runtime/numerics.js';
import { prepareVariant, type RotationKind } from '../model/variants.js';
import { describePackage, withReports } from './describe-package.js';
import { LocatedWeights, WrappedWeights, type Tensor, type WeightSource } from '../io/weights.js';
import type { Rotation } from '../rotation/index.js';
import type { LearnReport } from '../learn/learned.js';
import { compressGraph } from '../compress/compress-graph.js';
import { compressedBytes, CompressedWeights } from '../compress/compressed-weights.js';
import { checkShapes, type CompressSpec } from '../compress/spec.js';
import { predictPackage, type PackagePlacement } from '../ane/predict-package.js';
import type { Rules } from '../ane/rules.js';

/** Everything a conversion writes by, defaults applied and checked (convert.ts). */
export interface ConversionPlan {
  out: string;
  /** One length (static shapes) or several (enumerated shapes). */
  seqLens: number[];
  fold: boolean;
  rotation: RotationKind;
  norm: 'l2' | 'rms';
  seed: number;
  weights: 'fp16' | 'fp32';
  target: Target;
  force: boolean;
  /** Store tokenizer.json (and its config) in the package. */
  tokenizer: boolean;
  /** 'ids': padding from the pad id, one input; 'input': an additive mask input (reference-compatible). */
  maskFrom: 'ids' | 'input';
  /** Queries per chunk of global attention (model/options.ts ANE_ATTENTION_CHUNK when absent). */
  attentionChunk?: number;
  head?: OutputHead;
  /** Pack up to this many texts per window (a `segment_ids` input; model/options.ts BuildOptions.pack). */
  pack?: number;
  /** Inputs for the fidelity report (and for learning a rotation). */
  calibration: ProbeSequence[];
  calibrationName: string;
  /** Emulation mode of the fidelity report; null skips the report. */
  fidelity: Precision | null;
  /** The tokenizer's [MASK] id, recorded in the metadata. */
  maskTokenId?: number;
  /** A learned rotation, computed beforehand (learn/learned.ts), and its report for the metadata. */
  learned?: Rotation;
  learnReport?: LearnReport;
  /** Compressed weights (compress/spec.ts); absent: float16 or float32 as `weights` says. */
  compress?: CompressSpec;
  /** Fail, writing nothing, when the fidelity report's KL exceeds this. */
  maxKl?: number;
  onProgress?: (stage: 'write' | 'fidelity', done: number, total: number) => void;
  /** Body and heads apart (--split), or one function per head or length (--functions, --add-head, --buckets). */
  heads?: HeadsOptions;
  /** The placement rules of the Neural Engine prediction (ane/rules.ts; default: as published). */
  aneRules?: Rules;
  /** What runs the fidelity report's forward passes (run/runtime-choice.ts executorFor); our interpreter when absent. */
  executor?: ExecutorFactory;
  /**
   * Run the report's float32 reference pass in a worker thread beside the conversion (eval/reference-thread.ts):
   * for onnxruntime, when the checkpoint is as its folder holds it (the worker opens it again).
   */
  referenceThread?: boolean;
}

export interface ConvertReport {
  out: string;
  variant: string;
  seqLens: number[];
  stats: WriteStats;
  /** Seconds spent learning the rotation (before writePackage: learnReport), reading the checkpoint, transforming (folding, rotating) and encoding + writing; the total includes all. */
  seconds: { learn: number; read: number; transform: number; write: number; fidelity: number; total: number };
  fidelity: FidelityReport | null;
  /** Ops whose tensors break the Neural Engine's limits (graph/ane-limits.ts); Core ML runs them elsewhere. */
  aneIssues: AneIssue[];
  /** Every package written (the body first with --split), and a multifunction package's functions. */
  packages: string[];
  functions: string[];
  /** What `compress` stored: the mode and the bytes of the compressed tensors before (float16) and after. */
  compression: CompressionSummary | null;
  /** What rotation learning measured and kept (rotation 'learned'). */
  learning: LearnReport | null;
  /** The weight form written: folded or not, the rotation, the norm. */
  weightForm: { fold: boolean; rotation: RotationKind; norm: 'l2' | 'rms' };
  /** Predicted Neural Engine placement of every package and function written (ane/placement.ts). */
  ane: PackagePlacement[];
}

export interface CompressionSummary {
  mode: string;
  groupSize?: number;
  blockSize?: number;
  /** Checkpoint tensors stored compressed (a tied table once). */
  tensors: number;
  fp16Bytes: number;
  compressedBytes: number;
}

/** `convert --max-kl`: the fidelity report failed the gate; nothing was written (the CLI exits 1). */
export class FidelityGateError extends ModernBertError {
  constructor(
    readonly kl: number,
    readonly maxKl: number,
  ) {
    super(
      'BAD_INPUT',
      `fidelity gate: KL ${kl.toExponential(2)} against the float32 checkpoint exceeds \`maxKl: ${maxKl}\`; nothing was written`,
      { kl, maxKl, option: 'maxKl' },
    );
  }
}

/**
 * The longest length that takes the (1, S, 1, S) `mask` input: 8 MB in float16 at 2,048 tokens, but 128 MB
 * per prediction at 8,192 (and local layers then score all S x S pairs). Longer inputs use the default,
 * padding read from input_ids (pad_token_id), which costs nothing.
 */
const MAX_MASK_INPUT_LEN = 2048;

/** Counts the time spent reading tensors from the checkpoint. */
class TimedWeights extends WrappedWeights {
  ms = 0;
  get(name: string): Tensor {
    const t0 = performance.now();
    try {
      return this.inner.get(name);
    } finally {
      this.ms += performance.now() - t0;
    }
  }
}

/** Checks a plan against the checkpoint and the output before any work (the writer checks the output too). */
function checkPlan(ckpt: Checkpoint, o: ConversionPlan): void {
  const c = ckpt.config;
  checkPackageOutput(o.out, o.force, [ckpt.dir]);
  if (o.heads) checkHeadsOptions(o.heads, o.target, o.seqLens);
  for (const s of o.seqLens) {
    if (s > c.maxPositions)
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `\`seqLens: ${s}\` is longer than the model allows (max_position_embeddings ${c.maxPositions})`,
        { option: 'seqLens' },
      );
  }
  const longest = Math.max(...o.seqLens);
  if (o.maskFrom === 'input' && longest > MAX_MASK_INPUT_LEN) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`maskInput\` takes a (1, S, 1, S) mask, ${((2 * longest * longest) / 2 ** 20).toFixed(0)} MiB at \`seqLens: ${longest}\`; it is limited to ${MAX_MASK_INPUT_LEN} tokens: leave it out (the default input_ids input reads padding from pad_token_id)`,
      { seqLen: longest, option: 'maskInput' },
    );
  }
  if (o.pack !== undefined) {
    // Multifunction packages hold the whole packed model per function; a split head package would need the
    // segment ids as an input of its own, which it does not take yet.
    if (o.heads?.split)
      throw new ModernBertError(
        'BAD_ARGUMENT',
        '`pack` cannot yet be combined with `split`: convert the packed model whole, or as a multifunction package (`functions`, `buckets`)',
        { option: 'pack' },
      );
    // Buckets are one static function per length, each packed; otherwise one graph of one length.
    for (const S of o.heads?.buckets ? o.seqLens : [o.seqLens.length === 1 ? o.seqLens[0]! : 'S'])
      checkPack(o.pack, S, o.maskFrom);
  }
  if (o.compress && o.heads)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      '`compress` cannot yet be combined with `split`, `functions`, `addHeads` or `buckets`: convert the compressed model on its own',
      { option: 'compress' },
    );
}

/** Writes the package (or packages) of a plan. */
export async function writePackage(ckpt: Checkpoint, o: ConversionPlan): Promise<ConvertReport> {
  const t0 = performance.now();
  checkPlan(ckpt, o);
  const head = o.head ?? defaultHead(ckpt);
  // Started before the conversion's work, so as to run beside it.
  const reference =
    o.fidelity !== null && o.referenceThread
      ? startReferenceThread(ckpt.dir, o.calibration, fidelityForm(o, head))
      : undefined;
  try {
    return await convertAndWrite(ckpt, o, head, t0, reference?.run);
  } finally {
    reference?.stop();
  }
}

/** writePackage's work, beside the report's reference pass when it runs in a thread of its own. */
async function convertAndWrite(
  ckpt: Checkpoint,
  o: ConversionPlan,
  head: OutputHead,
  t0: number,
  referenceRun: Promise<ReferenceRun | undefined> | undefined,
): Promise<ConvertReport> {
  const read = new TimedWeights(ckpt.weights);
  const variant = prepareVariant(
    { config: ckpt.config, weights: read, embedding: ckpt.embedding },
    { fold: o.fold, rotation: o.rotation, norm: o.norm, seed: o.seed },
    o.learned,
  );
  const transformed = new TimedWeights(variant.source.weights); // reading + folding + rotating
  let source: ModelSource = { ...variant.source, weights: transformed };
  // Compressed weights: the fidelity report reads them as the package will decompress them.
  const compressed = o.compress && compressedWeights(transformed, o.compress);
  if (compressed) source = { ...source, weights: compressed };
  const attentionChunk = o.attentionChunk ?? ANE_ATTENTION_CHUNK; // chosen for the Neural Engine's op count
  const lens = [...new Set(o.seqLens)].sort((a, b) => a - b);

  // The fidelity report runs the converted weights in float16 emulation. On a runtime that reads files in
  // place (onnxruntime), a float16 package is written first, streaming, and the report reads its weight.bin
  // before the program is written (mil-write.ts afterWeights). Otherwise the weights are computed once,
  // cached (already rounded for float16 packages), measured and written from the cache. Without the
  // report, conversion streams.
  let fidelity: FidelityReport | null = null;
  let fidelityMs = 0;
  const fromPackage = o.fidelity !== null && o.weights === 'fp16' && !compressed && readsInPlace(ckpt, o);
  const measure = async (converted: ModelSource): Promise<FidelityReport> => {
    const f0 = performance.now();
    const ms0 = transformed.ms;
    const report = await measureShipped(ckpt, o, { source: converted, norm: variant.norm }, head, referenceRun);
    fidelityMs = performance.now() - f0 - (transformed.ms - ms0);
    return report;
  };
  if (o.fidelity !== null && !fromPackage) {
    source = { ...source, weights: new CachedWeights(compressed ?? transformed, o.weights === 'fp16') };
    fidelity = await measure(source);
  }

  // Before iOS 16 a model's inputs and outputs cannot be float16: they stay float32 around a float16 body.
  const ioDtype = o.weights === 'fp16' && !atLeast(o.target, 'iOS16') ? 'fp32' : o.weights;
  // With buckets every function is static: the longest stands for them here (the lint); heads.ts builds each.
  const built = buildModel(source, {
    seqLen: lens.length === 1 || o.heads?.buckets ? lens[lens.length - 1]! : lens,
    dtype: o.weights,
    ioDtype,
    norm: variant.norm,
    maskFrom: o.maskFrom,
    attentionChunk,
    head,
    pack: o.pack,
    target: o.target,
  });
  const graph = compressed ? compressGraph(built, compressed) : built;
  const aneIssues = lintAneLimits(graph, { S: lens.at(-1)! });
  const compression = compressed ? summarize(compressed) : null;

  const extras: ExtraItem[] = o.tokenizer ? [tokenizerItem(ckpt)] : [];
  const description = withReports(describePackage(ckpt, { ...o, seqLens: lens }, variant, head), {
    fidelity,
    learning: o.learnReport,
    compression,
  });
  const heads =
    o.heads &&
    (await writeHeads(
      {
        ckpt,
        out: o.out,
        force: o.force,
        source,
        lens,
        target: o.target,
        extras,
        prepare: (other) =>
          prepareVariant(
            { config: other.config, weights: other.weights, embedding: other.embedding },
            { fold: o.fold, rotation: o.rotation, norm: o.norm, seed: o.seed },
            o.learned,
          ).source,
        build: {
          dtype: o.weights,
          ioDtype,
          norm: variant.norm,
          maskFrom: o.maskFrom,
          attentionChunk,
          pack: o.pack,
          target: o.target,
        },
        describe: (ck, h, seqLens) =>
          withReports(describePackage(ck, { ...o, seqLens }, variant, h), { fidelity, learning: o.learnReport }),
        onProgress: (d, t) => o.onProgress?.('write', d, t),
      },
      o.heads,
    ));
  const stats = heads
    ? heads.stats
    : await writeMLPackage(o.out, {
        graph,
        description,
        target: o.target,
        force: o.force,
        protect: [ckpt.dir],
        extraItems: extras,
        onProgress: (p) => o.onProgress?.('write', p.constsWritten, p.constsTotal),
        ...(fromPackage
          ? {
              afterWeights: async (file: string, blobs: ReadonlyMap<string, number>) => {
                fidelity = await measure({
                  ...source,
                  weights: new LocatedWeights(transformed, storedWeights(graph, file, blobs)),
                });
                return { [META.fidelity]: JSON.stringify(fidelity) };
              },
            }
          : {}),
      });
  const written = heads?.written ?? [o.out];
  // The time a learned rotation took before this call counts too: the report says what the conversion cost.
  const learn = o.learnReport?.seconds.total ?? 0;
  return {
    out: o.out,
    variant: variant.name,
    seqLens: lens,
    stats,
    seconds: {
      learn,
      read: read.ms / 1000,
      transform: Math.max(0, transformed.ms - read.ms) / 1000,
      write: stats.writeMs / 1000,
      fidelity: fidelityMs / 1000,
      total: learn + (performance.now() - t0) / 1000,
    },
    fidelity,
    aneIssues,
    packages: written,
    functions: heads?.functions ?? [],
    compression,
    learning: o.learnReport ?? null,
    weightForm: { fold: o.fold, rotation: o.rotation, norm: o.norm },
    // Predicted from the packages as written (read back), so that it judges exactly what Core ML will load.
    ane: written.map((path) => predictPackage(path, o.aneRules)),
  };
}

/** The checkpoint's weights as `spec` compresses them, after checking that their shapes allow it. */
function compressedWeights(w: WeightSource, spec: CompressSpec): CompressedWeights {
  checkShapes(
    spec,
    w.names().map((name) => ({ name, shape: w.shape(name) })),
  );
  return new CompressedWeights(w, spec);
}

/** Whether the fidelity report's runtime reads the package's weight file in place (then it is written first). */
function readsInPlace(ckpt: Checkpoint, o: ConversionPlan): boolean {
  return !o.heads && o.executor?.readsFiles?.(fidelityWork(ckpt, o.calibration)) === true;
}

/** The fidelity report's work: each calibration sequence twice (the checkpoint, the emulation), on the model's weights. */
export function fidelityWork(ckpt: Checkpoint, calibration: ProbeSequence[]): Workload {
  return { ...lengthsWork(calibration.flatMap((s) => [s.ids.length, s.ids.length])), bytes: weightBytes(ckpt.weights) };
}

/**
 * The fidelity report of the converted weights against the checkpoint, measured as shipped (the head the
 * package outputs, packed as it runs); a package that gives NaN or infinity, or fails the KL gate, is refused.
 */
async function measureShipped(
  ckpt: Checkpoint,
  o: ConversionPlan,
  converted: { source: ModelSource; norm: NormStyle },
  head: OutputHead,
  referenceRun: Promise<ReferenceRun | undefined> | undefined,
): Promise<FidelityReport> {
  const report = await measureFidelity(
    ckpt, // a checkpoint is a model source: its config, weights and embedding
    converted,
    o.calibration,
    o.fidelity!,
    o.calibrationName,
    (d, t) => o.onProgress?.('fidelity', d, t),
    fidelityForm(o, head),
    o.executor,
    referenceRun,
  );
  // A package that gives NaN or infinity would not work: none is written (exit 1).
  if (report.non_finite)
    throw new ModernBertError(
      'NON_FINITE',
      `${nonFiniteSummary(report, { fold: o.fold, rotation: o.fold ? o.rotation : 'none', norm: o.norm })}; nothing was written`,
    );
  if (o.maxKl !== undefined && !(report.kl <= o.maxKl)) throw new FidelityGateError(report.kl, o.maxKl);
  return report;
}

/** The form the report measures the package in: the head it ships, packed as it runs. */
function fidelityForm(o: ConversionPlan, head: OutputHead): FidelityForm {
  return { head, ...(o.pack === undefined ? {} : { pack: o.pack, window: Math.max(...o.seqLens) }) };
}

/** The tokenizer files beside the checkpoint, as a package item. */
function tokenizerItem(ckpt: Checkpoint): ExtraItem {
  if (!ckpt.tokenizerPath)
    throw new ModernBertError('FILE_NOT_FOUND', `\`tokenizer: true\`: ${ckpt.dir} has no tokenizer.json`, {
      path: ckpt.dir,
      option: 'tokenizer',
    });
  const dir = dirname(ckpt.tokenizerPath);
  const files = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']
    .filter((f) => existsSync(join(dir, f)))
    .map((f) => ({ name: f, source: join(dir, f) }));
  return {
    author: 'com.github.modernbert-ane',
    description: 'Tokenizer (Hugging Face tokenizer.json) for this model',
    name: 'tokenizer',
    path: TOKENIZER_ITEM_PATH,
    files,
  };
}

/** Where each checkpoint-named float16 weight of a graph lies in the weight.bin just written (its Consts' blobs). */
function storedWeights(graph: Graph, file: string, blobs: ReadonlyMap<string, number>): Map<string, StoredTensor> {
  const reader = BlobReader.open(file);
  try {
    const path = realpathSync(file);
    const out = new Map<string, StoredTensor>();
    for (const [name, offset] of blobs) {
      const c = graph.consts.get(name);
      if (c?.weight === undefined || c.type.dtype !== 'fp16') continue;
      const blob = reader.blob(offset);
      out.set(c.weight, { path, offset: blob.dataOffset, byteLength: blob.sizeInBytes, dtype: 'fp16' });
    }
    return out;
  } finally {
    reader.close();
  }
}

/** The mode and sizes of what --compress stored (each stored tensor once). */
function summarize(w: CompressedWeights): CompressionSummary {
  const stored = new Set(
    w
      .names()
      .filter((n) => w.isCompressed(n))
      .map((n) => w.storedName(n)),
  );
  let fp16Bytes = 0;
  let bytes = 0;
  for (const name of stored) {
    fp16Bytes += 2 * w.shape(name).reduce((a, b) => a * b, 1);
    bytes += compressedBytes(w.compressed(name)!);
  }
  const { mode, groupSize, blockSize } = w.spec;
  return {
    mode,
    ...(groupSize !== undefined ? { groupSize } : {}),
    ...(mode === 'int4' ? { blockSize } : {}),
    tensors: stored.size,
    fp16Bytes,
    compressedBytes: bytes,
  };
}
