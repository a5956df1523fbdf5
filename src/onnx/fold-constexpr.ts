// Compressed packages (convert --compress) hold their weights as constexpr ops (palettes, int8 and int4 with
// scales) that Core ML expands when it loads the model. ONNX has no such ops, so before lowering we expand
// them the same way, with the registry's own kernels (which follow coremltools' decompression exactly),
// into plain constants: onnxruntime then runs the weights that the package ships.

import type { Const, Graph } from '../ir/graph.js';
import { Interpreter } from '../graph/interpreter.js';
import { isConstexpr } from '../ops/index.js';

/** The graph with every constexpr op replaced by the constant it computes (the same graph when there are none). */
export async function foldConstexpr(graph: Graph): Promise<Graph> {
  const ops = graph.ops.filter((op) => isConstexpr(op.op));
  if (ops.length === 0) return graph;
  const outputs = ops.flatMap((op) => op.outputs);
  const values = await new Interpreter(
    { inputs: [], consts: graph.consts, ops, outputs: outputs.map((v) => v.name), taps: new Map() },
    'fp32',
  ).run({});
  // The compressed parts (indices, tables, scales) are dropped with their ops: ONNX has no sub-byte types.
  const rest = graph.ops.filter((op) => !isConstexpr(op.op));
  const used = new Set([
    ...rest.flatMap((op) =>
      Object.values(op.inputs).flatMap((a) => (typeof a === 'string' ? [a] : Array.isArray(a) ? a : [])),
    ),
    ...graph.outputs,
  ]);
  const consts = new Map([...graph.consts].filter(([name]) => used.has(name)));
  for (const v of outputs) {
    const data = values.get(v.name)!.data;
    const c: Const = { name: v.name, type: v.type, load: () => data };
    consts.set(v.name, c);
  }
  return { ...graph, consts, ops: rest };
}
