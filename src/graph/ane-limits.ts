// The Neural Engine's tensor limits, checked statically over a graph. The ANE compiler rejects tensors
// outside "N[1-65536]D[1-16384]C[1-65536]H[1-16384]W[1-16384]" (its own error text, quoted in
// FluidInference/FluidAudio issue 121), and a rank above 5 does not compile. Rank 5 is (N, D, C, H, W), rank
// 4 (N, C, H, W), and lower ranks the last of C, H, W. Checked: every op output and every run-time input
// (activations), and conv weights (N = output channels). Other constants are parameters laid out by their
// op (a conv bias runs along C, gather's table, the embeddings, is read on the CPU), so they are not.

import type { Dim, Graph, TensorType } from '../ir/graph.js';

/** Axis names and their largest size, for a rank-5 tensor (N, D, C, H, W). */
export const ANE_AXES = [
  ['N', 65536],
  ['D', 16384],
  ['C', 65536],
  ['H', 16384],
  ['W', 16384],
] as const;
export const ANE_MAX_RANK = 5;

/** One tensor that breaks a limit. */
export interface AneIssue {
  op: string;
  type: string;
  /** Which of the op's tensors: 'output', or the input's name. */
  tensor: string;
  shape: number[];
  problem: string;
}

/** The problems of one shape (empty when it fits). */
export function aneShapeProblems(shape: readonly number[]): string[] {
  if (shape.length > ANE_MAX_RANK) return [`rank ${shape.length} > ${ANE_MAX_RANK}`];
  const [N, , C, H, W] = ANE_AXES;
  const roles = shape.length === 5 ? ANE_AXES : shape.length === 4 ? [N, C, H, W] : [C, H, W].slice(3 - shape.length);
  return shape.flatMap((d, k) => (d > roles[k]![1] ? [`${roles[k]![0]} = ${d} > ${roles[k]![1]}`] : []));
}

/**
 * Every op input and output of `g` that breaks a limit. Symbolic dims take `sizes[symbol]`, or `sizes` itself
 * when it is a number (the longest enumerated length); a symbol without a size counts as 1.
 */
export function lintAneLimits(g: Graph, sizes: Record<string, number> | number = {}): AneIssue[] {
  const types = new Map<string, TensorType>();
  for (const i of g.inputs) types.set(i.name, i.type);
  for (const [n, c] of g.consts) types.set(n, c.type);
  const issues: AneIssue[] = [];
  const check = (op: string, type: string, tensor: string, t: TensorType | undefined) => {
    if (!t) return;
    const shape = t.shape.map((d: Dim) =>
      typeof d === 'number' ? d : typeof sizes === 'number' ? sizes : (sizes[d] ?? 1),
    );
    for (const problem of aneShapeProblems(shape)) issues.push({ op, type, tensor, shape, problem });
  };
  for (const op of g.ops) {
    for (const [name, arg] of Object.entries(op.inputs)) {
      for (const v of typeof arg === 'string' ? [arg] : Array.isArray(arg) ? arg : []) {
        if (!g.consts.has(v) || (op.op === 'conv' && name === 'weight')) check(op.name, op.op, name, types.get(v));
      }
    }
    for (const o of op.outputs) {
      types.set(o.name, o.type);
      check(op.name, op.op, 'output', o.type);
    }
  }
  return issues;
}

/** One line per issue: `op "name" (type) input x [shape]: problem`. */
export function formatAneIssue(i: AneIssue): string {
  return `${i.type} "${i.op}" ${i.tensor === 'output' ? 'output' : `input ${i.tensor}`} [${i.shape.join(', ')}]: ${i.problem}`;
}
