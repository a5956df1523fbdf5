// `convert MODEL --out NAME.mlpackage`: a Core ML package for the Neural Engine, with a fidelity report. The
// flags become convert()'s options (convert/convert-options.ts holds the defaults and checks); this prints.

import { Option, type Command } from 'commander';
import { convert } from '../../convert/convert.js';
import type { AddHead, ConvertOptions } from '../../convert/convert-options.js';
import { FidelityGateError, type CompressionSummary, type ConvertReport } from '../../convert/write-package.js';
import { COMPRESS_MODES, DEFAULT_BLOCK_SIZE, type CompressMode } from '../../compress/spec.js';
import type { TargetName } from '../../ir/target.js';
import { ModernBertError } from '../../errors.js';
import { formatFidelity } from '../../eval/fidelity-text.js';
import { readLines } from '../../eval/inputs.js';
import { readUserFile } from '../../io/files.js';
import { READ_LIMITS } from '../../io/limits.js';
import { parseAddHead } from '../../convert/heads.js';
import { ANE_ATTENTION_CHUNK, MAX_ATTENTION_CHUNK, OUTPUT_HEADS, type OutputHead } from '../../model/options.js';
import { formatAneIssue } from '../../graph/ane-limits.js';
import type { Precision } from '../../runtime/numerics.js';
import type { RotationKind } from '../../model/variants.js';
import { printJson, progress, type Io } from '../context.js';
import { asFlags } from '../flag-names.js';
import { downloadProgress, MODEL_HELP, addRevisionOption } from '../model-source.js';
import {
  collect,
  fp16Precision,
  headOption,
  intList,
  nonNegativeInt,
  nonNegativeNumber,
  positiveInt,
} from '../parse.js';
import { readRulesFile } from '../../ane/rules.js';
import { convertLines, functionJson } from '../../ane/format.js';
import { addRuntimeOptions, cliExecutorChoice, type RuntimeCliOptions } from '../runtime.js';

interface ConvertCliOptions extends RuntimeCliOptions {
  out: string;
  seqLen?: number[];
  rotation?: RotationKind;
  seed: number;
  fold: boolean;
  norm: 'l2' | 'rms';
  weights: 'fp16' | 'fp32';
  target: TargetName;
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
  addHead?: string[];
  buckets?: boolean;
  json?: boolean;
  compress?: CompressMode;
  groupSize?: number;
  blockSize?: number;
  keep?: string[];
  maxKl?: number;
  aneRules?: string;
  revision?: string;
}

/** A comma-separated list of heads. */
function headList(value: string): OutputHead[] {
  const heads = value.split(',').map((h) => h.trim());
  const bad = heads.find((h) => !OUTPUT_HEADS.includes(h as OutputHead));
  if (bad !== undefined)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `"${bad}" is not a head: give a comma-separated list of ${OUTPUT_HEADS.join(', ')}`,
    );
  if (new Set(heads).size !== heads.length) throw new ModernBertError('BAD_ARGUMENT', `heads repeat in "${value}"`);
  return heads as OutputHead[];
}

/** `--add-head [NAME=]MODEL`. */
function addHead(spec: string): AddHead {
  const { name, dir } = parseAddHead(spec);
  return name === undefined ? dir : { name, model: dir };
}

/** The flags as convert()'s options (a flag left at its default is an option left out). */
function convertOptions(o: ConvertCliOptions, io: Io, onProgress: ConvertOptions['onProgress']): ConvertOptions {
  const texts =
    o.calibration === undefined
      ? undefined
      : readLines(readUserFile(o.calibration, READ_LIMITS.calibration, '--calibration').toString('utf8'));
  return {
    out: o.out,
    seqLens: o.seqLen,
    fold: o.fold,
    rotation: o.rotation,
    norm: o.norm,
    seed: o.seed,
    weights: o.weights,
    target: o.target,
    force: Boolean(o.force),
    tokenizer: o.tokenizer,
    maskInput: Boolean(o.maskInput),
    head: o.head,
    calibration: texts,
    calibrationName: o.calibration,
    random: o.random,
    fidelity: o.fidelity ? o.fidelityPrecision : false,
    learnSeconds: o.learnSeconds,
    attentionChunk: o.attentionChunk,
    pack: o.pack,
    split: o.split,
    functions: o.functions,
    addHeads: o.addHead?.map(addHead),
    buckets: o.buckets,
    compress: o.compress,
    groupSize: o.groupSize,
    blockSize: o.blockSize,
    keep: o.keep,
    maxKl: o.maxKl,
    aneRules: o.aneRules === undefined ? undefined : readRulesFile(o.aneRules),
    revision: o.revision,
    download: downloadProgress(io, Boolean(o.json)),
    onProgress,
  };
}

/** Registers the convert command. */
export function registerConvert(program: Command, io: Io, setExit: (code: number) => void): void {
  const cmd = program
    .command('convert')
    .description(
      'convert a checkpoint into a Core ML package (.mlpackage) laid out for the Neural Engine, and report its float16 fidelity',
    )
    .argument('<model>', MODEL_HELP)
    .requiredOption('--out <path>', 'output package, e.g. model.mlpackage')
    .option(
      '--seq-len <n[,n...]>',
      'sequence length, or several for enumerated shapes (default 512, or max_position_embeddings if smaller)',
      intList,
    )
    .addOption(
      new Option('--rotation <kind>', 'residual-stream rotation (default none; hadamard with --compress palN)').choices(
        ['none', 'hadamard', 'learned'],
      ),
    )
    .option('--seed <n>', 'seed of the Hadamard signs and of rotation learning', nonNegativeInt, 0)
    .option('--no-fold', 'keep the plain LayerNorm model (no folding, no rotation): shows the float16 failure')
    .addOption(
      new Option('--norm <form>', 'RMSNorm of the folded model: l2 (overflow-safe) or rms (x*x)')
        .choices(['l2', 'rms'])
        .default('l2'),
    )
    .addOption(new Option('--weights <type>', 'weight storage').choices(['fp16', 'fp32']).default('fp16'))
    .option('--target <os>', 'deployment target: iOS15..iOS18 or macOS12..macOS15', 'iOS17')
    .option('--force', 'replace an existing package')
    .option(
      '--tokenizer',
      'store tokenizer.json in the package, and fail if the checkpoint has none (default: stored when it has one)',
    )
    .option('--no-tokenizer', 'leave the tokenizer out of the package')
    .option(
      '--mask-input',
      'take an additive attention mask input (1, S, 1, S) as the reference project does, instead of reading padding from the pad id',
    )
    .addOption(headOption())
    .option(
      '--calibration <file>',
      'texts (one per line) for the fidelity report and rotation learning (default: built-in sentences)',
    )
    .option('--random <n>', 'random token ids for models without a tokenizer', positiveInt, 128)
    .option('--no-fidelity', 'skip the fidelity report')
    .option(
      '--fidelity-precision <mode>',
      'emulation of the fidelity report: fp16, fp16-fused, fp16-acc16',
      fp16Precision,
      'fp16',
    )
    .option('--learn-seconds <s>', 'time budget of --rotation learned', positiveInt, 60)
    .option(
      '--attention-chunk <n>',
      `queries per chunk of global attention, 1..${MAX_ATTENTION_CHUNK} (default ${ANE_ATTENTION_CHUNK})`,
      positiveInt,
    )
    .option(
      '--pack <k>',
      'pack up to k texts per window: adds a segment_ids input (1, S), one embedding or label row per text',
      positiveInt,
    )
    .option(
      '--split [heads]',
      "write a body package (--out) and a package per head (OUT-HEAD.mlpackage) for hot-swapping heads; heads: comma-separated (default: the checkpoint's)",
      headList,
    )
    .option(
      '--functions <heads>',
      'one multifunction package (iOS18/macOS15), a function per head, the body stored once: e.g. mlm,embedding',
      headList,
    )
    .option(
      '--add-head <[name=]model>',
      'a head from another checkpoint (folder or Hub id) with a bit-identical body (repeatable)',
      collect,
    )
    .option(
      '--buckets',
      'one function per --seq-len length (static shapes each) instead of enumerated shapes (iOS18/macOS15)',
    )
    .option(
      '--compress <mode>',
      `compressed weights: ${COMPRESS_MODES.join(', ')} (palettes of 2^n values; int8 per channel; int4 per block, iOS 18)`,
    )
    .option('--group-size <n>', '--compress palN at iOS 18: one table per group of n output channels', positiveInt)
    .option('--block-size <n>', `--compress int4: inputs per scale (default ${DEFAULT_BLOCK_SIZE})`, positiveInt)
    .option('--keep <glob>', 'keep matching tensors at float16 (repeatable; * matches any run of characters)', collect)
    .option('--max-kl <x>', "fail (exit 1, nothing written) when the fidelity report's KL exceeds x", nonNegativeNumber)
    .option('--ane-rules <file>', 'corrections to the Neural Engine placement rules (JSON; see docs/ANE.md)')
    .option('--json', 'machine-readable output');
  addRuntimeOptions(addRevisionOption(cmd)).action(async (modelPath: string, o: ConvertCliOptions) => {
    // --tokenizer and --no-tokenizer: commander gives true by default; a flag not given leaves the choice to convert().
    if (cmd.getOptionValueSource('tokenizer') === 'default') o.tokenizer = undefined;
    const bars = {
      write: progress(io, 'convert', Boolean(o.json)),
      fidelity: progress(io, 'fidelity', Boolean(o.json)),
      learn: progress(io, 'learn', Boolean(o.json)),
    };
    try {
      // The fidelity report's runtime: which one, the calibration's work decides (said on a terminal).
      if (o.runtime === 'coreml')
        throw new ModernBertError(
          'BAD_ARGUMENT',
          "--runtime coreml runs packages: convert's fidelity report runs on ort or engine",
        );
      const executor = o.fidelity ? await cliExecutorChoice(o, o.fidelityPrecision, io) : undefined;
      const report = await convert(modelPath, {
        ...convertOptions(o, io, (stage, d, t) => bars[stage].update(d, t)),
        ...(executor ? { executor } : {}),
      });
      Object.values(bars).forEach((b) => b.stop());
      for (const i of report.aneIssues)
        io.stderr(`warning: beyond the Neural Engine's limits (Core ML will run it elsewhere): ${formatAneIssue(i)}\n`);
      const ane = convertLines(report.ane);
      for (const w of ane.warnings) io.stderr(`warning: ${w}\n`);
      if (o.json)
        return printJson(io, {
          ...report,
          ane: report.ane.map((pp) => ({ path: pp.path, functions: pp.functions.map((f) => functionJson(f, false)) })),
        });
      printReport(io, report, o.weights, ane.summary);
    } catch (e) {
      // The gate is a failed check, not bad input: exit 1.
      if (!(e instanceof FidelityGateError)) throw e;
      io.stderr(`error: ${asFlags(e.message)}\n`);
      setExit(1);
    } finally {
      Object.values(bars).forEach((b) => b.stop());
    }
  });
}

/** One line: the mode and what the compressed tensors weigh before and after. */
export function formatCompression(c: CompressionSummary): string {
  const mb = (b: number) => (b / 1e6).toFixed(1);
  const form = `${c.mode}${c.groupSize !== undefined ? `, groups of ${c.groupSize} channels` : ''}${c.blockSize !== undefined ? `, blocks of ${c.blockSize}` : ''}`;
  if (c.tensors === 0)
    return `compression: ${form}: no tensor compressed (--keep matched every one); the weights are float16`;
  return `compression: ${form}: ${c.tensors} tensors, ${mb(c.fp16Bytes)} MB float16 -> ${mb(c.compressedBytes)} MB (${(c.compressedBytes / c.fp16Bytes).toFixed(3)}x)`;
}

/** The conversion's report as text: what was written, the time it took, compression, fidelity, placement. */
function printReport(io: Io, report: ConvertReport, weights: string, aneSummary: string): void {
  const s = report.seconds;
  const mb = (report.stats.bytesWritten / 1e6).toFixed(1);
  if (report.learning) io.stdout(`rotation learning: ${report.learning.note}\n`);
  io.stdout(
    `wrote ${report.out}: ${report.variant}, ${weights} weights, S = ${report.seqLens.join(', ')}, target ${report.stats.target} (spec ${report.stats.specificationVersion}, ${report.stats.opset}), ${mb} MB\n`,
  );
  if (report.packages.length > 1)
    io.stdout(
      `heads: ${report.packages.slice(1).join(', ')} (run one with: predict ${report.out} --head-package PATH)\n`,
    );
  if (report.functions.length > 0)
    io.stdout(
      `functions: ${report.functions.join(', ')} (the first is the default; pick one with predict --function NAME)\n`,
    );
  io.stdout(
    `time: ${s.learn > 0 ? `learn rotation ${s.learn.toFixed(1)} s, ` : ''}read ${s.read.toFixed(1)} s, transform ${s.transform.toFixed(1)} s, encode+write ${s.write.toFixed(1)} s, fidelity ${s.fidelity.toFixed(1)} s, total ${s.total.toFixed(1)} s\n`,
  );
  if (report.compression) io.stdout(`${formatCompression(report.compression)}\n`);
  if (report.fidelity)
    io.stdout(
      `${formatFidelity(report.fidelity, { fold: report.weightForm.fold, rotation: report.weightForm.rotation, norm: report.weightForm.norm })}\n`,
    );
  io.stdout(`${aneSummary}\n`);
}
