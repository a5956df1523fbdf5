// Running a graph on onnxruntime-node: the graph lowered to ONNX (onnx/lower.ts, our own layout, float32 or
// a float16 emulation, onnx/emulate-fp16.ts), one session per set of values read back, fed and read as the
// interpreter's tensors. A drop-in for graph/interpreter.ts's Interpreter; onnxruntime-node is an optional
// dependency, loaded on first use.
//
// The session is made from the graph's protobuf in memory, without writing anything: weights that lie as
// they are in a file (a checkpoint's safetensors, a package's weight.bin: Const.stored) are external data
// pointing at their bytes there, which onnxruntime maps; other weights go as in-memory external data, which
// it copies. Products read their weight matrices in the stored (out, in) layout through onnxruntime's
// FusedMatMul (transB), so no transposed copy is made, and pre-packing is off: it copied every matrix
// (+0.6 GB on synth-base) and made setup slower for no measurable gain per run (docs/PERFORMANCE.md,
// "Command-level benchmark").

// Types from onnxruntime-common (the API that onnxruntime-node implements; a dependency, since our published
// declarations name its types), so that neither the build nor a user's type check needs onnxruntime-node,
// which npm drops when its install script fails.
import type * as OrtModule from 'onnxruntime-common';
import type { DType, Graph } from '../ir/graph.js';
import { ModernBertError } from '../errors.js';
import { foldConstexpr } from '../onnx/fold-constexpr.js';
import type { OnnxPrecision } from '../onnx/emulate-fp16.js';
import { lowerGraph } from '../onnx/lower.js';
import { sessionModel } from '../onnx/write.js';
import { kernelThreads } from '../runtime/kernels/gemm.js';
import type { RtTensor } from '../runtime/tensor.js';
import type { GraphUse } from './runner.js';

/** The onnxruntime-node module (its CommonJS exports: onnxruntime-common's API). */
export type Ort = typeof OrtModule;

/** A variable, so that TypeScript does not resolve the optional package at build time. */
const ORT_PACKAGE = 'onnxruntime-node';
export type OrtProvider = 'cpu' | 'coreml';

/**
 * The Core ML execution provider's flags (onnxruntime's coreml_provider_factory.h): COREML_FLAG_CREATE_MLPROGRAM
 * (0x010, an ML Program, as our converter writes) | COREML_FLAG_ONLY_ENABLE_DEVICE_WITH_ANE (0x004, only on a
 * Mac with a Neural Engine). The Node binding takes only these flags: Core ML itself then places each op on the
 * CPU, GPU or Neural Engine.
 */
export const COREML_FLAGS = 0x010 | 0x004;

let loaded: Promise<Ort | undefined> | undefined;

/** onnxruntime-node, or undefined when it is not installed (or MODERNBERT_ANE_NO_ORT=1 hides it). */
export function loadOrt(): Promise<Ort | undefined> {
  if (process.env.MODERNBERT_ANE_NO_ORT === '1') return Promise.resolve(undefined);
  // A CommonJS package: its exports are the module's default.
  loaded ??= import(ORT_PACKAGE).then(
    (m: { default: Ort }): Ort | undefined => m.default,
    () => undefined,
  );
  return loaded;
}

/** The installed onnxruntime-node's version ("1.30.0"), for messages. */
export function ortVersion(ort: Ort): string {
  return ort.env.versions?.node ?? ort.env.versions?.common ?? 'unknown';
}

const ORT_TYPE: Partial<Record<DType, OrtModule.Tensor.Type>> = {
  fp32: 'float32',
  int32: 'int32',
  bool: 'bool',
  uint8: 'uint8',
  int8: 'int8',
  int16: 'int16',
};
const FROM_ORT: Partial<Record<string, DType>> = {
  float32: 'fp32',
  int32: 'int32',
  bool: 'bool',
  uint8: 'uint8',
  int8: 'int8',
  int16: 'int16',
};

/** Runs a graph on onnxruntime at float32 (the interpreter's `run`, without per-op progress). */
export class OrtExecutor {
  private readonly sessions = new Map<string, Promise<OrtModule.InferenceSession>>();

  constructor(
    readonly graph: Graph,
    private readonly ort: Ort,
    private readonly provider: OrtProvider = 'cpu',
    private readonly precision: OnnxPrecision = 'fp32',
    private readonly use: GraphUse = {},
  ) {}

  /** Runs the graph; returns the outputs and the values named in `keep`. */
  async run(inputs: Record<string, RtTensor>, opts: { keep?: string[] } = {}): Promise<Map<string, RtTensor>> {
    const keep = [...new Set(opts.keep ?? [])].filter((k) => !this.graph.outputs.includes(k));
    const session = await this.session(keep);
    const feeds: Record<string, OrtModule.Tensor> = {};
    for (const inp of this.graph.inputs) {
      const t = inputs[inp.name];
      if (!t) throw new ModernBertError('BAD_INPUT', `missing graph input "${inp.name}"`, { input: inp.name });
      const dtype = inp.type.dtype === 'fp16' ? 'fp32' : inp.type.dtype; // lowered with float32 compute
      const type = ORT_TYPE[dtype] ?? unsupported(dtype);
      const data = dtype === 'fp32' ? Float32Array.from(t.data) : dtype === 'int32' ? Int32Array.from(t.data) : t.data;
      feeds[inp.name] = new this.ort.Tensor(type, data as Float32Array, t.shape);
    }
    const res = await session.run(feeds);
    const out = new Map<string, RtTensor>();
    for (const name of [...this.graph.outputs, ...keep]) {
      const r = res[name]!;
      const dtype = FROM_ORT[r.type] ?? unsupported(r.type);
      out.set(name, { dtype, shape: [...r.dims], data: r.data as RtTensor['data'] });
    }
    return out;
  }

  /** Ends every session of this graph. */
  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) {
      const session = await s;
      if (profilePrefix()) session.endProfiling(); // writes the profile (MODERNBERT_ANE_ORT_PROFILE)
      await session.release();
    }
  }

  private session(keep: string[]): Promise<OrtModule.InferenceSession> {
    const key = keep.join('\n');
    let s = this.sessions.get(key);
    if (!s) {
      const graph: Graph = { ...this.graph, outputs: [...this.graph.outputs, ...keep] };
      // A compressed package's constexpr ops are expanded first, as Core ML does when it loads the model.
      s = foldConstexpr(graph).then(async (g) => {
        const m = sessionModel(
          lowerGraph(g, {
            io: 'ane',
            float32: true,
            inPlace: true,
            storedLayout: this.provider === 'cpu',
            channelsFirst: this.provider === 'cpu' && runsFew(this.use),
            precision: this.precision,
          }),
          { name: 'modernbert-ane' },
          { fusedMatMul: this.provider === 'cpu' },
        );
        const opts = ortSessionOptions(this.provider, { fewRuns: runsFew(this.use) });
        const session = {
          ...(opts.extra as { session?: Record<string, string> } | undefined)?.session,
          ...(m.folder ? { model_external_initializers_file_folder_path: m.folder } : {}),
        };
        return await this.ort.InferenceSession.create(m.bytes, {
          ...opts,
          ...(m.buffers.length ? { externalData: m.buffers } : {}),
          extra: { session },
        });
      });
      this.sessions.set(key, s);
    }
    return s;
  }
}

/**
 * The options of every session we create. Intra-op threads are set to our own kernels' count
 * (MODERNBERT_ANE_THREADS, else every core): left at 0, onnxruntime-node 1.30 ran one thread on this
 * 2-core machine (CPU seconds equal to wall seconds; synth-base at 512 tokens 1.77 s, 1.17 s with 2).
 * Pre-packing of weights is off (see the top of this file); MODERNBERT_ANE_ORT_PREPACK=1 turns it on, to measure the difference.
 * MODERNBERT_ANE_ORT_PROFILE=PREFIX has onnxruntime time every node, written to PREFIX_<date>.json when a
 * session is released (bench/ort-profile.mjs reads it). `fewRuns`: a session that runs once or twice (runsFew)
 * has its graph left as we lowered it (lowered with products in the graph's own layout, as no transpose
 * optimiser runs) and no memory arena (which holds the peak of every run until release).
 */
export function ortSessionOptions(
  provider: OrtProvider,
  { fewRuns = false }: { fewRuns?: boolean } = {},
): OrtModule.InferenceSession.SessionOptions {
  const executionProviders: OrtModule.InferenceSession.ExecutionProviderConfig[] =
    provider === 'coreml' ? [{ name: 'coreml', coreMlFlags: COREML_FLAGS }, 'cpu'] : ['cpu'];
  const prefix = profilePrefix();
  return {
    executionProviders,
    ...(prefix ? { enableProfiling: true, profileFilePrefix: prefix } : {}),
    graphOptimizationLevel: fewRuns ? 'disabled' : 'all',
    ...(fewRuns ? { enableCpuMemArena: false } : {}),
    intraOpNumThreads: kernelThreads(),
    extra: { session: { disable_prepacking: process.env.MODERNBERT_ANE_ORT_PREPACK === '1' ? '0' : '1' } },
  };
}

/**
 * Whether a graph runs too few times for onnxruntime's graph optimisation and memory arena to pay: its
 * constant folding turns every float16 weight's cast to float32 into a float32 copy at setup, 0.5-0.7 s on
 * synth-base against 0.15 s a run to cast them as they are read, and the arena keeps each run's peak until
 * release (docs/PERFORMANCE.md, "The report's passes side by side").
 */
function runsFew(use: GraphUse): boolean {
  return use.runs !== undefined && use.runs <= 2;
}

/** Where onnxruntime's node timings go (MODERNBERT_ANE_ORT_PROFILE), when asked for. */
function profilePrefix(): string | undefined {
  return process.env.MODERNBERT_ANE_ORT_PROFILE || undefined;
}

function unsupported(type: string): never {
  throw new ModernBertError('UNSUPPORTED', `onnxruntime runs of ${type} tensors are not supported here`);
}
