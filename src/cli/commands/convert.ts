// `convert MODEL --out NAME.mlpackage`: a Core ML package for the Neural Engine, with a fidelity report.

import { Option, type Command } from 'commander';
import { convert, FidelityGateError, type CompressionSummary } from '../../convert/convert.js';
import { COMPRESS_MODES, compressSpec, DEFAULT_BLOCK_SIZE, type CompressMode } from '../../compress/spec.js';
import { targetInfo } from '../../ir/target.js';
import { CompressedWeights } from '../../compress/compressed-weights.js';
import type { WeightSource } from '../../io/weights.js';
import { ModernBertError } from '../../errors.js';
import { formatFidelity } from '../../eval/fidelity.js';
import type { Checkpoint } from '../../model/checkpoint.js';
import { parseAddHead } from '../../convert/heads.js';
import { isPackagePath, openCheckpoint } from '../../run/load.js';
import { checkPackageOutput } from '../../coreml/package.js';
import { DEFAULT_ATTENTION_CHUNK, MAX_ATTENTION_CHUNK, type OutputHead } from '../../model/options.js';
import { formatAneIssue } from '../../graph/ane-limits.js';
import type { Precision } from '../../runtime/numerics.js';
import type { RotationKind } from '../../model/variants.js';
import { keptRotation, learnRotation, type LearnedRotation } from '../../learn/learned.js';
import { readCalibration } from '../calibration.js';
import { printJson, progress, type Io } from '../context.js';
import { addRevisionOption, hubOptions, MODEL_HELP } from '../model-source.js';
import { collect, fp16Precision, intList, nonNegativeInt, nonNegativeNumber, positiveInt } from '../parse.js';
import { readRulesFile } from '../../ane/rules.js';
import { convertLines, functionJson } from '../../ane/format.js';

interface ConvertCliOptions {
  out: string;
  seqLen: number[];
  rotation: RotationKind;
  seed: number;
  fold: boolean;
  norm: 'l2' | 'rms';
  weights: 'fp16' | 'fp32';
  target: string;
  force?: boolean;
  tokenizer?: boolean;
  maskInput?: boolean;
  head?: OutputHead;
  calibration?: string;
  random: number;
  fidelity: boolean;
  fidelityPrecision: Precision;
  learnSeconds: number;
  attentionChunk?: number;
  pack?: number;
  split?: boolean | OutputHead[];
  functions?: OutputHead[];
  addHead: string[];
  buckets?: boolean;
  json?: boolean;
  compress?: string;
  groupSize?: number;
  blockSize?: number;
  keep: string[];
  maxKl?: number;
  aneRules?: string;
  revision?: string;
}

const HEAD_NAMES: readonly OutputHead[] = ['mlm', 'seqcls', 'tokcls', 'embedding', 'none'];

/** A comma-separated list of heads. */
function headList(value: string): OutputHead[] {
  const heads = value.split(',').map((h) => h.trim());
  const bad = heads.find((h) => !HEAD_NAMES.includes(h as OutputHead));
  if (bad !== undefined) throw new ModernBertError('BAD_ARGUMENT', `"${bad}" is not a head: give a comma-separated list of ${HEAD_NAMES.join(', ')}`);
  if (new Set(heads).size !== heads.length) throw new ModernBertError('BAD_ARGUMENT', `heads repeat in "${value}"`);
  return heads as OutputHead[];
}

/**
 * The default weight form: folded with the overflow-safe l2 norm, not rotated. In float16 (relative
 * rounding) a rotation spreads an outlier's rounding noise over every channel; docs/FIDELITY.md measures it.
 */
export const DEFAULT_ROTATION: RotationKind = 'none';

/**
 * The default rotation with --compress (docs/FIDELITY.md, "Compressed weights"): a palette's error grows
 * with the spread of the whole tensor, which a Hadamard rotation evens out (mini-trained: 2-4x lower KL
 * for pal8, pal6, pal4); int8 and int4 scale per channel or block already, and measure as well or better
 * folded.
 */
export const DEFAULT_ROTATION_COMPRESSED: Record<CompressMode, RotationKind> = {
  pal8: 'hadamard', pal6: 'hadamard', pal4: 'hadamard', pal3: 'hadamard', pal2: 'hadamard', int8: 'none', int4: 'none',
};

/** Registers the convert command. */
export function registerConvert(program: Command, io: Io, setExit: (code: number) => void): void {
  const cmd = program
    .command('convert')
    .description('convert a checkpoint into a Core ML package (.mlpackage) laid out for the Neural Engine, and report its float16 fidelity')
    .argument('<model>', MODEL_HELP)
    .requiredOption('--out <path>', 'output package, e.g. model.mlpackage')
    .option('--seq-len <n[,n...]>', 'sequence length, or several for enumerated shapes (default 512, or max_position_embeddings if smaller)', intList, [512])
    .addOption(new Option('--rotation <kind>', 'residual-stream rotation (with --compress palN the default is hadamard)').choices(['none', 'hadamard', 'learned']).default(DEFAULT_ROTATION))
    .option('--seed <n>', 'seed of the Hadamard signs and of rotation learning', nonNegativeInt, 0)
    .option('--no-fold', 'keep the plain LayerNorm model (no folding, no rotation): shows the float16 failure')
    .addOption(new Option('--norm <form>', 'RMSNorm of the folded model: l2 (overflow-safe) or rms (x*x)').choices(['l2', 'rms']).default('l2'))
    .addOption(new Option('--weights <type>', 'weight storage').choices(['fp16', 'fp32']).default('fp16'))
    .option('--target <os>', 'deployment target: iOS15..iOS18 or macOS12..macOS15', 'iOS17')
    .option('--force', 'replace an existing package')
    .option('--tokenizer', 'store tokenizer.json in the package (an item of its own, which Core ML ignores)')
    .option('--mask-input', 'take an additive attention mask input (1, S, 1, S) as the reference project does, instead of reading padding from the pad id')
    .addOption(new Option('--head <head>', 'output head (default: the checkpoint\'s own)').choices(['mlm', 'seqcls', 'tokcls', 'embedding', 'none']))
    .option('--calibration <file>', 'texts (one per line) for the fidelity report and rotation learning (default: built-in sentences)')
    .option('--random <n>', 'random token ids for models without a tokenizer', positiveInt, 128)
    .option('--no-fidelity', 'skip the fidelity report')
    .option('--fidelity-precision <mode>', 'emulation of the fidelity report: fp16, fp16-fused, fp16-acc16', fp16Precision, 'fp16')
    .option('--learn-seconds <s>', 'time budget of --rotation learned', positiveInt, 60)
    .option('--attention-chunk <n>', `queries per chunk of global attention, 1..${MAX_ATTENTION_CHUNK} (default ${DEFAULT_ATTENTION_CHUNK})`, positiveInt)
    .option('--pack <k>', 'pack up to k texts per window: adds a segment_ids input (1, S), one embedding or label row per text', positiveInt)
    .option('--split [heads]', 'write a body package (--out) and a package per head (OUT-HEAD.mlpackage) for hot-swapping heads; heads: comma-separated (default: the checkpoint\'s)', headList)
    .option('--functions <heads>', 'one multifunction package (iOS18/macOS15), a function per head, the body stored once: e.g. mlm,embedding', headList)
    .option('--add-head <[name=]model>', 'a head from another checkpoint (folder or Hub id) with a bit-identical body (repeatable)', (v: string, prev: string[]) => [...prev, v], [])
    .option('--buckets', 'one function per --seq-len length (static shapes each) instead of enumerated shapes (iOS18/macOS15)')
    .option('--compress <mode>', `compressed weights: ${COMPRESS_MODES.join(', ')} (palettes of 2^n values; int8 per channel; int4 per block, iOS 18)`)
    .option('--group-size <n>', '--compress palN at iOS 18: one table per group of n output channels', positiveInt)
    .option('--block-size <n>', `--compress int4: inputs per scale (default ${DEFAULT_BLOCK_SIZE})`, positiveInt)
    .option('--keep <glob>', 'keep matching tensors at float16 (repeatable; * matches any run of characters)', collect, [] as string[])
    .option('--max-kl <x>', 'fail (exit 1, nothing written) when the fidelity report\'s KL exceeds x', nonNegativeNumber)
    .option('--ane-rules <file>', 'corrections to the Neural Engine placement rules (JSON; see docs/ANE.md)')
    .option('--json', 'machine-readable output');
  addRevisionOption(cmd)
    .action(async (modelPath: string, o: ConvertCliOptions) => {
      const aneRules = o.aneRules === undefined ? undefined : readRulesFile(o.aneRules);
      const compress = o.compress === undefined
        ? undefined
        : compressSpec({ mode: o.compress, target: targetInfo(o.target).target, groupSize: o.groupSize, blockSize: o.blockSize, keep: o.keep, weights: o.weights });
      if (!compress && (o.groupSize !== undefined || o.blockSize !== undefined || o.keep.length > 0)) {
        throw new ModernBertError('BAD_ARGUMENT', '--group-size, --block-size and --keep apply to --compress');
      }
      if (compress && o.fold && cmd.getOptionValueSource('rotation') === 'default') o.rotation = DEFAULT_ROTATION_COMPRESSED[compress.mode];
      if (!o.fold && cmd.getOptionValueSource('rotation') === 'cli' && o.rotation !== 'none') {
        throw new ModernBertError('BAD_ARGUMENT', `--no-fold keeps the plain LayerNorm model and cannot be combined with --rotation ${o.rotation}`);
      }
      if (isPackagePath(modelPath)) throw new ModernBertError('BAD_ARGUMENT', `${modelPath} is already a Core ML package; convert takes a checkpoint folder`);
      // Before any work (learning a rotation takes minutes): an output that cannot be written fails now.
      checkPackageOutput(o.out, Boolean(o.force), [modelPath, o.calibration]);
      const ckpt = await openCheckpoint(modelPath, hubOptions(io, o));
      const added = o.addHead.map((spec) => ({ ...parseAddHead(spec), ckpt: undefined as Checkpoint | undefined }));
      const bars = { write: progress(io, 'convert', Boolean(o.json)), fidelity: progress(io, 'fidelity', Boolean(o.json)), learn: progress(io, 'learn', Boolean(o.json)) };
      try {
        for (const a of added) a.ckpt = await openCheckpoint(a.dir, hubOptions(io, { json: o.json }));
        const multi = o.split !== undefined || o.functions !== undefined || added.length > 0 || o.buckets;
        if (Array.isArray(o.split) && o.functions) throw new ModernBertError('BAD_ARGUMENT', '--split HEADS and --functions HEADS both list heads: give one');
        const heads = multi ? { split: o.split !== undefined && o.split !== false, heads: Array.isArray(o.split) ? o.split : o.functions ?? (o.head ? [o.head] : undefined), added: added.map((a) => ({ name: a.name, ckpt: a.ckpt! })), buckets: Boolean(o.buckets) } : undefined;
        const c = ckpt.config;
        const { tok, calibration, calibrationName } = await readCalibration(ckpt, modelPath, o);
        let learned: LearnedRotation | undefined;
        if (o.rotation === 'learned' && o.fold) {
          learned = await learnRotation({ config: c, weights: ckpt.weights, embedding: ckpt.embedding }, {
            seed: o.seed, calibration, norm: o.norm, precision: o.fidelityPrecision, budgetSeconds: o.learnSeconds,
            // Compressed: the objective includes the weights' quantization error, and candidates are judged
            // as the compressed package computes.
            ...(compress ? { compress, stored: (w: WeightSource) => new CompressedWeights(w, compress) } : {}),
            onProgress: (d, t) => bars.learn.update(d, t),
          });
          bars.learn.stop();
          if (!o.json) io.stdout(`rotation learning: ${learned.report.note}\n`);
          // A discarded learned rotation: the package is what was kept instead, and says so.
          o.rotation = keptRotation(learned.report);
        }
        const report = await convert(ckpt, {
          compress,
          maxKl: o.maxKl,
          out: o.out,
          // The default length, 512, shrinks to what a smaller model takes.
          seqLens: cmd.getOptionValueSource('seqLen') === 'default' ? [Math.min(512, c.maxPositions)] : o.seqLen,
          fold: o.fold,
          rotation: o.fold ? o.rotation : 'none',
          norm: o.norm,
          seed: o.seed,
          weights: o.weights,
          target: o.target,
          force: Boolean(o.force),
          tokenizer: Boolean(o.tokenizer),
          maskFrom: o.maskInput ? 'input' : 'ids',
          attentionChunk: o.attentionChunk,
          head: o.head,
          pack: o.pack,
          calibration,
          calibrationName,
          fidelity: o.fidelity ? o.fidelityPrecision : null,
          maskTokenId: tok?.maskTokenId,
          learned: o.rotation === 'learned' ? learned?.rotation : undefined,
          learnReport: learned?.report,
          onProgress: (stage, d, t) => bars[stage].update(d, t),
          heads,
          aneRules,
        });
        Object.values(bars).forEach((b) => b.stop());
        for (const i of report.aneIssues) io.stderr(`warning: beyond the Neural Engine's limits (Core ML will run it elsewhere): ${formatAneIssue(i)}\n`);
        const ane = convertLines(report.ane);
        for (const w of ane.warnings) io.stderr(`warning: ${w}\n`);
        if (o.json) return printJson(io, { ...report, ane: report.ane.map((pp) => ({ path: pp.path, functions: pp.functions.map((f) => functionJson(f, false)) })) });
        const s = report.seconds;
        const mb = (report.stats.bytesWritten / 1e6).toFixed(1);
        io.stdout(`wrote ${report.out}: ${report.variant}, ${o.weights} weights, S = ${report.seqLens.join(', ')}, target ${report.stats.target} (spec ${report.stats.specificationVersion}, ${report.stats.opset}), ${mb} MB\n`);
        if (report.packages.length > 1) io.stdout(`heads: ${report.packages.slice(1).join(', ')} (run one with: predict ${report.out} --head-package PATH)\n`);
        if (report.functions.length > 0) io.stdout(`functions: ${report.functions.join(', ')} (the first is the default; pick one with predict --function NAME)\n`);
        io.stdout(`time: ${s.learn > 0 ? `learn rotation ${s.learn.toFixed(1)} s, ` : ''}read ${s.read.toFixed(1)} s, transform ${s.transform.toFixed(1)} s, encode+write ${s.write.toFixed(1)} s, fidelity ${s.fidelity.toFixed(1)} s, total ${s.total.toFixed(1)} s\n`);
        if (report.compression) io.stdout(`${formatCompression(report.compression)}\n`);
        if (report.fidelity) io.stdout(`${formatFidelity(report.fidelity, { fold: o.fold, rotation: o.fold ? o.rotation : 'none', norm: o.norm })}\n`);
        io.stdout(`${ane.summary}\n`);
      } catch (e) {
        // The gate is a failed check, not bad input: exit 1.
        if (!(e instanceof FidelityGateError)) throw e;
        io.stderr(`error: ${e.message}\n`);
        setExit(1);
      } finally {
        Object.values(bars).forEach((b) => b.stop());
        ckpt.close();
        for (const a of added) a.ckpt?.close();
      }
    });
}

/** One line: the mode and what the compressed tensors weigh before and after. */
export function formatCompression(c: CompressionSummary): string {
  const mb = (b: number) => (b / 1e6).toFixed(1);
  const form = `${c.mode}${c.groupSize !== undefined ? `, groups of ${c.groupSize} channels` : ''}${c.blockSize !== undefined ? `, blocks of ${c.blockSize}` : ''}`;
  if (c.tensors === 0) return `compression: ${form}: no tensor compressed (--keep matched every one); the weights are float16`;
  return `compression: ${form}: ${c.tensors} tensors, ${mb(c.fp16Bytes)} MB float16 -> ${mb(c.compressedBytes)} MB (${(c.compressedBytes / c.fp16Bytes).toFixed(3)}x)`;
}
