// A package's program run by Core ML instead of our interpreter: the Executor that PackageRunner drives, so
// padding, heads, buckets and output cropping stay the package runner's (one copy), and only the arithmetic
// moves to the helper. Core ML returns the model's outputs only: internal values (taps) cannot be read.

import type { Executor, ExecutorFactory, PackageSource } from '../runner.js';
import { ModernBertError } from '../../errors.js';
import type { Graph } from '../../ir/graph.js';
import type { RtTensor } from '../../runtime/tensor.js';
import { encodeArray, protocolError, wireDType, type WireArray } from './protocol.js';
import type { ComputeUnits, CoreMLSession, PackageRef } from './session.js';

/** Runs one function of a package in the Core ML helper. */
export class CoreMLExecutor implements Executor {
  readonly tapsAvailable = false;
  private readonly ref: PackageRef;

  constructor(
    readonly graph: Graph,
    private readonly session: CoreMLSession,
    source: PackageSource,
    private readonly units: ComputeUnits,
  ) {
    this.ref = { path: source.path, functionName: source.pkg.functionName, functions: source.pkg.functions };
  }

  async run(inputs: Record<string, RtTensor>, opts: { keep?: string[] } = {}): Promise<Map<string, RtTensor>> {
    const inner = (opts.keep ?? []).filter((k) => !this.graph.outputs.includes(k));
    if (inner.length > 0)
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `Core ML returns a package's outputs only, not its internal values (${inner.join(', ')}): leave out --runtime coreml to read them`,
      );
    const model = await this.session.model(this.ref, this.units);
    const wire: Record<string, WireArray> = {};
    for (const v of this.graph.inputs) {
      const t = inputs[v.name];
      if (!t) throw new ModernBertError('INTERNAL', `no value for the package's input "${v.name}"`);
      wire[v.name] = encodeArray(t, wireDType(v.type.dtype));
    }
    const { outputs } = await this.session.predict(model.handle, wire);
    const out = new Map<string, RtTensor>();
    for (const name of this.graph.outputs) {
      const a = outputs.get(name);
      if (!a)
        throw protocolError(
          `predict returned no output "${name}" (it returned ${[...outputs.keys()].join(', ') || 'none'})`,
        );
      const declared = this.graph.ops.flatMap((o) => o.outputs).find((o) => o.name === name)?.type.dtype ?? 'fp32';
      out.set(name, { dtype: a.dtype === 'int32' ? 'int32' : declared, shape: a.shape, data: a.data });
    }
    return out;
  }
}

/**
 * The executor factory of --runtime coreml: packages run in Core ML with `units`. A graph that is no package's
 * (a checkpoint's) runs on our interpreter when `checkpointsOnEngine` (diff's float32 side), else is an error.
 */
export function coremlExecutorFactory(
  session: CoreMLSession,
  units: ComputeUnits,
  fallback?: ExecutorFactory,
): ExecutorFactory {
  return (graph, precision, source) => {
    if (source) return new CoreMLExecutor(graph, session, source, units);
    if (fallback) return fallback(graph, precision);
    throw new ModernBertError(
      'BAD_ARGUMENT',
      '--runtime coreml runs Core ML packages, and this model is a checkpoint: convert it first (modernbert-ane convert MODEL --out X.mlpackage)',
    );
  };
}
