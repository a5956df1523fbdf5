// `predict [MODEL] TEXT`: fill-mask top-k, labels, token labels or the embedding, by the model's head.

import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { ModernBertError } from '../../errors.js';
import { checkFileOutput } from '../../io/output.js';
import { DEFAULT_MODEL, openModel } from '../../run/load.js';
import type { Precision } from '../../runtime/numerics.js';
import { classify, embed, fillMask, labelTokens } from '../../tasks/predict.js';
import { readBatchInput } from '../../tasks/batch-input.js';
import { writeJsonl } from '../../tasks/batch-output.js';
import { runBatch } from '../../tasks/batch.js';
import { addBatchOptions, type BatchCliOptions } from '../batch-options.js';
import { addRevisionOption, hubOptions, MODEL_HELP } from '../model-source.js';
import { printJson, progress, type Io } from '../context.js';
import { summary } from './embed.js';
import { positiveInt, precision } from '../parse.js';
import { addRuntimeOptions, cliExecutor, type RuntimeCliOptions } from '../runtime.js';

interface PredictOptions extends RuntimeCliOptions, BatchCliOptions {
  topK: number;
  input?: string;
  out?: string;
  embed?: boolean;
  precision?: Precision;
  tokenizer?: string;
  headPackage?: string;
  function?: string;
  revision?: string;
  json?: boolean;
}

/** Registers the predict command. */
export function registerPredict(program: Command, io: Io): void {
  const cmd = program
    .command('predict')
    .description('fill [MASK] tokens (or classify, label tokens, embed) with a model; without MODEL, the built-in default model')
    .argument('[model]', `.mlpackage, ${MODEL_HELP} (default: the built-in mini-trained model)`)
    .argument('[text]', 'the text, quoted; masked-LM models need at least one [MASK]')
    .option('-k, --top-k <n>', 'tokens to list per [MASK]', positiveInt, 5)
    .option('--embed', 'print the pooled sentence embedding instead')
    .option('--precision <mode>', 'arithmetic: fp32, fp16, fp16-fused, fp16-acc16', precision)
    .option('--tokenizer <dir>', 'folder with tokenizer.json, for a package converted without --tokenizer')
    .option('--input <file>', 'many texts (one per line, or JSONL with a "text" field), packed several per window; JSONL out, one line per text')
    .option('--out <file>', 'with --input: the JSONL file to write (default: standard output)')
    .option('--head-package <path>', 'a head package (convert --split) to run on MODEL, its body package')
    .option('--function <name>', 'the function of a multifunction package to run (a head name picks its shape buckets)')
    .option('--json', 'machine-readable output');
  addRuntimeOptions(addBatchOptions(addRevisionOption(cmd), 'with --input: '))
    .action(async (a: string | undefined, b: string | undefined, o: PredictOptions) => {
      if (o.input !== undefined) return predictBatch(io, a, b, o);
      for (const flag of ['out', 'window', 'pack', 'truncate', 'prefix', 'force'] as const) {
        if (o[flag] !== undefined) throw new ModernBertError('BAD_ARGUMENT', `--${flag} goes with --input FILE`);
      }
      // One argument is the text (default model) unless it names an existing model.
      let [modelPath, text] = b === undefined ? [undefined, a] : [a, b];
      if (b === undefined && a !== undefined && existsSync(a)) [modelPath, text] = [a, undefined];
      if (text === undefined || text.trim() === '') throw new ModernBertError('BAD_ARGUMENT', 'no text given: modernbert-ane predict [MODEL] "text with [MASK]"');
      const model = await openModel(modelPath, { precision: o.precision, tokenizerDir: o.tokenizer, headPackage: o.headPackage, function: o.function, executor: await cliExecutor(o, o.precision, io), ...hubOptions(io, o) });
      try {
        const tok = model.tokenizer;
        if (!tok) throw new ModernBertError('FILE_NOT_FOUND', `${model.path} has no tokenizer.json, which predict needs (give --tokenizer DIR)`, { path: model.path });
        if (o.embed) {
          const embedding = await embed(model.runner, tok, text, model.maxLen);
          if (o.json) printJson(io, { embedding });
          else io.stdout(`${embedding.map((v) => v.toFixed(6)).join(' ')}\n`);
          return;
        }
        switch (model.head) {
          case 'mlm': {
            const masks = await fillMask(model.runner, tok, text, o.topK, model.maxLen);
            if (o.json) return printJson(io, { masks });
            for (const m of masks) {
              io.stdout(`[MASK] at token ${m.position}:\n`);
              for (const t of m.top) io.stdout(`  ${JSON.stringify(t.token).padEnd(20)} ${t.prob.toFixed(4)}\n`);
            }
            return;
          }
          case 'seqcls': {
            const labels = await classify(model.runner, tok, text, model.labels, model.maxLen);
            if (o.json) return printJson(io, { labels });
            for (const l of labels) io.stdout(`${l.label.padEnd(20)} ${l.prob.toFixed(4)}\n`);
            return;
          }
          case 'tokcls': {
            const tokens = await labelTokens(model.runner, tok, text, model.labels, model.maxLen);
            if (o.json) return printJson(io, { tokens });
            for (const t of tokens) io.stdout(`${JSON.stringify(t.token).padEnd(20)} ${t.label.padEnd(12)} ${t.prob.toFixed(4)}\n`);
            return;
          }
          default: {
            const embedding = await embed(model.runner, tok, text, model.maxLen);
            if (o.json) return printJson(io, { embedding });
            io.stdout(`${embedding.map((v) => v.toFixed(6)).join(' ')}\n`);
          }
        }
      } finally {
        model.close();
      }
    });
}

// `predict [MODEL] --input FILE`: the batch path, one JSONL line per input text.
async function predictBatch(io: Io, modelPath: string | undefined, extra: string | undefined, o: PredictOptions): Promise<void> {
  if (extra !== undefined) throw new ModernBertError('BAD_ARGUMENT', 'give either a text or --input FILE, not both');
  if (o.embed) throw new ModernBertError('BAD_ARGUMENT', '--embed with --input: use the embed command');
  const out = o.out === undefined ? undefined : checkFileOutput(o.out, { what: '--out', force: Boolean(o.force), inputs: [modelPath ?? DEFAULT_MODEL, o.input, o.tokenizer] });
  const inputs = readBatchInput(o.input!);
  const model = await openModel(modelPath, { precision: o.precision, tokenizerDir: o.tokenizer, headPackage: o.headPackage, function: o.function, executor: await cliExecutor(o, o.precision, io), ...hubOptions(io, o) });
  const bar = progress(io, 'predict', o.out === undefined || Boolean(o.json), 'texts');
  try {
    const tok = model.tokenizer;
    if (!tok) throw new ModernBertError('FILE_NOT_FOUND', `${model.path} has no tokenizer.json, which predict needs (give --tokenizer DIR)`, { path: model.path });
    const { results, stats } = await runBatch(model, tok, inputs, { task: 'predict', window: o.window, pack: o.pack, truncate: o.truncate, prefix: o.prefix, topK: o.topK, onProgress: (d, t) => bar.update(d, t) });
    bar.stop();
    if (out === undefined) {
      for (const r of results) io.stdout(`${JSON.stringify(r)}\n`);
      return;
    }
    writeJsonl(out, results);
    // Written to our own standard output: the summary goes to stderr, not into the data.
    const say = out.ownFd === 1 ? io.stderr : io.stdout;
    if (o.json) say(`${JSON.stringify({ out: o.out, ...stats })}\n`);
    else say(`${summary(stats)}; wrote ${o.out}\n`);
  } finally {
    bar.stop();
    model.close();
  }
}
