// `bench PKG`: a package's load times and latency on Core ML, per length and choice of compute units (macOS).

import { Option, type Command } from 'commander';
import { ModernBertError } from '../../errors.js';
import { benchPackage, type BenchReport } from '../../tasks/coreml-bench.js';
import { COMPUTE_UNITS, type ComputeUnits } from '../../run/coreml/session.js';
import { printJson, progress, type Io } from '../context.js';
import { requirePackagePath } from '../model-source.js';
import { coremlSession } from '../coreml.js';
import { intList, nonNegativeInt, positiveInt } from '../parse.js';

interface BenchOptions {
  computeUnits?: string;
  runs: number;
  warmup: number;
  lengths?: number[];
  seed: number;
  json?: boolean;
}

/** A comma-separated list of compute-unit choices. */
function unitsList(value: string): ComputeUnits[] {
  const units = value.split(',').map((u) => u.trim());
  const bad = units.find((u) => !(COMPUTE_UNITS as readonly string[]).includes(u));
  if (bad !== undefined)
    throw new ModernBertError('BAD_ARGUMENT', `--compute-units: "${bad}" is not one of ${COMPUTE_UNITS.join(', ')}`);
  return [...new Set(units)] as ComputeUnits[];
}

/** Registers the bench command. */
export function registerBench(program: Command, io: Io): void {
  program
    .command('bench')
    .description(
      'time a package on Core ML (macOS): compile and load times, latency p50/p90/p99, tokens/s and TFLOP/s per length, for each choice of compute units',
    )
    .argument('<package>', '.mlpackage')
    .addOption(
      new Option('--compute-units <list>', `comma-separated, of ${COMPUTE_UNITS.join(', ')} (default: all four)`),
    )
    .option('--runs <n>', 'timed predictions per length', positiveInt, 20)
    .option('--warmup <n>', 'untimed predictions first', nonNegativeInt, 3)
    .option('--lengths <list>', 'token counts to time (default: every length the package takes)', intList)
    .option('--seed <n>', 'seed of the random token ids', nonNegativeInt, 0)
    .option('--json', 'machine-readable output')
    .action(async (path: string, o: BenchOptions) => {
      const session = coremlSession('bench', io, Boolean(o.json));
      requirePackagePath(path, 'bench times a Core ML package');
      const units = o.computeUnits === undefined ? [...COMPUTE_UNITS] : unitsList(o.computeUnits);
      const bar = progress(io, 'bench', Boolean(o.json), 'predictions');
      try {
        const report = await benchPackage(session, path, {
          units,
          runs: o.runs,
          warmup: o.warmup,
          lengths: o.lengths,
          seed: o.seed,
          onProgress: (d, t) => bar.update(d, t),
        });
        bar.stop();
        if (o.json) return printJson(io, report);
        printBench(io, report);
      } finally {
        bar.stop();
      }
    });
}

function printBench(io: Io, r: BenchReport): void {
  const compile =
    r.compile_ms === null
      ? 'not recorded (the cache held it)'
      : `${(r.compile_ms / 1000).toFixed(2)} s${r.compiled_now ? '' : ' (when the cache entry was made)'}`;
  io.stdout(`${r.package} on ${r.os}\ncompile (MLModel.compileModel): ${compile}\n`);
  const lengths = [...new Set(r.results.flatMap((u) => u.rows.map((row) => row.length)))];
  for (const L of lengths) {
    const first = r.results[0]!.rows.find((row) => row.length === L)!;
    io.stdout(`\n${L} tokens (function ${first.function}, ${(first.flops / 1e9).toFixed(2)} GFLOP):\n`);
    io.stdout(
      `  ${'compute units'.padEnd(14)} ${'first load'.padStart(11)} ${'cached load'.padStart(11)} ${'p50'.padStart(9)} ${'p90'.padStart(9)} ${'p99'.padStart(9)} ${'tokens/s'.padStart(10)} ${'TFLOP/s'.padStart(8)}\n`,
    );
    for (const u of r.results) {
      const row = u.rows.find((x) => x.length === L)!;
      const ms = (v: number) => `${v.toFixed(2)} ms`.padStart(9);
      io.stdout(
        `  ${u.compute_units.padEnd(14)} ${`${row.first_load_ms.toFixed(0)} ms`.padStart(11)} ${`${row.cached_load_ms.toFixed(0)} ms`.padStart(11)} ${ms(row.p50_ms)} ${ms(row.p90_ms)} ${ms(row.p99_ms)} ${row.tokens_per_s.toFixed(0).padStart(10)} ${row.tflops.toFixed(3).padStart(8)}\n`,
      );
    }
  }
}
