// Which runtime runs a command's forward passes: onnxruntime-node or our engine. `--runtime` forces one;
// otherwise the choice follows the command's work (runtime-cost.ts): onnxruntime computes several times
// faster but costs more to set up (a session reads and packs every weight), so a short prediction runs on
// our engine and throughput work (long inputs, many texts, goldens) on onnxruntime. Both run float32 and
// the float16 emulations `fp16` and `fp16-fused` (onnx/emulate-fp16.ts); `fp16-acc16` runs on our engine
// only. Commands call chooseRuntime once and print its note (stderr, not with --json).

import { ModernBertError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import { Interpreter } from '../graph/interpreter.js';
import { lowersToOnnx } from '../onnx/emulate-fp16.js';
import type { Precision } from '../runtime/numerics.js';
import { loadOrt, OrtExecutor, ortVersion, type Ort, type OrtProvider } from './ort-executor.js';
import type { Executor, ExecutorFactory, GraphUse, LengthPlan, PackageSource } from './runner.js';
import { prefersOrt, workOf, type Workload } from './runtime-cost.js';

export type RuntimeName = 'ort' | 'engine';

export interface RuntimeRequest {
  /** What the user asked for; undefined: chosen by the work (runtime-cost.ts). */
  runtime?: RuntimeName;
  precision?: Precision;
  provider?: OrtProvider;
}

export interface RuntimeChoice {
  /** 'auto': onnxruntime is installed and nothing was forced; the work decides on the first forward pass. */
  runtime: RuntimeName | 'auto';
  /** The loaded onnxruntime-node, when runtime is 'ort' or 'auto'. */
  ort?: Ort;
  provider: OrtProvider;
  precision: Precision;
  /** One line for stderr: which runtime runs and why, when it was not asked for (for 'auto', said by the factory). */
  note?: string;
}

/** Picks the runtime for a command (one-line errors for impossible requests). */
export async function chooseRuntime(r: RuntimeRequest): Promise<RuntimeChoice> {
  const provider = r.provider ?? 'cpu';
  const precision = r.precision ?? 'fp32';
  if (provider === 'coreml' && process.platform !== 'darwin') {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`ortProvider: coreml\` needs macOS (onnxruntime's Core ML execution provider); this system is ${process.platform}`,
    );
  }
  if (precision !== 'fp32' && provider !== 'cpu')
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`precision: ${precision}\` is our float16 emulation, which runs on the CPU: leave out \`ortProvider\``,
    );
  if (!lowersToOnnx(precision)) {
    if (r.runtime === 'ort')
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `\`precision: ${precision}\` (float16 running sums inside matrix products) runs on our engine only: leave out \`runtime: ort\``,
      );
    return { runtime: 'engine', provider, precision };
  }
  if (r.runtime === 'engine') {
    if (provider !== 'cpu') throw new ModernBertError('BAD_ARGUMENT', '`ortProvider` needs `runtime: ort`');
    return { runtime: 'engine', provider, precision };
  }
  const ort = await loadOrt();
  if (!ort) {
    if (r.runtime === 'ort' || provider !== 'cpu')
      throw new ModernBertError(
        'BAD_ARGUMENT',
        '`runtime: ort`: onnxruntime-node is not installed (npm install onnxruntime-node@1.30.0; see README "Runtimes")',
      );
    return {
      runtime: 'engine',
      provider,
      precision,
      note: 'note: onnxruntime-node is not installed: running on our engine (see README "Runtimes")',
    };
  }
  // An execution provider is a request for onnxruntime.
  return { runtime: r.runtime ?? (provider === 'cpu' ? 'auto' : 'ort'), ort, provider, precision };
}

/**
 * The executor factory of a choice: onnxruntime for 'ort', undefined (our interpreter) for 'engine', and for
 * 'auto' one that decides on its first use, from `work` when the command knows it before it runs, else from
 * the first input's length; `say` receives the line that tells which runtime runs and why.
 */
export function executorFor(
  choice: RuntimeChoice,
  work?: Workload,
  say?: (note: string) => void,
): ExecutorFactory | undefined {
  const ort = choice.ort;
  if (choice.runtime === 'engine' || !ort) return undefined;
  const onOrt = ortFactory(ort, choice.provider);
  if (choice.runtime === 'ort') return onOrt;
  let useOrt: boolean | undefined;
  // The command's work when it said, with the model's size once the first graph tells it.
  const decide = (fallback: Workload): boolean => {
    if (useOrt === undefined) {
      const w = work ? { ...work, ...(fallback.bytes === undefined ? {} : { bytes: fallback.bytes }) } : fallback;
      useOrt = prefersOrt(w, choice.precision);
      say?.(
        useOrt
          ? `note: running on onnxruntime-node ${ortVersion(ort)} (${describeWork(w)}: worth its setup; --runtime engine for our own engine)`
          : `note: running on our engine (${describeWork(w)}: less than onnxruntime's setup would cost; --runtime ort to use it)`,
      );
    }
    return useOrt;
  };
  const factory = (graph: Graph, precision: Precision, source?: PackageSource, use?: GraphUse): Executor =>
    decide(workOf(graph)) ? onOrt(graph, precision, source, use) : new Interpreter(graph, precision);
  return Object.assign(factory, {
    plan: (S: number, precision: Precision, bytes?: number): LengthPlan | undefined =>
      decide({ tokens: S, passes: 1, ...(bytes === undefined ? {} : { bytes }) })
        ? ortLengthPlan(S, precision)
        : undefined,
    readsFiles: (w: Workload) => decide(w),
  });
}

function describeWork(w: Workload): string {
  return w.passes === 1 ? `${w.tokens} tokens` : `about ${w.tokens} tokens in ${w.passes} passes`;
}

/** onnxruntime's executor factory, at float32 or a float16 emulation. */
function ortFactory(ort: Ort, provider: OrtProvider): ExecutorFactory {
  const create = (graph: Graph, precision: Precision, _source?: PackageSource, use?: GraphUse) =>
    new OrtExecutor(graph, ort, provider, lowersToOnnx(precision) ? precision : unsupportedOnOrt(precision), use);
  return Object.assign(create, { plan: ortLengthPlan, readsFiles: () => true });
}

/**
 * Which graph onnxruntime runs an input of S tokens on (engine.ts LengthPlan). Each session reads and packs
 * every weight (a second and the weights' size again on synth-base), so lengths share sessions. At float32,
 * one graph with a symbolic length serves every input up to ORT_SHARED_LENGTH tokens (it scores all pairs
 * in local layers too, which costs little up to there). In float16 emulation a symbolic graph's thousands of
 * float16 round trips made onnxruntime's session setup take 3 CPU seconds more than a static one, so inputs
 * are padded to the next of a few static lengths instead: powers of two from 64, then multiples of 1,024.
 */
export function ortLengthPlan(S: number, precision: Precision): LengthPlan {
  if (precision === 'fp32' && S <= ORT_SHARED_LENGTH) return { len: ORT_SHARED_LENGTH, shared: true };
  const len = S <= 64 ? 64 : S <= 1024 ? 2 ** Math.ceil(Math.log2(S)) : Math.ceil(S / 1024) * 1024;
  return { len, shared: false };
}

/** Inputs up to this many tokens share one onnxruntime session at float32 (ortLengthPlan). */
export const ORT_SHARED_LENGTH = 1024;

function unsupportedOnOrt(p: Precision): never {
  throw new ModernBertError('BAD_ARGUMENT', `\`precision: ${p}\` runs on our engine only`);
}
