// The --runtime, --ort-provider and --compute-units options that every command running a model shares (predict,
// verify, diff, embed): parsed here, decided by runtime-choice.ts (Core ML: cli/coreml.ts). The note is printed once to stderr where a person
// reads it, as the progress bars are: on a terminal, not with --json (scripts keep one line per error).

import { Option, type Command } from 'commander';
import type { ExecutorFactory } from '../run/runner.js';
import type { OrtProvider } from '../run/ort-executor.js';
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
    .addOption(new Option('--runtime <name>', 'float32 runtime: ort (onnxruntime-node, the default when installed) or engine (ours); float16 emulation always runs on ours; coreml: a package on Core ML itself (macOS)').choices(['ort', 'engine', 'coreml']))
    .addOption(new Option('--ort-provider <name>', 'onnxruntime execution provider: cpu, or coreml (macOS only: ML Program on the CPU, GPU and Neural Engine; untested here)').choices(['cpu', 'coreml']))
    .addOption(new Option('--compute-units <units>', 'with --runtime coreml: where Core ML may run the model (default all)').choices([...COMPUTE_UNITS]));
}

/**
 * The executor for a model run at `precision` (undefined: our interpreter), printing the runtime's note once per
 * `said` set (on a terminal). A float16 side of `diff` runs on our engine even when --runtime ort names the float32 side's.
 */
export async function cliExecutor(o: RuntimeCliOptions, precision: Precision | undefined, io: Io, said = new Set<string>(), forceEngineForFp16 = false): Promise<ExecutorFactory | undefined> {
  return (await cliExecutorChoice(o, precision, io, said, forceEngineForFp16)).factory;
}

/** As cliExecutor, with the runtime's name. */
export async function cliExecutorChoice(o: RuntimeCliOptions, precision: Precision | undefined, io: Io, said = new Set<string>(), forceEngineForFp16 = false): Promise<ExecutorChoice> {
  const choice = await chooseExecutor({
    runtime: o.runtime,
    precision,
    provider: o.ortProvider,
    computeUnits: o.computeUnits,
    session: () => coremlSession('--runtime coreml', io, Boolean(o.json)),
    fp16OnEngine: forceEngineForFp16,
    // diff's checkpoint side (float32) runs on our engine beside the package on Core ML.
    ...(forceEngineForFp16 ? { fallback: (graph: Graph, p: Precision) => new Interpreter(graph, p) } : {}),
  });
  if (choice.note && io.isTTY && !o.json && !said.has(choice.note)) {
    said.add(choice.note);
    io.stderr(`${choice.note}\n`);
  }
  return choice;
}
