// The calibration sequences that convert's fidelity report and rotation learning (convert and export-onnx
// --rotation learned) read: --calibration texts through the checkpoint's tokenizer, its built-in sentences,
// or seeded random ids for a model without a tokenizer.

import { dirname } from 'node:path';
import { ModernBertError } from '../errors.js';
import { readLines, resolveInputs, type ProbeSequence } from '../eval/inputs.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { readUserFile } from '../io/files.js';
import { READ_LIMITS } from '../io/limits.js';
import { loadTokenizer, type Tokenizer } from '../tokenizer/tokenizer.js';

export interface CalibrationOptions {
  /** A file of texts, one per line. */
  calibration?: string;
  /** How many random ids without a tokenizer. */
  random: number;
  seed: number;
}

/** The checkpoint's tokenizer (when it has one), the calibration sequences and a name for them. */
export async function readCalibration(ckpt: Checkpoint, modelPath: string, o: CalibrationOptions): Promise<{ tok?: Tokenizer; calibration: ProbeSequence[]; calibrationName: string }> {
  const tok = ckpt.tokenizerPath ? await loadTokenizer(dirname(ckpt.tokenizerPath)) : undefined;
  const c = ckpt.config;
  const texts = o.calibration ? readLines(readUserFile(o.calibration, READ_LIMITS.calibration, '--calibration').toString('utf8')) : undefined;
  if (o.calibration && texts!.length === 0) throw new ModernBertError('BAD_INPUT', `${o.calibration} holds no text`);
  if (texts && !tok) throw new ModernBertError('BAD_ARGUMENT', `--calibration needs a tokenizer, and ${modelPath} has no tokenizer.json`);
  const calibration = resolveInputs(
    tok ? { texts } : { random: o.random, seed: o.seed },
    { vocabSize: c.vocabSize, maxLen: c.maxPositions, clsTokenId: c.clsTokenId, sepTokenId: c.sepTokenId, special: [c.padTokenId, tok?.maskTokenId ?? -1] },
    tok,
  );
  const calibrationName = texts ? `${o.calibration}` : tok ? 'built-in sentences' : `${o.random} random token ids`;
  return { ...(tok ? { tok } : {}), calibration, calibrationName };
}
