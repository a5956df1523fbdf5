// The arithmetic of a graph's matrix products: 2 x (output elements) x (reduction length) for every conv,
// linear, matmul and einsum, the ops that hold nearly all of a transformer's work. Elementwise ops, norms and
// softmax are left out (a few percent at most), so a rate computed from this is the matrix-product rate.

import { ModernBertError } from '../errors.js';
import { isLiteral, numel, type Dim, type Graph, type Op } from '../ir/graph.js';

/** FLOPs of one forward pass of `graph`, its symbolic dimensions bound by `dims` (for example {S: 128}). */
export function matrixFlops(graph: Graph, dims: Record<string, number> = {}): number {
  const shapes = new Map<string, number[]>();
  const bind = (shape: readonly Dim[], where: string): number[] =>
    shape.map((d) => {
      if (typeof d === 'number') return d;
      const v = dims[d];
      if (v === undefined) throw new ModernBertError('BAD_ARGUMENT', `${where} has the symbolic dimension ${d}; give its size`, { dim: d });
      return v;
    });
  for (const v of graph.inputs) shapes.set(v.name, bind(v.type.shape, `input ${v.name}`));
  for (const [n, c] of graph.consts) shapes.set(n, bind(c.type.shape, `constant ${n}`));
  let flops = 0;
  for (const op of graph.ops) {
    for (const o of op.outputs) shapes.set(o.name, bind(o.type.shape, `op ${op.name}`));
    flops += opFlops(op, shapes);
  }
  return flops;
}

function opFlops(op: Op, shapes: Map<string, number[]>): number {
  const shape = (input: string): number[] => {
    const a = op.inputs[input];
    const s = typeof a === 'string' ? shapes.get(a) : isLiteral(a) ? a.shape : undefined;
    if (!s) throw new ModernBertError('INTERNAL', `op ${op.name}: no shape for input "${input}"`);
    return s;
  };
  const out = op.outputs[0] ? shapes.get(op.outputs[0].name)! : [];
  switch (op.op) {
    case 'conv': {
      // weight (Cout, Cin / groups, kernel...): each output element reduces over the rest.
      const w = shape('weight');
      return 2 * numel(out) * numel(w.slice(1));
    }
    case 'linear':
      return 2 * numel(out) * shape('weight')[1]!;
    case 'matmul': {
      const x = shape('x');
      const a = op.inputs.transpose_x;
      const tx = isLiteral(a) && a.value[0] === true;
      return 2 * numel(out) * (x.length === 1 ? x[0]! : tx ? x[x.length - 2]! : x[x.length - 1]!);
    }
    case 'einsum': {
      const eq = op.inputs.equation;
      const values = op.inputs.values;
      if (!isLiteral(eq) || typeof eq.value !== 'string' || !Array.isArray(values)) return 0;
      const [lhs, rhs] = eq.value.split('->') as [string, string];
      const size = new Map<string, number>();
      lhs.split(',').forEach((term, i) => [...term].forEach((ch, d) => size.set(ch, shapes.get(values[i]!)?.[d] ?? 1)));
      let k = 1;
      for (const [ch, n] of size) if (!rhs.includes(ch)) k *= n;
      return 2 * numel(out) * k;
    }
    default:
      return 0;
  }
}
