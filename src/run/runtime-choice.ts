// Which runtime runs a float32 forward pass: onnxruntime-node when it is installed (the default), else our
// engine. float16 emulation modes always run on our interpreter: no other runtime rounds as the Neural
// Engine does. Commands call chooseRuntime once and print its note (stderr, not with --json).

import { ModernBertError } from '../errors.js';
import type { ExecutorFactory } from './runner.js';
import { loadOrt, OrtExecutor, ortVersion, type Ort, type OrtProvider } from './ort-executor.js';
import type { Precision } from '../runtime/numerics.js';

export type RuntimeName = 'ort' | 'engine';

export interface RuntimeRequest {
  /** What the user asked for; undefined: ort when installed, at float32. */
  runtime?: RuntimeName;
  precision?: Precision;
  provider?: OrtProvider;
}

export interface RuntimeChoice {
  runtime: RuntimeName;
  /** The loaded onnxruntime-node, when runtime is 'ort'. */
  ort?: Ort;
  provider: OrtProvider;
  /** One line for stderr: which runtime runs and why, when it was not asked for. */
  note?: string;
}

/** Picks the runtime for a command (one-line errors for impossible requests). */
export async function chooseRuntime(r: RuntimeRequest): Promise<RuntimeChoice> {
  const provider = r.provider ?? 'cpu';
  if (provider === 'coreml' && process.platform !== 'darwin') {
    throw new ModernBertError('BAD_ARGUMENT', `\`ortProvider: coreml\` needs macOS (onnxruntime's Core ML execution provider); this system is ${process.platform}`);
  }
  const fp32 = (r.precision ?? 'fp32') === 'fp32';
  if (!fp32) {
    if (r.runtime === 'ort' || provider !== 'cpu') throw new ModernBertError('BAD_ARGUMENT', `\`precision: ${r.precision}\` is our float16 emulation, which runs on our engine only: leave out \`runtime: ort\` and \`ortProvider\``);
    return { runtime: 'engine', provider };
  }
  if (r.runtime === 'engine') {
    if (provider !== 'cpu') throw new ModernBertError('BAD_ARGUMENT', '`ortProvider` needs `runtime: ort`');
    return { runtime: 'engine', provider };
  }
  const ort = await loadOrt();
  if (!ort) {
    if (r.runtime === 'ort' || provider !== 'cpu') throw new ModernBertError('BAD_ARGUMENT', '`runtime: ort`: onnxruntime-node is not installed (npm install onnxruntime-node@1.30.0; see README "Runtimes")');
    return { runtime: 'engine', provider, note: 'note: onnxruntime-node is not installed: running on our engine (see README "Runtimes")' };
  }
  const note = r.runtime === undefined ? `note: running on onnxruntime-node ${ortVersion(ort)} at float32 (--runtime engine for our own engine)` : undefined;
  return { runtime: 'ort', ort, provider, ...(note ? { note } : {}) };
}

/** The executor factory of a choice: onnxruntime for 'ort', undefined (our interpreter) for 'engine'. */
export function executorFor(choice: RuntimeChoice): ExecutorFactory | undefined {
  const ort = choice.ort;
  if (choice.runtime !== 'ort' || !ort) return undefined;
  return (graph) => new OrtExecutor(graph, ort, choice.provider);
}
