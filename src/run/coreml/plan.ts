// Where Core ML would run a package's ops (MLComputePlan, macOS 14.4+), joined to our reading of the same
// program so that each op carries our index, type and output shapes: the form that `inspect --ane`'s
// prediction can be compared with op by op ({index, name, op, outputs, device}). Core ML's plan lists the
// program's const ops too; our graph holds those as constants, so they are counted apart.

import type { Graph } from '../../ir/graph.js';
import type { PlanReply } from './protocol.js';

/** The devices MLComputePlan names. */
export const DEVICES = ['ane', 'gpu', 'cpu'] as const;
export type Device = (typeof DEVICES)[number];

/** One op of the plan (index, name, op and device as in `inspect --ane --json`'s ops). */
export interface PlacedOp {
  /** The op's index in our graph (the order `inspect` lists ops in); null when our graph has no op with its outputs. */
  index: number | null;
  /** Our graph's name for the op (null with index). */
  name: string | null;
  /** The MIL op type (Core ML's operatorName). */
  op: string;
  /** Its index in Core ML's plan. */
  plan_index: number;
  outputs: { name: string; dtype?: string; shape?: (number | string)[] }[];
  /** The device Core ML prefers for it (null: the plan gives it none). */
  device: Device | null;
  supported: string[];
  /** Core ML's estimated share of the model's work (null: none given). */
  cost: number | null;
}

export interface PlanReport {
  package: string;
  function: string;
  compute_units: string;
  os: string;
  /** Ops (the program's const ops aside) by preferred device; `none` when the plan gives no device. */
  ops: Record<Device | 'none', number> & { total: number; const_ops: number };
  /** Shares of the ops above, per device. */
  op_share: Record<Device, number>;
  /** Shares of the estimated cost, per device (null when the plan gives no cost). */
  cost_share: Record<Device, number> | null;
  /** Every op that would not run on the Neural Engine. */
  off_ane: PlacedOp[];
  per_op: PlacedOp[];
}

/** The plan of one function, joined to its graph and summed per device. */
export function summarizePlan(
  reply: PlanReply,
  graph: Graph,
  meta: { package: string; compute_units: string; os: string },
): PlanReport {
  const byOutput = new Map<string, number>();
  graph.ops.forEach((op, i) => op.outputs.forEach((o) => byOutput.set(o.name, i)));
  const types = new Map(graph.ops.flatMap((op) => op.outputs.map((o) => [o.name, o.type] as const)));
  let constOps = 0;
  const perOp: PlacedOp[] = [];
  for (const op of reply.ops) {
    if (op.type === 'const') {
      constOps++;
      continue;
    }
    const index = op.outputs.map((n) => byOutput.get(n)).find((i) => i !== undefined) ?? null;
    const device = (DEVICES as readonly string[]).includes(op.preferred ?? '') ? (op.preferred as Device) : null;
    perOp.push({
      index,
      name: index === null ? null : graph.ops[index]!.name,
      op: op.type,
      plan_index: op.index,
      outputs: op.outputs.map((name) => {
        const t = types.get(name);
        return t ? { name, dtype: t.dtype, shape: t.shape } : { name };
      }),
      device,
      supported: op.supported ?? [],
      cost: op.cost ?? null,
    });
  }
  const count = (d: Device | null) => perOp.filter((o) => o.device === d).length;
  const total = perOp.length;
  const share = (n: number, of: number) => (of > 0 ? n / of : 0);
  const costed = perOp.filter((o) => o.cost !== null);
  const costTotal = costed.reduce((a, o) => a + o.cost!, 0);
  const costOf = (d: Device) => costed.filter((o) => o.device === d).reduce((a, o) => a + o.cost!, 0);
  return {
    package: meta.package,
    function: reply.function,
    compute_units: meta.compute_units,
    os: meta.os,
    ops: { total, ane: count('ane'), gpu: count('gpu'), cpu: count('cpu'), none: count(null), const_ops: constOps },
    op_share: { ane: share(count('ane'), total), gpu: share(count('gpu'), total), cpu: share(count('cpu'), total) },
    cost_share:
      costTotal > 0
        ? { ane: costOf('ane') / costTotal, gpu: costOf('gpu') / costTotal, cpu: costOf('cpu') / costTotal }
        : null,
    off_ane: perOp.filter((o) => o.device !== 'ane'),
    per_op: perOp,
  };
}
