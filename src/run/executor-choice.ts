// What runs a model's graphs, for the library and the commands alike: onnxruntime or our engine as
// runtime-choice.ts decides, or Core ML itself ('coreml', macOS: a package run by Apple's framework through
// the Swift helper, run/coreml/). Requests that cannot be met are one-line errors naming the options.

import { ModernBertError } from '../errors.js';
import type { Precision } from '../runtime/numerics.js';
import { requireCoreML } from './coreml/build.js';
import { coremlExecutorFactory } from './coreml/executor.js';
import { CoreMLSession, type ComputeUnits } from './coreml/session.js';
import type { OrtProvider } from './ort-executor.js';
import type { ExecutorFactory } from './runner.js';
import { chooseRuntime, executorFor, type RuntimeName } from './runtime-choice.js';
import type { Workload } from './runtime-cost.js';

/** A runtime by name: ours, onnxruntime, or Core ML. */
export type AnyRuntime = RuntimeName | 'coreml';

export interface ExecutorRequest {
  runtime?: AnyRuntime;
  precision?: Precision;
  /** onnxruntime's execution provider. */
  provider?: OrtProvider;
  /** Where Core ML may run the model (with runtime 'coreml'; default 'all'). */
  computeUnits?: ComputeUnits;
  /** The Core ML session to run in (runtime 'coreml'); made on demand when absent. */
  session?: () => CoreMLSession;
  /** Runs graphs that are no package's under runtime 'coreml' (diff's checkpoint side); absent: an error. */
  fallback?: ExecutorFactory;
  /** Under runtime 'coreml' a float16 emulation runs on our engine (diff: Core ML runs the package side). */
  fp16OnEngine?: boolean;
  /** What the caller will run, when it knows before the model opens (runtime-cost.ts); else the first input decides. */
  work?: Workload;
  /** Told which runtime runs and why, once the work decides (by default onnxruntime or our engine). */
  say?: (note: string) => void;
}

export interface ExecutorChoice {
  /** 'auto': onnxruntime or our engine, decided on the first run by the work (runtime-choice.ts). */
  runtime: AnyRuntime | 'auto';
  /** undefined: our interpreter. */
  factory: ExecutorFactory | undefined;
  /** Which runtime runs and why, when it was not asked for (runtime-choice.ts). */
  note?: string;
  /** A Core ML session this choice made, for the caller to close. */
  session?: CoreMLSession;
}

/** Picks what runs a model's graphs. */
export async function chooseExecutor(request: ExecutorRequest): Promise<ExecutorChoice> {
  const fp16 = (request.precision ?? 'fp32') !== 'fp32';
  const r =
    fp16 && request.fp16OnEngine && request.runtime === 'coreml'
      ? { precision: request.precision, runtime: 'engine' as const }
      : request;
  if (r.computeUnits !== undefined && r.runtime !== 'coreml')
    throw new ModernBertError('BAD_ARGUMENT', "`computeUnits` goes with `runtime: 'coreml'`", {
      option: 'computeUnits',
    });
  if (r.runtime === 'coreml') {
    if (fp16)
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `\`precision: ${r.precision}\` is our float16 emulation; \`runtime: 'coreml'\` runs the package as Core ML computes it: leave out one of them`,
        { option: 'precision' },
      );
    if (r.provider !== undefined)
      throw new ModernBertError('BAD_ARGUMENT', "`ortProvider` goes with `runtime: 'ort'`", { option: 'ortProvider' });
    requireCoreML("`runtime: 'coreml'`");
    const own = r.session ? undefined : new CoreMLSession();
    const session = r.session?.() ?? own!;
    return {
      runtime: 'coreml',
      factory: coremlExecutorFactory(session, r.computeUnits ?? 'all', r.fallback),
      ...(own ? { session: own } : {}),
    };
  }
  const c = await chooseRuntime({ runtime: r.runtime, precision: r.precision, provider: r.provider });
  return { runtime: c.runtime, factory: executorFor(c, r.work, r.say), ...(c.note ? { note: c.note } : {}) };
}
