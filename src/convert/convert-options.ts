// What convert() takes, every option optional, and the defaults and checks that turn them into a plan before
// anything is read: the command line parses its flags into these options and nothing more.

import { ModernBertError } from '../errors.js';
import { COMPRESS_MODES, compressSpec, type CompressMode, type CompressSpec } from '../compress/spec.js';
import type { Rules } from '../ane/rules.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { OUTPUT_HEADS, type OutputHead } from '../model/options.js';
import type { RotationKind } from '../model/variants.js';
import { parseTarget, type Target, type TargetName } from '../ir/target.js';
import type { DownloadProgress } from '../hub/resolve.js';
import type { Precision } from '../runtime/numerics.js';
import type { ExecutorChoice } from '../run/executor-choice.js';
import type { RuntimeName } from '../run/runtime-choice.js';

/** A head taken from another checkpoint with a bit-identical body: its folder or Hub id, and a name for it. */
export type AddHead = string | { name?: string; model: string | Checkpoint };

/** How to convert a checkpoint into a Core ML package; every option has the command's default. */
export interface ConvertOptions {
  /** The package to write (default: the model's name with .mlpackage, in the current folder). */
  out?: string;
  /** Replace an existing package. */
  force?: boolean;
  /** One sequence length (static shapes) or several (enumerated shapes); default 512, or the model's maximum if smaller. */
  seqLens?: number | number[];
  /** Fold the norms into the matrices (default true); false keeps the plain LayerNorm model. */
  fold?: boolean;
  /** Residual-stream rotation of the folded model (default 'none'; with a palette `compress`, 'hadamard'). */
  rotation?: RotationKind;
  /** RMSNorm of the folded model: 'l2' (overflow-safe, default) or 'rms' (x*x). */
  norm?: 'l2' | 'rms';
  /** Seed of the Hadamard signs and of rotation learning (default 0). */
  seed?: number;
  /** Weight storage (default 'fp16'). */
  weights?: 'fp16' | 'fp32';
  /** Deployment target (default 'iOS17'). */
  target?: TargetName;
  /** Store tokenizer.json in the package, an item of its own that Core ML ignores (default: when the checkpoint has one; true requires it). */
  tokenizer?: boolean;
  /** Take an additive attention mask input (1, S, 1, S), as the reference project does (default: padding from the pad id). */
  maskInput?: boolean;
  /** Output head (default: the checkpoint's own). */
  head?: OutputHead;
  /** Texts for the fidelity report and rotation learning (default: built-in sentences; without a tokenizer, random ids). */
  calibration?: string[];
  /** What the fidelity report calls the calibration texts (default: "N calibration texts"). */
  calibrationName?: string;
  /** Random token ids for a model without a tokenizer (default 128). */
  random?: number;
  /** Emulation of the fidelity report (default 'fp16'); false skips the report. */
  fidelity?: Precision | false;
  /** What runs the fidelity report: 'ort' or 'engine' (default: the one that finishes its passes sooner). */
  runtime?: RuntimeName;
  /** What runs it, chosen beforehand (the command chooses it to print its note). */
  executor?: ExecutorChoice;
  /** Time budget of rotation 'learned', in seconds (default 60). */
  learnSeconds?: number;
  /** Queries per chunk of global attention (default 1,024, chosen for the Neural Engine's op count). */
  attentionChunk?: number;
  /** Pack up to this many texts per window (a segment_ids input). */
  pack?: number;
  /** A body package (`out`) and a package per head beside it; true: the checkpoint's head, or the heads listed. */
  split?: boolean | OutputHead[];
  /** One multifunction package (iOS18), a function per head listed, the body stored once. */
  functions?: OutputHead[];
  /** Heads from other checkpoints with a bit-identical body, each a function (or head package) of its own. */
  addHeads?: AddHead[];
  /** One function per length of `seqLens` (static shapes each) instead of enumerated shapes (iOS18). */
  buckets?: boolean;
  /** Compressed weights: palettes ('pal8' ... 'pal2'), 'int8' per channel, 'int4' per block. */
  compress?: CompressMode;
  /** With a palette at iOS18: one table per group of this many output channels. */
  groupSize?: number;
  /** With 'int4': inputs per scale. */
  blockSize?: number;
  /** Tensors kept at float16 under `compress` (globs, * any run of characters). */
  keep?: string[];
  /** Fail, writing nothing, when the fidelity report's KL exceeds this. */
  maxKl?: number;
  /** Corrections to the Neural Engine placement rules of the report (ane/rules.ts). */
  aneRules?: Rules;
  /** A branch, tag or commit of a Hub id. */
  revision?: string;
  /** Told the bytes downloaded so far while a Hub model downloads. */
  download?: DownloadProgress;
  /** Told the progress of each stage. */
  onProgress?: (stage: 'learn' | 'write' | 'fidelity', done: number, total: number) => void;
}

/**
 * The default weight form: folded with the overflow-safe l2 norm, not rotated. In float16 (relative
 * rounding) a rotation spreads an outlier's rounding noise over every channel; docs/FIDELITY.md measures it.
 */
export const DEFAULT_ROTATION: RotationKind = 'none';

/**
 * The default rotation with `compress` (docs/FIDELITY.md, "Compressed weights"): a palette's error grows
 * with the spread of the whole tensor, which a Hadamard rotation evens out (mini-trained: 2-4x lower KL
 * for pal8, pal6, pal4); int8 and int4 scale per channel or block already, and measure as well or better
 * folded.
 */
export const DEFAULT_ROTATION_COMPRESSED: Record<CompressMode, RotationKind> = {
  pal8: 'hadamard',
  pal6: 'hadamard',
  pal4: 'hadamard',
  pal3: 'hadamard',
  pal2: 'hadamard',
  int8: 'none',
  int4: 'none',
};

/** The options with their defaults, checked against each other (the checkpoint's own checks come later). */
export interface ConvertChoices {
  target: Target;
  fold: boolean;
  rotation: RotationKind;
  norm: 'l2' | 'rms';
  seed: number;
  weights: 'fp16' | 'fp32';
  force: boolean;
  /** 'auto': when the checkpoint has one. */
  tokenizer: boolean | 'auto';
  maskFrom: 'ids' | 'input';
  fidelity: Precision | null;
  compress?: CompressSpec;
  /** How body and heads are laid out, when they are apart or several. */
  layout?: { split: boolean; heads?: OutputHead[]; buckets: boolean };
}

/** Applies the defaults and refuses options that contradict each other, naming them. */
export function convertChoices(o: ConvertOptions): ConvertChoices {
  const target = parseTarget(o.target ?? 'iOS17');
  const weights = o.weights ?? 'fp16';
  const fold = o.fold ?? true;
  if (o.compress !== undefined && !COMPRESS_MODES.includes(o.compress)) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`compress: ${o.compress}\` is not a mode; valid: ${COMPRESS_MODES.join(', ')}`,
      { option: 'compress' },
    );
  }
  const compress =
    o.compress === undefined
      ? undefined
      : compressSpec({
          mode: o.compress,
          target,
          groupSize: o.groupSize,
          blockSize: o.blockSize,
          keep: o.keep,
          weights,
        });
  if (!compress && (o.groupSize !== undefined || o.blockSize !== undefined || (o.keep ?? []).length > 0)) {
    throw new ModernBertError('BAD_ARGUMENT', '`groupSize`, `blockSize` and `keep` apply to `compress`', {
      option: 'compress',
    });
  }
  if (!fold && o.rotation !== undefined && o.rotation !== 'none') {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`fold: false\` keeps the plain LayerNorm model and cannot be combined with \`rotation: ${o.rotation}\``,
      { option: 'rotation' },
    );
  }
  const rotation = !fold
    ? 'none'
    : (o.rotation ?? (compress ? DEFAULT_ROTATION_COMPRESSED[compress.mode] : DEFAULT_ROTATION));
  const fidelity = o.fidelity === false ? null : (o.fidelity ?? 'fp16');
  if (fidelity === 'fp32')
    throw new ModernBertError(
      'BAD_ARGUMENT',
      '`fidelity` compares a float16 emulation with float32, so it takes fp16, fp16-fused or fp16-acc16, not fp32',
      { option: 'fidelity' },
    );
  if (o.maxKl !== undefined && fidelity === null)
    throw new ModernBertError('BAD_ARGUMENT', '`maxKl` gates on the fidelity report: leave out `fidelity: false`', {
      option: 'maxKl',
    });
  for (const h of [...(Array.isArray(o.split) ? o.split : []), ...(o.functions ?? [])]) {
    if (!OUTPUT_HEADS.includes(h))
      throw new ModernBertError('BAD_ARGUMENT', `"${h}" is not a head: one of ${OUTPUT_HEADS.join(', ')}`, {
        option: 'functions',
      });
  }
  if (Array.isArray(o.split) && o.functions)
    throw new ModernBertError('BAD_ARGUMENT', '`split` and `functions` both list heads: give one', {
      option: 'functions',
    });
  const multi =
    (o.split !== undefined && o.split !== false) ||
    o.functions !== undefined ||
    (o.addHeads ?? []).length > 0 ||
    Boolean(o.buckets);
  const layout = multi
    ? {
        split: o.split !== undefined && o.split !== false,
        heads: Array.isArray(o.split) ? o.split : (o.functions ?? (o.head ? [o.head] : undefined)),
        buckets: Boolean(o.buckets),
      }
    : undefined;
  return {
    target,
    fold,
    rotation,
    weights,
    fidelity,
    norm: o.norm ?? 'l2',
    seed: o.seed ?? 0,
    force: Boolean(o.force),
    tokenizer: o.tokenizer ?? 'auto',
    maskFrom: o.maskInput ? 'input' : 'ids',
    ...(compress ? { compress } : {}),
    ...(layout ? { layout } : {}),
  };
}
