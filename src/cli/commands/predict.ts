// `predict [MODEL] TEXT`: fill-mask top-k, labels, token labels or the embedding, by the model's head.

import { existsSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { ModernBertError } from '../../errors.js';
import type { Precision } from '../../runtime/numerics.js';
import { readBatchInput } from '../../tasks/batch-input.js';
import { writeJsonl } from '../../tasks/batch-output.js';
import { closeTaskModel, openTaskModel, runTask, type TaskModel } from '../../tasks/pipeline.js';
import type { AggregationStrategy, TaskName } from '../../tasks/results.js';
import { taskOfHead, TASKS, type TaskTypes } from '../../tasks/task-table.js';
import { META } from '../../coreml/package-info.js';
import { addBatchOptions, batchRunOptions, type BatchCliOptions } from '../batch-options.js';
import { addRevisionOption, hubOptions, MODEL_HELP } from '../model-source.js';
import { printJson, progress, type Io } from '../context.js';
import { checkFileOutput } from '../../io/output.js';
import { DEFAULT_MODEL } from '../../run/load.js';
import { summary } from './embed.js';
import { positiveInt, precision } from '../parse.js';
import { addRuntimeOptions, cliExecutorChoice, type RuntimeCliOptions } from '../runtime.js';
import { packedWork, type Workload } from '../../run/runtime-cost.js';
import { DEFAULT_WINDOW } from '../../model/pack-texts.js';

interface PredictOptions extends RuntimeCliOptions, BatchCliOptions {
  topK: number;
  aggregation?: AggregationStrategy;
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
    .description(
      'fill [MASK] tokens (or classify, label tokens, embed) with a model; without MODEL, the built-in default model',
    )
    .argument('[model]', `.mlpackage, ${MODEL_HELP} (default: the built-in mini-trained model)`)
    .argument('[text]', 'the text, quoted; masked-LM models need at least one [MASK]')
    .option('-k, --top-k <n>', 'tokens to list per [MASK]', positiveInt, 5)
    .addOption(
      new Option(
        '--aggregation <strategy>',
        'token classifiers: group tokens into entities as transformers does (none: one label per token)',
      )
        .choices(['none', 'simple', 'first', 'average', 'max'])
        .default('none'),
    )
    .option('--embed', 'print the pooled sentence embedding instead')
    .option('--precision <mode>', 'arithmetic: fp32, fp16, fp16-fused, fp16-acc16', precision)
    .option('--tokenizer <path>', 'tokenizer.json (or its folder), for a package converted with --no-tokenizer')
    .option(
      '--input <file>',
      'many texts (one per line, or JSONL with a "text" field), packed several per window; JSONL out, one line per text',
    )
    .option('--out <file>', 'with --input: the JSONL file to write (default: standard output)')
    .option('--head-package <path>', 'a head package (convert --split) to run on MODEL, its body package')
    .option('--function <name>', 'the function of a multifunction package to run (a head name picks its shape buckets)')
    .option('--json', 'machine-readable output');
  addRuntimeOptions(addBatchOptions(addRevisionOption(cmd))).action(
    async (a: string | undefined, b: string | undefined, o: PredictOptions) => {
      if (o.input !== undefined) return predictBatch(io, a, b, o);
      for (const flag of ['out', 'force'] as const)
        if (o[flag] !== undefined) throw new ModernBertError('BAD_ARGUMENT', `--${flag} goes with --input FILE`);
      // One argument is the text (default model) unless it names an existing model.
      let [modelPath, text] = b === undefined ? [undefined, a] : [a, b];
      if (b === undefined && a !== undefined && existsSync(a)) [modelPath, text] = [a, undefined];
      if (text === undefined || text.trim() === '')
        throw new ModernBertError('BAD_ARGUMENT', 'no text given: modernbert-ane predict [MODEL] "text with [MASK]"');
      const tm = await openForPredict(io, modelPath, o.embed ? 'feature-extraction' : undefined, o);
      try {
        const task = o.embed ? 'feature-extraction' : ownTask(tm);
        const batch = { window: o.window, pack: o.pack, truncate: o.truncate, prefix: o.prefix };
        const [result] = (await runTask(tm, task, [text], taskOptions(task, o), batch)).results;
        if (o.json) return printJson(io, jsonResult(result!));
        io.stdout((TASKS[task].format as (r: unknown) => string)(result));
      } finally {
        await closeTaskModel(tm);
      }
    },
  );
}

/** The model for predict: its own head's task (or `task`), on the runtime the flags choose. */
async function openForPredict(
  io: Io,
  modelPath: string | undefined,
  task: TaskName | undefined,
  o: PredictOptions,
  work?: Workload,
): Promise<TaskModel> {
  return openTaskModel(modelPath, task, {
    precision: o.precision,
    tokenizer: o.tokenizer,
    headPackage: o.headPackage,
    function: o.function,
    executor: await cliExecutorChoice(o, o.precision, io, undefined, work),
    ...hubOptions(io, o),
  });
}

/** The task of the model's own head; a model without one (a body package, --head none) is refused, naming the remedy. */
function ownTask(tm: TaskModel): TaskName {
  if (tm.model.head !== 'none') return taskOfHead(tm.model.head);
  const body = tm.model.kind === 'package' && tm.model.pkg?.description.metadata.userDefined?.[META.part] === 'body';
  throw new ModernBertError(
    'BAD_ARGUMENT',
    `${tm.model.path} has no head${body ? ' (it is the body package of convert --split)' : ''}: give ${body ? 'one of its head packages with --head-package PATH' : 'a model with a head'}, or --embed for the mean of its last hidden state`,
    { path: tm.model.path },
  );
}

/** The task's call options from the flags: every label of a classifier, --top-k candidates per [MASK], --aggregation. */
function taskOptions(task: TaskName, o: PredictOptions): TaskTypes[TaskName]['options'] {
  if (task === 'fill-mask') return { top_k: o.topK };
  if (task === 'text-classification') return { top_k: null };
  if (task === 'token-classification') return { aggregation_strategy: o.aggregation ?? 'none' };
  return {};
}

/** A result as JSON: the library's, with an embedding as a list of numbers. */
function jsonResult(r: unknown): unknown {
  return r instanceof Float32Array ? Array.from(r) : r;
}

// `predict [MODEL] --input FILE`: the batch path, one JSONL line {"index", "result"} per input text.
async function predictBatch(
  io: Io,
  modelPath: string | undefined,
  extra: string | undefined,
  o: PredictOptions,
): Promise<void> {
  if (extra !== undefined) throw new ModernBertError('BAD_ARGUMENT', 'give either a text or --input FILE, not both');
  if (o.embed) throw new ModernBertError('BAD_ARGUMENT', '--embed with --input: use the embed command');
  const out =
    o.out === undefined
      ? undefined
      : checkFileOutput(o.out, {
          what: '--out',
          force: Boolean(o.force),
          inputs: [modelPath ?? DEFAULT_MODEL, o.input, o.tokenizer, o.headPackage],
        });
  const inputs = readBatchInput(o.input!);
  const tm = await openForPredict(
    io,
    modelPath,
    undefined,
    o,
    packedWork(
      inputs.map((t) => t.text),
      o.window ?? DEFAULT_WINDOW,
    ),
  );
  const bar = progress(io, 'predict', o.out === undefined || Boolean(o.json), 'texts');
  try {
    const task = ownTask(tm);
    const batch = batchRunOptions(o, inputs, bar);
    const { results, stats } = await runTask(
      tm,
      task,
      inputs.map((t) => t.text),
      taskOptions(task, o),
      batch,
    );
    bar.stop();
    const lines = (function* jsonLines() {
      for (const [index, r] of results.entries()) yield { index, result: jsonResult(r) };
    })();
    if (out === undefined) {
      for (const line of lines) io.stdout(`${JSON.stringify(line)}\n`);
      return;
    }
    writeJsonl(out, lines);
    // Written to our own standard output: the summary goes to stderr, not into the data.
    const say = out.ownFd === 1 ? io.stderr : io.stdout;
    if (o.json) say(`${JSON.stringify({ out: o.out, ...stats })}\n`);
    else say(`${summary(stats)}; wrote ${o.out}\n`);
  } finally {
    bar.stop();
    await closeTaskModel(tm);
  }
}
