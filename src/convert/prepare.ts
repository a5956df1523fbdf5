// What a conversion or an ONNX export reads before it writes: the checkpoint (a folder or Hub id, or one the
// caller opened), the calibration sequences (texts through the checkpoint's tokenizer, its built-in sentences,
// or seeded random ids without a tokenizer) and, for rotation 'learned', the rotation learned on them.

import { dirname } from 'node:path';
import { ModernBertError } from '../errors.js';
import { CompressedWeights } from '../compress/compressed-weights.js';
import type { CompressSpec } from '../compress/spec.js';
import { randomSequence, textSequences, type ProbeSequence } from '../eval/inputs.js';
import type { DownloadProgress } from '../hub/resolve.js';
import type { WeightSource } from '../io/weights.js';
import { learnRotation, type LearnReport } from '../learn/learned.js';
import type { Checkpoint } from '../model/checkpoint.js';
import type { Rotation } from '../rotation/index.js';
import { isPackagePath, openCheckpoint } from '../run/load.js';
import type { Precision } from '../runtime/numerics.js';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer.js';

/** The checkpoint a conversion reads: opened here from a name (`close` closes it), or the caller's (left open). */
export async function openSource(
  model: string | Checkpoint,
  o: { revision?: string; download?: DownloadProgress },
  what: string,
): Promise<{ ckpt: Checkpoint; close: () => void }> {
  if (typeof model !== 'string') return { ckpt: model, close: () => {} };
  if (isPackagePath(model))
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `${model} is already a Core ML package; ${what} takes a checkpoint folder`,
    );
  const ckpt = await openCheckpoint(model, {
    ...(o.revision === undefined ? {} : { revision: o.revision }),
    ...(o.download ? { progress: o.download } : {}),
  });
  return { ckpt, close: () => ckpt.close() };
}

export interface CalibrationOptions {
  /** Texts; absent: the built-in sentences (or random ids without a tokenizer). */
  texts?: readonly string[] | undefined;
  /** What the report calls the texts (default "N calibration texts"). */
  name?: string | undefined;
  /** How many random ids without a tokenizer (default 128). */
  random?: number | undefined;
  seed: number;
}

/** The checkpoint's tokenizer (when it has one), the calibration sequences and a name for them. */
export async function calibrationOf(
  ckpt: Checkpoint,
  o: CalibrationOptions,
): Promise<{ tok?: Tokenizer; calibration: ProbeSequence[]; calibrationName: string }> {
  const tok = ckpt.tokenizerPath ? await loadTokenizer(dirname(ckpt.tokenizerPath)) : undefined;
  const c = ckpt.config;
  const texts = o.texts?.filter((t) => t.trim() !== '');
  if (texts && texts.length === 0)
    throw new ModernBertError('BAD_INPUT', `\`calibration\` holds no text${o.name ? ` (${o.name})` : ''}`, {
      option: 'calibration',
    });
  if (texts && !tok)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`calibration\` needs a tokenizer, and ${ckpt.dir} has no tokenizer.json`,
      { option: 'calibration' },
    );
  const random = o.random ?? 128;
  const ids = {
    vocabSize: c.vocabSize,
    maxLen: c.maxPositions,
    clsTokenId: c.clsTokenId,
    sepTokenId: c.sepTokenId,
    special: [c.padTokenId, tok?.maskTokenId ?? -1],
  };
  const calibration = tok ? textSequences(texts, ids, tok) : [randomSequence(random, o.seed, ids)];
  const calibrationName = texts
    ? (o.name ?? `${texts.length} calibration texts`)
    : tok
      ? 'built-in sentences'
      : `${random} random token ids`;
  return { ...(tok ? { tok } : {}), calibration, calibrationName };
}

export interface LearnChoices {
  seed: number;
  norm: 'l2' | 'rms';
  /** The float16 emulation candidates are judged in. */
  precision: Precision;
  seconds: number;
  /** The package's compression: the objective then includes the rotated weights' quantization error. */
  compress?: CompressSpec | undefined;
  onProgress?: ((done: number, total: number) => void) | undefined;
}

/** A rotation learned on the calibration (learn/learned.ts), judged as the package will compute. */
export async function learnedRotation(
  ckpt: Checkpoint,
  calibration: ProbeSequence[],
  o: LearnChoices,
): Promise<{ learned: Rotation; learnReport: LearnReport }> {
  const compress = o.compress;
  const r = await learnRotation(
    { config: ckpt.config, weights: ckpt.weights, embedding: ckpt.embedding },
    {
      seed: o.seed,
      calibration,
      norm: o.norm,
      precision: o.precision,
      budgetSeconds: o.seconds,
      // Compressed: candidates are judged as the compressed package computes.
      ...(compress ? { compress, stored: (w: WeightSource) => new CompressedWeights(w, compress) } : {}),
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    },
  );
  return { learned: r.rotation, learnReport: r.report };
}
