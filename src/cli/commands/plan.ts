// `plan PKG`: where Core ML would run each op of a package (MLComputePlan, macOS 14.4+).

import { Option, type Command } from 'commander';
import { readMLPackage } from '../../coreml/mil-read.js';
import { summarizePlan, type PlanReport } from '../../run/coreml/plan.js';
import { COMPUTE_UNITS, type ComputeUnits } from '../../run/coreml/session.js';
import { printJson, type Io } from '../context.js';
import { requirePackagePath } from '../model-source.js';
import { coremlSession } from '../coreml.js';

interface PlanOptions {
  computeUnits: ComputeUnits;
  function?: string;
  json?: boolean;
}

const NAMES = { ane: 'Neural Engine', gpu: 'GPU', cpu: 'CPU' } as const;

/** Registers the plan command. */
export function registerPlan(program: Command, io: Io): void {
  program
    .command('plan')
    .description(
      'where Core ML would run each op of a package (MLComputePlan; macOS 14.4+): shares of ops and estimated cost per device, and every op off the Neural Engine',
    )
    .argument('<package>', '.mlpackage')
    .addOption(
      new Option('--compute-units <units>', 'the compute units to plan for').choices([...COMPUTE_UNITS]).default('all'),
    )
    .option('--function <name>', 'the function of a multifunction package (default: its default function)')
    .option(
      '--json',
      'machine-readable output (per_op: {index, name, op, outputs, device, ...}, as inspect --ane --json)',
    )
    .action(async (path: string, o: PlanOptions) => {
      const session = coremlSession('plan', io, Boolean(o.json));
      requirePackagePath(path, 'plan reads a Core ML package');
      const pkg = readMLPackage(path, o.function);
      const reply = await session.plan(
        { path, functionName: pkg.functionName, functions: pkg.functions },
        o.computeUnits,
      );
      const report = summarizePlan(reply, pkg.graph, {
        package: path,
        compute_units: o.computeUnits,
        os: (await session.hello()).os,
      });
      if (o.json) return printJson(io, report);
      printPlan(io, report);
    });
}

function printPlan(io: Io, r: PlanReport): void {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  io.stdout(`${r.package}, function ${r.function}, compute units ${r.compute_units}, on ${r.os}\n`);
  const dev = (['ane', 'gpu', 'cpu'] as const).map((d) => `${NAMES[d]} ${r.ops[d]} (${pct(r.op_share[d])})`).join(', ');
  io.stdout(
    `ops: ${r.ops.total}: ${dev}${r.ops.none ? `, no device ${r.ops.none}` : ''} (${r.ops.const_ops} const ops aside)\n`,
  );
  if (r.cost_share)
    io.stdout(
      `estimated cost: ${(['ane', 'gpu', 'cpu'] as const).map((d) => `${NAMES[d]} ${pct(r.cost_share![d])}`).join(', ')}\n`,
    );
  if (r.off_ane.length === 0) return io.stdout('every op would run on the Neural Engine\n');
  io.stdout(`off the Neural Engine (${r.off_ane.length}):\n`);
  for (const op of r.off_ane) {
    const outs = op.outputs
      .map((x) => `${x.name}${x.shape ? ` [${x.shape.join(', ')}]` : ''}${x.dtype ? ` ${x.dtype}` : ''}`)
      .join(', ');
    const where = op.device ? NAMES[op.device] : 'no device';
    io.stdout(
      `  #${op.index ?? '-'} ${op.op} -> ${outs}: ${where}${op.supported.length ? ` (supported: ${op.supported.map((d) => NAMES[d as keyof typeof NAMES] ?? d).join(', ')})` : ''}${op.cost !== null ? `, cost ${pct(op.cost)}` : ''}\n`,
    );
  }
}
