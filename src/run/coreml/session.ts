// A session with the Core ML helper: it starts the helper on first use, compiles each package once (into the
// cache, keyed by its content), loads each function once per choice of compute units, and runs predictions
// and compute plans. Sessions still open when the CLI finishes are closed by closeCoreMLSessions().

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ModernBertError } from '../../errors.js';
import { HelperProcess } from './client.js';
import { cacheDir, compiledPaths, packageHash } from './cache.js';
import { helperCommand, processHelperEnv, type HelperEnv } from './build.js';
import {
  decodeArray,
  PROTOCOL_VERSION,
  protocolError,
  type CompileReply,
  type Hello,
  type LoadReply,
  type PlanReply,
  type PredictReply,
  type WireArray,
} from './protocol.js';

/** The compute units a model may use (MLComputeUnits), by the CLI's names. */
export const COMPUTE_UNITS = ['all', 'cpu-and-ne', 'cpu-only', 'cpu-and-gpu'] as const;
export type ComputeUnits = (typeof COMPUTE_UNITS)[number];

/** The protocol's names for them (helper.swift computeUnits()). */
const WIRE_UNITS: Record<ComputeUnits, string> = {
  all: 'all',
  'cpu-and-ne': 'cpuAndNeuralEngine',
  'cpu-only': 'cpuOnly',
  'cpu-and-gpu': 'cpuAndGPU',
};

/** Time limits per request, in milliseconds. */
export interface Timeouts {
  hello: number;
  compile: number;
  load: number;
  predict: number;
  plan: number;
  unload: number;
}

// A first Neural Engine compile has been seen to take from 23 s to 9 minutes (docs/COREML.md): loads and
// compiles get half an hour.
export const DEFAULT_TIMEOUTS: Timeouts = {
  hello: 60_000,
  compile: 1_800_000,
  load: 1_800_000,
  predict: 600_000,
  plan: 1_800_000,
  unload: 60_000,
};

/** Caps every time limit, in seconds (for testing, or to give up sooner). */
export const TIMEOUT_ENV = 'MODERNBERT_ANE_COREML_TIMEOUT_S';

/** Which function of which package. */
export interface PackageRef {
  path: string;
  functionName: string;
  /** Every function of the package (one, "main", for most). */
  functions: readonly string[];
}

/** A package's compiled form in the cache. */
export interface Compiled {
  compiled: string;
  hash: string;
  /** Whether this session compiled it (else the cache held it). */
  compiledNow: boolean;
  /** How long MLModel.compileModel took: now, or when the cache entry was made (null when that was not recorded). */
  compileMs: number | null;
}

/** A model loaded in the helper. */
export interface LoadedCoreML {
  handle: number;
  loadMs: number;
}

/** A prediction's outputs and the time Core ML took for it (measured in the helper). */
export interface Prediction {
  outputs: Map<string, ReturnType<typeof decodeArray>>;
  predictMs: number;
}

const open = new Set<CoreMLSession>();

/** A connection to one helper process. */
export class CoreMLSession {
  private helper?: Promise<{ proc: HelperProcess; hello: Hello }>;
  private readonly compiledByPath = new Map<string, Promise<Compiled>>();
  private readonly models = new Map<string, Promise<LoadedCoreML>>();
  private readonly timeouts: Timeouts;
  /** The time of the latest prediction, in milliseconds (Core ML's own, without the pipe). */
  lastPredictMs = Number.NaN;

  constructor(
    private readonly env: HelperEnv = processHelperEnv(),
    timeouts: Partial<Timeouts> = {},
  ) {
    const cap = Number(env.env[TIMEOUT_ENV]);
    const all = { ...DEFAULT_TIMEOUTS, ...timeouts };
    if (env.env[TIMEOUT_ENV] !== undefined && !(cap > 0))
      throw new ModernBertError('BAD_ARGUMENT', `${TIMEOUT_ENV} must be a positive number of seconds`);
    for (const k of Object.keys(all) as (keyof Timeouts)[]) if (cap > 0) all[k] = Math.min(all[k], cap * 1000);
    this.timeouts = all;
    open.add(this);
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return !open.has(this);
  }

  /** The helper's hello: protocol and OS (starts the helper). */
  async hello(): Promise<Hello> {
    return (await this.start()).hello;
  }

  /** The package compiled into the cache (once per package and session). */
  compile(path: string): Promise<Compiled> {
    const key = resolve(path);
    let c = this.compiledByPath.get(key);
    if (!c) {
      c = this.compileNow(key);
      this.compiledByPath.set(key, c);
    }
    return c;
  }

  /** Loads a function with the given compute units (a new model each call). */
  async load(ref: PackageRef, units: ComputeUnits): Promise<LoadedCoreML> {
    const { compiled } = await this.compile(ref.path);
    // Core ML refuses a function name for a package of one function; the default function needs none.
    const fn = ref.functions.length > 1 ? { function: ref.functionName } : {};
    const r = (await this.request('load', {
      compiled,
      ...fn,
      compute_units: WIRE_UNITS[units],
    })) as unknown as LoadReply;
    return { handle: r.model, loadMs: r.load_ms };
  }

  /** The model of a function and compute units, loaded on first use and kept. */
  model(ref: PackageRef, units: ComputeUnits): Promise<LoadedCoreML> {
    const key = modelKey(ref, units);
    let m = this.models.get(key);
    if (!m) {
      m = this.load(ref, units);
      this.models.set(key, m);
      m.catch(() => this.models.delete(key));
    }
    return m;
  }

  /** Makes `loaded` the model that model() returns for `ref` and `units` (bench loads twice and keeps the second). */
  adopt(ref: PackageRef, units: ComputeUnits, loaded: LoadedCoreML): void {
    this.models.set(modelKey(ref, units), Promise.resolve(loaded));
  }

  /** Drops a loaded model. */
  async unload(handle: number): Promise<void> {
    await this.request('unload', { model: handle });
    for (const [k, m] of this.models) if ((await m.catch(() => undefined))?.handle === handle) this.models.delete(k);
  }

  /** One prediction on a loaded model. */
  async predict(handle: number, inputs: Record<string, WireArray>): Promise<Prediction> {
    const r = (await this.request('predict', { model: handle, inputs })) as unknown as PredictReply;
    const outputs = new Map(
      Object.entries(r.outputs).map(([name, w]) => [name, decodeArray(w, `output "${name}"`)] as const),
    );
    this.lastPredictMs = r.predict_ms;
    return { outputs, predictMs: r.predict_ms };
  }

  /** MLComputePlan of a function (macOS 14.4+). */
  async plan(ref: PackageRef, units: ComputeUnits): Promise<PlanReply> {
    const { compiled } = await this.compile(ref.path);
    const hello = await this.hello();
    const [major, minor] = hello.os_version;
    if (major < 14 || (major === 14 && minor < 4)) {
      throw new ModernBertError(
        'UNSUPPORTED',
        `plan needs macOS 14.4 or later (MLComputePlan); this is macOS ${hello.os_version.join('.')}`,
      );
    }
    return (await this.request('plan', {
      compiled,
      function: ref.functionName,
      compute_units: WIRE_UNITS[units],
    })) as unknown as PlanReply;
  }

  /** Stops the helper. */
  async close(): Promise<void> {
    open.delete(this);
    const h = this.helper;
    this.helper = undefined;
    if (h) await (await h.catch(() => undefined))?.proc.close();
  }

  private start(): Promise<{ proc: HelperProcess; hello: Hello }> {
    this.helper ??= (async () => {
      const proc = new HelperProcess(await helperCommand(this.env));
      const hello = (await proc.request('hello', {}, this.timeouts.hello)) as unknown as Hello;
      if (hello.protocol !== PROTOCOL_VERSION) {
        await proc.close();
        throw protocolError(`it speaks protocol ${hello.protocol}, this CLI ${PROTOCOL_VERSION}`);
      }
      return { proc, hello };
    })();
    return this.helper;
  }

  private async request(op: keyof Timeouts, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const { proc } = await this.start();
    return proc.request(op, body, this.timeouts[op]);
  }

  private async compileNow(path: string): Promise<Compiled> {
    if (!existsSync(path)) throw new ModernBertError('FILE_NOT_FOUND', `package ${path} does not exist`, { path });
    const hash = packageHash(path);
    const { compiled, record } = compiledPaths(cacheDir(this.env.env, this.env.platform), hash);
    const r = (await this.request('compile', { package: path, compiled })) as unknown as CompileReply;
    if (r.compiled_now) {
      // The cache entry remembers how long it took, for a later bench that finds it there.
      mkdirSync(dirname(record), { recursive: true });
      writeFileSync(
        record,
        `${JSON.stringify({ compile_ms: r.compile_ms, package: path, compiled_at: new Date().toISOString() })}\n`,
      );
      return { compiled, hash, compiledNow: true, compileMs: r.compile_ms! };
    }
    return { compiled, hash, compiledNow: false, compileMs: recordedCompileMs(record) };
  }
}

function modelKey(ref: PackageRef, units: ComputeUnits): string {
  return JSON.stringify([resolve(ref.path), ref.functionName, units]);
}

/** The compile time a cache record holds, or null (no record, or not one of ours). */
function recordedCompileMs(record: string): number | null {
  try {
    const ms = (JSON.parse(readFileSync(record, 'utf8')) as { compile_ms?: unknown }).compile_ms;
    return typeof ms === 'number' && Number.isFinite(ms) ? ms : null;
  } catch {
    return null;
  }
}

/** Closes every session still open (the CLI calls this when a command ends). */
export async function closeCoreMLSessions(): Promise<void> {
  await Promise.all([...open].map((s) => s.close()));
}
