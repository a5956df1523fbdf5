// `embed MODEL --input FILE --out FILE`: sentence embeddings of many texts, packed several per window.

import type { Command } from 'commander';
import type { Precision } from '../../runtime/numerics.js';
import { readBatchInput } from '../../tasks/batch-input.js';
import { outputFormat, writeEmbeddings } from '../../tasks/batch-output.js';
import type { BatchStats } from '../../tasks/batch.js';
import { closeTaskModel, openTaskModel, runTask } from '../../tasks/pipeline.js';
import { addBatchOptions, batchRunOptions, type BatchCliOptions } from '../batch-options.js';
import { progress, type Io } from '../context.js';
import { checkFileOutput } from '../../io/output.js';
import { precision } from '../parse.js';
import { addRuntimeOptions, cliExecutorChoice, type RuntimeCliOptions } from '../runtime.js';
import { packedWork } from '../../run/runtime-cost.js';
import { DEFAULT_WINDOW } from '../../model/pack-texts.js';
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
    .description(
      'embed many texts (one per line, or JSONL with a "text" field), packed several per window; writes JSONL, .npy or .safetensors',
    )
    .argument('<model>', `.mlpackage (one converted with --pack K runs K texts per window), ${MODEL_HELP}`)
    .requiredOption('--input <file>', 'texts: one per line, or JSONL objects with a "text" field')
    .requiredOption(
      '--out <file>',
      'embeddings: .jsonl ({"index", "embedding"} per line), .npy or .safetensors (float32 [N, C])',
    )
    .option('--precision <mode>', 'arithmetic: fp32, fp16, fp16-fused, fp16-acc16', precision)
    .option('--tokenizer <path>', 'tokenizer.json (or its folder), for a package converted with --no-tokenizer')
    .option('--function <name>', 'the function of a multifunction package to run (default: its embedding function)')
    .option('--json', 'machine-readable summary');
  addRuntimeOptions(addBatchOptions(addRevisionOption(cmd))).action(async (modelPath: string, o: EmbedOptions) => {
    const out = checkFileOutput(o.out, {
      what: '--out',
      force: Boolean(o.force),
      inputs: [modelPath, o.input, o.tokenizer],
    });
    outputFormat(o.out, out.how === 'direct'); // an unknown extension fails before any work
    const inputs = readBatchInput(o.input);
    const tm = await openTaskModel(modelPath, 'feature-extraction', {
      precision: o.precision,
      tokenizer: o.tokenizer,
      executor: await cliExecutorChoice(
        o,
        o.precision,
        io,
        undefined,
        packedWork(
          inputs.map((t) => t.text),
          o.window ?? DEFAULT_WINDOW,
        ),
      ),
      ...hubOptions(io, o),
      ...(o.function === undefined ? {} : { function: o.function }),
    });
    const bar = progress(io, 'embed', Boolean(o.json), 'texts');
    try {
      const batch = batchRunOptions(o, inputs, bar);
      const { results, stats } = await runTask(
        tm,
        'feature-extraction',
        inputs.map((t) => t.text),
        {},
        batch,
      );
      bar.stop();
      await writeEmbeddings(out, results);
      // Written to our own standard output: the summary goes to stderr, not into the data.
      const say = out.ownFd === 1 ? io.stderr : io.stdout;
      if (o.json) return say(`${JSON.stringify({ out: o.out, ...stats })}\n`);
      say(`${summary(stats)}; wrote ${o.out}\n`);
    } finally {
      bar.stop();
      await closeTaskModel(tm);
    }
  });
}

/** One line about a batch run: texts, windows, fill and speed. */
export function summary(s: BatchStats): string {
  const passes =
    s.strategy === 'single'
      ? `one per pass at its own length (sooner than ${s.window}-token windows here)`
      : `in ${s.windows} windows of ${s.window} tokens (up to ${s.textsPerWindow} texts each${s.strategy === 'blocks' ? ', each text within one block of attention' : ''}, ${(100 * s.fill).toFixed(1)}% filled)`;
  return `${s.texts} texts ${passes}, ${s.seconds.toFixed(1)} s, ${(s.texts / s.seconds).toFixed(1)} texts/s`;
}
