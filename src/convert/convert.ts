// convert(model, options): a checkpoint folder, Hub id or open Checkpoint into a Core ML package, the whole
// pipeline with the command's defaults: the options checked (convert-options.ts), the checkpoint and any
// added heads opened, the calibration read, a learned rotation learned, then the package written
// (write-package.ts). The command line parses its flags into the options and prints the report.

import { basename, resolve } from 'node:path';
import { checkPackageOutput } from '../coreml/package.js';
import { ModernBertError } from '../errors.js';
import { keptRotation } from '../learn/learned.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { convertChoices, type AddHead, type ConvertOptions } from './convert-options.js';
import { checkHeadName, type AddedHead } from './heads.js';
import { calibrationOf, learnedRotation, openSource } from './prepare.js';
import { fidelityWork, writePackage, type ConvertReport } from './write-package.js';
import { chooseExecutor } from '../run/executor-choice.js';

/** The sequence lengths: as given, else 512 or the model's maximum if smaller; none longer than the model allows. */
function seqLensOf(o: ConvertOptions, maxPositions: number): number[] {
  const lens =
    o.seqLens === undefined ? [Math.min(512, maxPositions)] : Array.isArray(o.seqLens) ? o.seqLens : [o.seqLens];
  if (lens.length === 0)
    throw new ModernBertError('BAD_ARGUMENT', '`seqLens` is empty: give one length or several', { option: 'seqLens' });
  for (const s of lens) {
    if (!Number.isInteger(s) || s < 1)
      throw new ModernBertError('BAD_ARGUMENT', `\`seqLens: ${s}\` is not a positive whole number`, {
        option: 'seqLens',
      });
    if (s > maxPositions)
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `\`seqLens: ${s}\` is longer than the model allows (max_position_embeddings ${maxPositions})`,
        { option: 'seqLens' },
      );
  }
  return lens;
}

/** The added heads' checkpoints, opened (`opened` collects what closes them). */
async function openAddedHeads(list: readonly AddHead[], opened: (() => void)[]): Promise<AddedHead[]> {
  const heads: AddedHead[] = [];
  for (const a of list) {
    const spec = typeof a === 'string' ? { model: a } : a;
    if (spec.name !== undefined) checkHeadName(spec.name); // before it opens (or downloads) anything
    const { ckpt, close } = await openSource(spec.model, {}, '`addHeads`');
    opened.push(close);
    heads.push({ ...(spec.name === undefined ? {} : { name: spec.name }), ckpt });
  }
  return heads;
}

/** Converts a checkpoint (a folder, a Hub id `org/name[@revision]`, or one already open) into a Core ML package. */
export async function convert(model: string | Checkpoint, options: ConvertOptions = {}): Promise<ConvertReport> {
  const c = convertChoices(options);
  const opened: (() => void)[] = [];
  try {
    const { ckpt, close } = await openSource(model, options, 'convert');
    opened.push(close);
    const out = options.out ?? `${basename(resolve(ckpt.dir)).replace(/\.mlpackage$/, '')}.mlpackage`;
    const seqLens = seqLensOf(options, ckpt.config.maxPositions);
    // Before any work (learning a rotation takes minutes): an output that cannot be written fails now.
    checkPackageOutput(out, c.force, [ckpt.dir]);
    const added = await openAddedHeads(options.addHeads ?? [], opened);
    const { tok, calibration, calibrationName } = await calibrationOf(ckpt, {
      texts: options.calibration,
      name: options.calibrationName,
      random: options.random,
      seed: c.seed,
    });
    // The fidelity report's runtime; which one the work decides once the calibration and the model are known.
    const executor =
      c.fidelity === null
        ? undefined
        : (options.executor ??
          (await chooseExecutor({
            precision: c.fidelity,
            ...(options.runtime === undefined ? {} : { runtime: options.runtime }),
          })));
    const learning =
      c.rotation === 'learned'
        ? await learnedRotation(ckpt, calibration, {
            seed: c.seed,
            norm: c.norm,
            precision: c.fidelity ?? 'fp16',
            seconds: options.learnSeconds ?? 60,
            compress: c.compress,
            onProgress: (d, t) => options.onProgress?.('learn', d, t),
          })
        : undefined;
    // A discarded learned rotation: the package is what was kept instead, and says so.
    const rotation = learning ? keptRotation(learning.learnReport) : c.rotation;
    return await writePackage(ckpt, {
      out,
      seqLens,
      fold: c.fold,
      rotation,
      norm: c.norm,
      seed: c.seed,
      weights: c.weights,
      target: c.target,
      force: c.force,
      tokenizer: c.tokenizer === 'auto' ? ckpt.tokenizerPath !== undefined : c.tokenizer,
      maskFrom: c.maskFrom,
      calibration,
      calibrationName,
      fidelity: c.fidelity,
      ...(tok?.maskTokenId === undefined ? {} : { maskTokenId: tok.maskTokenId }),
      ...(options.attentionChunk === undefined ? {} : { attentionChunk: options.attentionChunk }),
      ...(options.head === undefined ? {} : { head: options.head }),
      ...(options.pack === undefined ? {} : { pack: options.pack }),
      ...(c.compress ? { compress: c.compress } : {}),
      ...(options.maxKl === undefined ? {} : { maxKl: options.maxKl }),
      ...(options.aneRules ? { aneRules: options.aneRules } : {}),
      ...(c.layout ? { heads: { ...c.layout, added } } : {}),
      ...(learning
        ? { learnReport: learning.learnReport, ...(rotation === 'learned' ? { learned: learning.learned } : {}) }
        : {}),
      onProgress: (stage, d, t) => options.onProgress?.(stage, d, t),
      ...(executor?.factory ? { executor: executor.factory } : {}),
      // On onnxruntime the report's reference pass runs beside the conversion, in a worker that opens the
      // checkpoint's folder again: only for a checkpoint opened here from it.
      referenceThread:
        typeof model === 'string' &&
        (executor?.runtime === 'ort' || executor?.runtime === 'auto') &&
        executor.factory?.readsFiles?.(fidelityWork(ckpt, calibration)) === true,
    });
  } finally {
    for (const close of opened) close();
  }
}
