// `export-onnx MODEL --out model.onnx`: the model graph as ONNX, for onnxruntime and transformers.js.

import { Option, type Command } from 'commander';
import { exportOnnx } from '../../convert/export-onnx.js';
import { readLines } from '../../eval/inputs.js';
import { readUserFile } from '../../io/files.js';
import { READ_LIMITS } from '../../io/limits.js';
import { DEFAULT_ATTENTION_CHUNK, MAX_ATTENTION_CHUNK, type OutputHead } from '../../model/options.js';
import type { Precision } from '../../runtime/numerics.js';
import type { RotationKind } from '../../model/variants.js';
import { printJson, progress, type Io } from '../context.js';
import { fp16Precision, headOption, nonNegativeInt, positiveInt } from '../parse.js';
import { addRevisionOption, downloadProgress, MODEL_HELP } from '../model-source.js';

interface ExportOnnxCliOptions {
  out: string;
  seqLen?: number;
  fold?: boolean;
  rotation?: RotationKind;
  norm: 'l2' | 'rms';
  seed: number;
  precision: 'fp32' | 'fp16';
  head?: OutputHead;
  attentionChunk?: number;
  force?: boolean;
  externalData?: boolean;
  calibration?: string;
  random: number;
  fidelityPrecision: Precision;
  learnSeconds: number;
  revision?: string;
  json?: boolean;
}

/** Registers the export-onnx command. */
export function registerExportOnnx(program: Command, io: Io): void {
  const cmd = program
    .command('export-onnx')
    .description(
      'export a checkpoint as an ONNX model (opset 17) for onnxruntime and transformers.js: int64 input_ids and attention_mask in, per-token outputs (1, S, width)',
    )
    .argument('<model>', MODEL_HELP)
    .requiredOption('--out <path>', 'output file, e.g. model.onnx')
    .option(
      '--seq-len <n>',
      'one static length (long inputs get banded local attention); default: any length up to max_position_embeddings',
      positiveInt,
    )
    .option(
      '--fold',
      'fold the norms into the matrices (default with --precision fp16: float16 overflows the plain model)',
    )
    .option('--no-fold', 'keep the plain LayerNorm model (default in float32)')
    .addOption(
      new Option('--rotation <kind>', 'residual-stream rotation of the folded model (default none)').choices([
        'none',
        'hadamard',
        'learned',
      ]),
    )
    .addOption(
      new Option('--norm <form>', 'RMSNorm of the folded model: l2 (overflow-safe) or rms (x*x)')
        .choices(['l2', 'rms'])
        .default('l2'),
    )
    .option('--seed <n>', 'seed of the Hadamard signs and of rotation learning', nonNegativeInt, 0)
    .option('--calibration <file>', 'texts (one per line) for --rotation learned (default: built-in sentences)')
    .option('--random <n>', 'random token ids for --rotation learned on models without a tokenizer', positiveInt, 128)
    .option(
      '--fidelity-precision <mode>',
      "float16 emulation that judges --rotation learned's candidates, as in convert: fp16, fp16-fused, fp16-acc16",
      fp16Precision,
      'fp16',
    )
    .option('--learn-seconds <s>', 'time budget of --rotation learned', positiveInt, 60)
    .addOption(
      new Option('--precision <type>', 'weights and activations (inputs and outputs stay int64 and float32)')
        .choices(['fp32', 'fp16'])
        .default('fp32'),
    )
    .addOption(headOption())
    .option(
      '--attention-chunk <n>',
      `queries per chunk of global attention with --seq-len, 1..${MAX_ATTENTION_CHUNK} (default ${DEFAULT_ATTENTION_CHUNK})`,
      positiveInt,
    )
    .option('--external-data', 'write the weights to <out>.data beside the model (needed above 2 GiB)')
    .option('--force', 'replace an existing file')
    .option('--json', 'machine-readable output');
  addRevisionOption(cmd).action(async (modelPath: string, o: ExportOnnxCliOptions) => {
    const bar = progress(io, 'learn', Boolean(o.json));
    try {
      const r = await exportOnnx(modelPath, {
        out: o.out,
        seqLen: o.seqLen,
        fold: o.fold,
        rotation: o.rotation,
        norm: o.norm,
        seed: o.seed,
        precision: o.precision,
        head: o.head,
        attentionChunk: o.attentionChunk,
        force: Boolean(o.force),
        externalData: Boolean(o.externalData),
        calibration:
          o.calibration === undefined
            ? undefined
            : readLines(readUserFile(o.calibration, READ_LIMITS.calibration, '--calibration').toString('utf8')),
        random: o.random,
        fidelity: o.fidelityPrecision,
        learnSeconds: o.learnSeconds,
        revision: o.revision,
        download: downloadProgress(io, Boolean(o.json)),
        onProgress: (_, d, t) => bar.update(d, t),
      });
      bar.stop();
      if (o.json) return printJson(io, r);
      if (r.learning) io.stdout(`rotation learning: ${r.learning.note}\n`);
      const mb = ((r.bytes + (r.data ? r.weightBytes : 0)) / 1e6).toFixed(1);
      io.stdout(
        `wrote ${r.out}${r.data ? ` and ${r.data}` : ''}: ${r.head} head, ${r.variant}, ${o.precision}, S = ${r.seqLen}, ${r.nodes} nodes, ${mb} MB, ${r.seconds.toFixed(1)} s\n`,
      );
    } finally {
      bar.stop();
    }
  });
}
