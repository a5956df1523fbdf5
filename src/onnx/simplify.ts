// Peephole clean-up of lowered ONNX nodes: op-by-op lowering leaves pairs that one node does (a transpose
// of a transpose, a reshape of a reshape) and transposes that move nothing. onnxruntime's optimiser folds
// them at load time, but the file stays smaller and readable for every runtime that reads it (onnxruntime-web,
// tools). Only values read by exactly the one next node are folded; graph outputs keep their names. A Gather
// of a Cast gathers first: a float16 embedding table read by a float32 graph is cast row by row, not whole
// (synth-base: 155 MB and 36 ms a pass for the 512 rows it reads, where no optimiser folds the cast).

import type { OnnxNodeProto } from './schema.js';

const permOf = (n: OnnxNodeProto): number[] | undefined =>
  n.attribute?.find((a) => a.name === 'perm')?.ints?.map(Number);

/** The nodes with Transpose pairs composed, Reshape pairs merged, identity Transposes dropped, Gathers before Casts. */
export function simplifyNodes(nodes: readonly OnnxNodeProto[], graphOutputs: ReadonlySet<string>): OnnxNodeProto[] {
  const out = nodes.map((n) => ({ ...n, input: [...n.input] }));
  const producer = new Map<string, OnnxNodeProto>();
  const readers = new Map<string, number>();
  for (const n of out) {
    for (const o of n.output) producer.set(o, n);
    for (const i of n.input) readers.set(i, (readers.get(i) ?? 0) + 1);
  }
  const dropped = new Set<OnnxNodeProto>();
  const after = new Map<OnnxNodeProto, OnnxNodeProto[]>(); // nodes that follow a node once it changed
  const renamed = new Map<string, string>();
  // The inner node of a pair, when its one output is read by `n` alone.
  const soleInner = (n: OnnxNodeProto, opType: string): OnnxNodeProto | undefined => {
    const p = producer.get(n.input[0]!);
    return p &&
      p.op_type === opType &&
      !dropped.has(p) &&
      p.output.length === 1 &&
      readers.get(p.output[0]!) === 1 &&
      !graphOutputs.has(p.output[0]!)
      ? p
      : undefined;
  };
  for (const n of out) {
    n.input = n.input.map((i) => renamed.get(i) ?? i);
    if (n.op_type === 'Transpose') {
      let perm = permOf(n);
      const inner = soleInner(n, 'Transpose');
      const innerPerm = inner && permOf(inner);
      if (perm && inner && innerPerm && innerPerm.length === perm.length) {
        // out[k] = in[inner[perm[k]]]
        perm = perm.map((p) => innerPerm[p]!);
        n.input[0] = inner.input[0]!;
        n.attribute = [{ name: 'perm', type: 7, ints: perm }];
        dropped.add(inner);
      }
      if (perm && perm.every((p, k) => p === k) && !graphOutputs.has(n.output[0]!)) {
        renamed.set(n.output[0]!, n.input[0]!);
        readers.set(n.input[0]!, (readers.get(n.input[0]!) ?? 0) - 1 + (readers.get(n.output[0]!) ?? 0));
        dropped.add(n);
      }
    } else if (n.op_type === 'Gather') {
      // Gather(Cast(x)) = Cast(Gather(x)): the rows picked, then cast (a chain of casts, each in turn).
      const casts: OnnxNodeProto[] = [];
      for (let c = soleInner(n, 'Cast'); c; c = soleInner(n, 'Cast')) {
        dropped.add(c);
        casts.unshift({ ...c, input: [`${c.output[0]!}__gathered`] });
        n.input[0] = c.input[0]!;
      }
      if (casts.length) {
        // The gather now yields the first cast's input; each cast reads the one before; the last, n's output.
        const last = n.output[0]!;
        n.output = [casts[0]!.input[0]!];
        casts.forEach((c, k) => (c.output = [casts[k + 1]?.input[0] ?? last]));
        after.set(n, casts);
      }
    } else if (n.op_type === 'Reshape') {
      // A reshape's result depends only on its input's elements and the last shape (MIL shapes hold no 0).
      const inner = soleInner(n, 'Reshape');
      if (inner) {
        n.input[0] = inner.input[0]!;
        dropped.add(inner);
      }
    }
  }
  return out.filter((n) => !dropped.has(n)).flatMap((n) => [n, ...(after.get(n) ?? [])]);
}
