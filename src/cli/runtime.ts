// The --runtime, --ort-provider and --compute-units options that every command running a model shares (predict,
// verify, diff, embed): parsed here, decided by runtime-choice.ts (Core ML: cli/coreml.ts). The note is printed once to stderr where a person
// reads it, as the progress bars are: on a terminal, not with --json (scripts keep one line per error).

import { Option, type Command } from 'commander';
import type { ExecutorFactory } from '../run/runner.js';
import type { OrtProvider } from '../run/ort-executor.js';
import type { Workload } from '../run/runtime-cost.js';
import type { Precision } from '../runtime/numerics.js';
import type { RuntimeName } from '../run/runtime-choice.js';
import { chooseExecutor, type ExecutorChoice } from '../run/executor-choice.js';
import type { Graph } from '../ir/graph.js';
import { Interpreter } from '../graph/interpreter.js';
import { COMPUTE_UNITS, type ComputeUnits } from '../run/coreml/session.js';
import type { Io } from './context.js';
import { coremlSession } from './coreml.js';

export interface RuntimeCliOptions {
  runtime?: RuntimeName | 'coreml';
  ortProvider?: OrtProvider;
  computeUnits?: ComputeUnits;
  json?: boolean;
}

/** Adds --runtime and --ort-provider to a command. */
export function addRuntimeOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--runtime <name>',
        'ort (onnxruntime-node) or engine (ours); by default the one that finishes this work sooner (fp16-acc16: ours only); coreml: a package on Core ML itself (macOS)',
      ).choices(['ort', 'engine', 'coreml']),
    )
    .addOption(
      new Option(
        '--ort-provider <name>',
        'onnxruntime execution provider: cpu, or coreml (macOS only: ML Program on the CPU, GPU and Neural Engine; untested here)',
      ).choices(['cpu', 'coreml']),
    )
    .addOption(
      new Option(
        '--compute-units <units>',
        'with --runtime coreml: where Core ML may run the model (default all)',
      ).choices([...COMPUTE_UNITS]),
    );
}

/**
 * The executor for a model run at `precision` (undefined: our interpreter), printing which runtime runs once
 * per `said` set (on a terminal). `work`: what the command will run, when it knows before the model opens
 * (runtime-cost.ts); otherwise the first input decides.
 */
export async function cliExecutor(
  o: RuntimeCliOptions,
  precision: Precision | undefined,
  io: Io,
  said = new Set<string>(),
  work?: Workload,
  diffSide = false,
): Promise<ExecutorFactory | undefined> {
  return (await cliExecutorChoice(o, precision, io, said, work, diffSide)).factory;
}

/** As cliExecutor, with the runtime's name. `diffSide`: one side of diff (beside a package on Core ML, our engine). */
export async function cliExecutorChoice(
  o: RuntimeCliOptions,
  precision: Precision | undefined,
  io: Io,
  said = new Set<string>(),
  work?: Workload,
  diffSide = false,
): Promise<ExecutorChoice> {
  const say = (note: string): void => {
    if (!io.isTTY || o.json || said.has(note)) return;
    said.add(note);
    io.stderr(`${note}\n`);
  };
  const choice = await chooseExecutor({
    runtime: o.runtime,
    precision,
    provider: o.ortProvider,
    computeUnits: o.computeUnits,
    session: () => coremlSession('--runtime coreml', io, Boolean(o.json)),
    fp16OnEngine: diffSide,
    // diff's checkpoint side (float32) runs on our engine beside the package on Core ML.
    ...(diffSide ? { fallback: (graph: Graph, p: Precision) => new Interpreter(graph, p) } : {}),
    ...(work ? { work } : {}),
    say,
  });
  if (choice.note) say(choice.note);
  return choice;
}
