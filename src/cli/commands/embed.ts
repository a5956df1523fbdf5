// `embed MODEL --input FILE --out FILE`: sentence embeddings of many texts, packed several per window.

import type { Command } from 'commander';
import { ModernBertError } from '../../errors.js';
import { checkFileOutput } from '../../io/output.js';
import { openModel, type LoadedModel } from '../../run/load.js';
import { packageInfo } from '../../coreml/package-info.js';
import type { Precision } from '../../runtime/numerics.js';
import { readBatchInput } from '../../tasks/batch-input.js';
import { writeEmbeddings } from '../../tasks/batch-output.js';
import { runBatch, type BatchStats } from '../../tasks/batch.js';
import { addBatchOptions, type BatchCliOptions } from '../batch-options.js';
import { progress, type Io } from '../context.js';
import { precision } from '../parse.js';
import { addRuntimeOptions, cliExecutor, type RuntimeCliOptions } from '../runtime.js';
import { addRevisionOption, hubOptions, MODEL_HELP } from '../model-source.js';

interface EmbedOptions extends RuntimeCliOptions, BatchCliOptions {
  input: string;
  out: string;
  precision?: Precision;
  tokenizer?: string;
  function?: string;
  revision?: string;
  json?: boolean;
}

/** Registers the embed command. */
export function registerEmbed(program: Command, io: Io): void {
  const cmd = program
    .command('embed')
    .description('embed many texts (one per line, or JSONL with a "text" field), packed several per window; writes JSONL, .npy or .safetensors')
    .argument('<model>', `.mlpackage (one converted with --pack K runs K texts per window), ${MODEL_HELP}`)
    .requiredOption('--input <file>', 'texts: one per line, or JSONL objects with a "text" field')
    .requiredOption('--out <file>', 'embeddings: .jsonl ({"index", "embedding"} per line), .npy or .safetensors (float32 [N, C])')
    .option('--precision <mode>', 'arithmetic: fp32, fp16, fp16-fused, fp16-acc16', precision)
    .option('--tokenizer <dir>', 'folder with tokenizer.json, for a package converted without --tokenizer')
    .option('--function <name>', 'the function of a multifunction package to run (default: its embedding function)')
    .option('--json', 'machine-readable summary');
  addRuntimeOptions(addBatchOptions(addRevisionOption(cmd)))
    .action(async (modelPath: string, o: EmbedOptions) => {
      const out = checkFileOutput(o.out, { what: '--out', force: Boolean(o.force), inputs: [modelPath, o.input, o.tokenizer] });
      const inputs = readBatchInput(o.input);
      const executor = await cliExecutor(o, o.precision, io);
      const open = (fn?: string) => openModel(modelPath, { precision: o.precision, tokenizerDir: o.tokenizer, executor, ...hubOptions(io, o), ...(fn === undefined ? {} : { function: fn }) });
      let model = await open(o.function);
      // A multifunction package whose default function is another head: its embedding function, when it has one.
      const fn = o.function === undefined ? embeddingFunction(model) : undefined;
      if (fn !== undefined) {
        model.close();
        model = await open(fn);
      }
      const bar = progress(io, 'embed', Boolean(o.json), 'texts');
      try {
        const tok = model.tokenizer;
        if (!tok) throw new ModernBertError('FILE_NOT_FOUND', `${model.path} has no tokenizer.json, which embed needs (give --tokenizer DIR)`, { path: model.path });
        const { results, stats } = await runBatch(model, tok, inputs, { task: 'embed', window: o.window, pack: o.pack, truncate: o.truncate, prefix: o.prefix, onProgress: (d, t) => bar.update(d, t) });
        bar.stop();
        await writeEmbeddings(out, results.map((r) => ('embedding' in r ? r.embedding : new Float32Array(0))));
        // Written to our own standard output: the summary goes to stderr, not into the data.
        const say = out.ownFd === 1 ? io.stderr : io.stdout;
        if (o.json) return say(`${JSON.stringify({ out: o.out, ...stats })}\n`);
        say(`${summary(stats)}; wrote ${o.out}\n`);
      } finally {
        bar.stop();
        model.close();
      }
    });
}

/** The name of a multifunction package's embedding function, when its default function has another head. */
function embeddingFunction(model: LoadedModel): string | undefined {
  if (!model.pkg || model.head === 'embedding') return undefined;
  const functions = packageInfo(model.pkg, model.path).functions;
  return Object.keys(functions).find((name) => functions[name]!.head === 'embedding');
}

/** One line about a batch run: texts, windows, fill and speed. */
export function summary(s: BatchStats): string {
  return `${s.texts} texts in ${s.windows} windows of ${s.window} tokens (up to ${s.textsPerWindow} texts each, ${(100 * s.fill).toFixed(1)}% filled), ${s.seconds.toFixed(1)} s, ${(s.texts / s.seconds).toFixed(1)} texts/s`;
}
