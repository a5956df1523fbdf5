// Timing a package on Core ML: for each choice of compute units and each length (or shape-bucket function),
// the first load and a cached load, then the latency of N predictions (Core ML's own time, measured in the
// helper), with tokens/s and the matrix-product rate from the graph's FLOPs (ane/cost.ts).

import { readMLPackage } from '../coreml/mil-read.js';
import { ModernBertError } from '../errors.js';
import { resolveInputs } from '../eval/inputs.js';
import { matrixFlops } from '../ane/cost.js';
import { openModel } from '../run/load.js';
import { BucketRunner, type PackageRunner } from '../run/package-runner.js';
import { coremlExecutorFactory } from '../run/coreml/executor.js';
import type { ComputeUnits, CoreMLSession, PackageRef } from '../run/coreml/session.js';

export interface BenchOptions {
  units: readonly ComputeUnits[];
  /** Timed predictions per length. */
  runs: number;
  /** Untimed predictions first. */
  warmup: number;
  /** Lengths to time (default: every length the package takes). */
  lengths?: number[];
  seed?: number;
  /** Called after each prediction: (done, total) over the whole bench. */
  onProgress?: (done: number, total: number) => void;
}

/** One length with one choice of compute units. */
export interface BenchRow {
  length: number;
  function: string;
  /** Matrix-product FLOPs of one prediction at this length. */
  flops: number;
  first_load_ms: number;
  cached_load_ms: number;
  runs: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  mean_ms: number;
  tokens_per_s: number;
  tflops: number;
}

export interface BenchReport {
  package: string;
  os: string;
  /** MLModel.compileModel's time: measured now, or recorded when the cache entry was made (null: not recorded). */
  compile_ms: number | null;
  compiled_now: boolean;
  results: { compute_units: ComputeUnits; rows: BenchRow[] }[];
}

/** The value below which a share `q` of the sorted samples lie (nearest rank). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Times a package on Core ML (see the file comment). */
export async function benchPackage(session: CoreMLSession, path: string, o: BenchOptions): Promise<BenchReport> {
  const hello = await session.hello();
  const compiled = await session.compile(path);
  let done = 0;
  const results: BenchReport['results'] = [];
  for (const units of o.units) {
    const model = await openModel(path, { executor: coremlExecutorFactory(session, units) });
    try {
      const runner = model.runner as PackageRunner | BucketRunner;
      const takes = runner.info.seqLens;
      const lengths = o.lengths ?? takes;
      for (const L of lengths) {
        if (L > model.maxLen)
          throw new ModernBertError('BAD_ARGUMENT', `--lengths ${L}: ${path} takes at most ${model.maxLen} tokens`);
        if (L < 3)
          throw new ModernBertError(
            'BAD_ARGUMENT',
            `--lengths ${L}: a sequence holds at least [CLS], one token and [SEP]`,
          );
      }
      const total = o.units.length * lengths.length * (o.runs + o.warmup);
      const rows: BenchRow[] = [];
      for (const L of lengths) {
        // The function and graph that run L tokens: a bucket's own, or the package's with S bound to the padded length.
        const fn = runner instanceof BucketRunner ? runner.bucketFor(L) : model.pkg!.functionName;
        const pkg = fn === model.pkg!.functionName ? model.pkg! : readMLPackage(path, fn);
        const S = runner instanceof BucketRunner ? L : takes.find((s) => s >= L)!;
        const ref: PackageRef = { path, functionName: fn, functions: pkg.functions };
        const first = await session.load(ref, units);
        await session.unload(first.handle);
        const cached = await session.load(ref, units);
        session.adopt(ref, units, cached);
        const seq = resolveInputs({ random: L - 2, seed: o.seed ?? 0 }, { ...model.ids, maxLen: L })[0]!;
        const times: number[] = [];
        for (let i = 0; i < o.warmup + o.runs; i++) {
          await runner.forward(seq);
          if (i >= o.warmup) times.push(session.lastPredictMs);
          o.onProgress?.(++done, total);
        }
        const sorted = [...times].sort((a, b) => a - b);
        const mean = times.reduce((a, b) => a + b, 0) / times.length;
        const p50 = percentile(sorted, 0.5);
        const flops = matrixFlops(pkg.graph, { S });
        rows.push({
          length: L,
          function: fn,
          flops,
          first_load_ms: first.loadMs,
          cached_load_ms: cached.loadMs,
          runs: times.length,
          p50_ms: p50,
          p90_ms: percentile(sorted, 0.9),
          p99_ms: percentile(sorted, 0.99),
          mean_ms: mean,
          tokens_per_s: L / (p50 / 1000),
          tflops: flops / (p50 / 1000) / 1e12,
        });
      }
      results.push({ compute_units: units, rows });
    } finally {
      model.close();
    }
  }
  return { package: path, os: hello.os, compile_ms: compiled.compileMs, compiled_now: compiled.compiledNow, results };
}
