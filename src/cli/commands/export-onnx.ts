// `export-onnx MODEL --out model.onnx`: the model graph as ONNX, for onnxruntime and transformers.js.

import { Option, type Command } from 'commander';
import { ModernBertError } from '../../errors.js';
import { exportOnnx } from '../../export-onnx.js';
import { loadCheckpoint } from '../../io/checkpoint.js';
import { isPackagePath } from '../../load.js';
import { DEFAULT_ATTENTION_CHUNK, MAX_ATTENTION_CHUNK, type OutputHead } from '../../model.js';
import { printJson, type Io } from '../context.js';
import { nonNegativeInt, positiveInt } from '../parse.js';

interface ExportOnnxCliOptions {
  out: string;
  seqLen?: number;
  fold?: boolean;
  rotation: 'none' | 'hadamard';
  norm: 'l2' | 'rms';
  seed: number;
  precision: 'fp32' | 'fp16';
  head?: OutputHead;
  attentionChunk?: number;
  force?: boolean;
  externalData?: boolean;
  json?: boolean;
}

/** Registers the export-onnx command. */
export function registerExportOnnx(program: Command, io: Io): void {
  program
    .command('export-onnx')
    .description('export a checkpoint as an ONNX model (opset 17) for onnxruntime and transformers.js: int64 input_ids and attention_mask in, per-token outputs (1, S, width)')
    .argument('<model>', 'checkpoint folder (Hugging Face layout)')
    .requiredOption('--out <path>', 'output file, e.g. model.onnx')
    .option('--seq-len <n>', 'one static length (long inputs get banded local attention); default: any length up to max_position_embeddings', positiveInt)
    .option('--fold', 'fold the norms into the matrices (default with --precision fp16: float16 overflows the plain model)')
    .option('--no-fold', 'keep the plain LayerNorm model (default in float32)')
    .addOption(new Option('--rotation <kind>', 'residual-stream rotation of the folded model').choices(['none', 'hadamard']).default('none'))
    .addOption(new Option('--norm <form>', 'RMSNorm of the folded model: l2 (overflow-safe) or rms (x*x)').choices(['l2', 'rms']).default('l2'))
    .option('--seed <n>', 'seed of the Hadamard signs', nonNegativeInt, 0)
    .addOption(new Option('--precision <type>', 'weights and activations (inputs and outputs stay int64 and float32)').choices(['fp32', 'fp16']).default('fp32'))
    .addOption(new Option('--head <head>', 'output head (default: the checkpoint\'s own)').choices(['mlm', 'seqcls', 'tokcls', 'embedding', 'none']))
    .option('--attention-chunk <n>', `queries per chunk of global attention with --seq-len, 1..${MAX_ATTENTION_CHUNK} (default ${DEFAULT_ATTENTION_CHUNK})`, positiveInt)
    .option('--external-data', 'write the weights to <out>.data beside the model (needed above 2 GiB)')
    .option('--force', 'replace an existing file')
    .option('--json', 'machine-readable output')
    .action((modelPath: string, o: ExportOnnxCliOptions, cmd: Command) => {
      if (isPackagePath(modelPath)) throw new ModernBertError('BAD_ARGUMENT', `${modelPath} is a Core ML package; export-onnx takes a checkpoint folder`);
      const fold = o.fold ?? o.precision === 'fp16';
      if (!fold && cmd.getOptionValueSource('rotation') === 'cli' && o.rotation !== 'none') {
        throw new ModernBertError('BAD_ARGUMENT', `--rotation ${o.rotation} rotates the folded model: add --fold`);
      }
      const ckpt = loadCheckpoint(modelPath);
      try {
        const r = exportOnnx(ckpt, {
          out: o.out, seqLen: o.seqLen, fold, rotation: o.rotation, norm: o.norm, seed: o.seed, precision: o.precision,
          head: o.head, attentionChunk: o.attentionChunk, force: Boolean(o.force), externalData: Boolean(o.externalData),
        });
        if (o.json) return printJson(io, r);
        const mb = ((r.bytes + (r.data ? r.weightBytes : 0)) / 1e6).toFixed(1);
        io.stdout(`wrote ${r.out}${r.data ? ` and ${r.data}` : ''}: ${r.head} head, ${r.variant}, ${o.precision}, S = ${r.seqLen}, ${r.nodes} nodes, ${mb} MB, ${r.seconds.toFixed(1)} s\n`);
      } finally {
        ckpt.close();
      }
    });
}
