// Kernel-level fusion of attention in the interpreter: the four ops of a global layer's query chunk,
//   scores = einsum(k, q)   "abcd,adce->abce"   (1, S_k, 1, W)
//   masked = add(scores, mask)
//   probs  = softmax(masked, axis 1)
//   out    = einsum(v, probs) "abcd,adce->abce"  (1, D_v, 1, W)
// run as one call of runtime/kernels/attention.ts in float32, which never writes the (S_k, W) scores out
// (src/model/model.ts, fullAttention). The graph keeps its four ops (the Core ML program is unchanged); the
// float16 modes run them one by one, so that every op boundary rounds as before.

import { attend, attendFits } from '../runtime/kernels/attention.js';
import { allocFloat, type RtTensor } from '../runtime/tensor.js';
import { isLiteral, type Arg, type Graph, type Op } from '../ir/graph.js';

/** The values of one fusable group of four ops, the first of which is at `start`. */
export interface AttentionGroup {
  start: number;
  k: string;
  q: string;
  mask: string;
  v: string;
  /** The three values only the group reads (never computed when the group runs fused). */
  inner: [string, string, string];
}

/** coremltools' rank-4 einsum form "abcd,adce->abce", in any letters. */
function isRank4(op: Op): boolean {
  const eq = op.inputs.equation;
  if (op.op !== 'einsum' || eq === undefined || !isLiteral(eq) || typeof eq.value !== 'string') return false;
  const m = /^([a-z]{4}),([a-z]{4})->([a-z]{4})$/.exec(eq.value);
  if (!m) return false;
  const [x, y, o] = [m[1]!, m[2]!, m[3]!];
  return (
    new Set(x).size === 4 && y === x[0]! + x[3]! + x[2]! + y[3]! && o === x.slice(0, 3) + y[3]! && !x.includes(y[3]!)
  );
}

const tuple = (a: Arg | undefined): string[] | undefined => (Array.isArray(a) ? a : undefined);

/**
 * The groups of a graph, by first op: four consecutive ops of the pattern above whose scores, masked scores
 * and probabilities have no reader outside the group and are neither outputs nor taps.
 */
export function planAttention(graph: Graph, readers: Map<string, number>): Map<number, AttentionGroup> {
  const plan = new Map<number, AttentionGroup>();
  const visible = new Set([...graph.outputs, ...graph.taps.values()]);
  const ops = graph.ops;
  for (let i = 0; i + 3 < ops.length; i++) {
    const [e1, add, sm, e2] = [ops[i]!, ops[i + 1]!, ops[i + 2]!, ops[i + 3]!];
    const kq = tuple(e1.inputs.values);
    const vp = tuple(e2.inputs.values);
    const axis = sm.inputs.axis;
    const scores = e1.outputs[0]!.name;
    const masked = add.outputs[0]?.name;
    const probs = sm.outputs[0]?.name;
    if (
      !isRank4(e1) ||
      !isRank4(e2) ||
      add.op !== 'add' ||
      sm.op !== 'softmax' ||
      !kq ||
      !vp ||
      kq.length !== 2 ||
      vp.length !== 2
    )
      continue;
    if (add.inputs.x !== scores || typeof add.inputs.y !== 'string' || sm.inputs.x !== masked || vp[1] !== probs)
      continue;
    if (axis === undefined || !isLiteral(axis) || ![1, -3].includes((axis.value as number[])[0]!)) continue;
    // One block of queries (H = 1): the banded layers' (1, 3B, nb, B) blocks run op by op.
    if (e1.outputs[0]!.type.shape[2] !== 1) continue;
    const inner: [string, string, string] = [scores, masked!, probs!];
    if (inner.some((n) => readers.get(n) !== 1 || visible.has(n))) continue;
    plan.set(i, { start: i, k: kq[0]!, q: kq[1]!, mask: add.inputs.y, v: vp[0]!, inner });
    i += 3;
  }
  return plan;
}

/**
 * The group's output (1, D_v, 1, W) from its operands, or undefined where the shapes are not the
 * single-block form the kernel takes (the interpreter then runs the four ops).
 */
export async function runAttention(
  k: RtTensor,
  q: RtTensor,
  mask: RtTensor,
  v: RtTensor,
): Promise<RtTensor | undefined> {
  const all = [k, q, mask, v];
  if (
    all.some((t) => !(t.data instanceof Float32Array) || t.shape.length !== 4 || t.shape[0] !== 1 || t.shape[2] !== 1)
  )
    return undefined;
  const [Sk, D] = [k.shape[1]!, k.shape[3]!];
  const W = q.shape[3]!;
  const Dv = v.shape[1]!;
  if (
    q.shape[1] !== D ||
    v.shape[3] !== Sk ||
    mask.shape[1] !== Sk ||
    (mask.shape[3] !== W && mask.shape[3] !== 1) ||
    !attendFits(Sk, W)
  )
    return undefined;
  const out = allocFloat(Dv * W);
  await attend({
    Sk,
    D,
    Dv,
    W,
    k: k.data as Float32Array,
    q: q.data as Float32Array,
    v: v.data as Float32Array,
    bias: mask.data as Float32Array,
    out,
  });
  return { dtype: v.dtype, shape: [1, Dv, 1, W], data: out };
}
