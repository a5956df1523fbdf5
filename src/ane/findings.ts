// The findings of a predicted placement: the rules that warn or note (ANE-RULES.md), each with the ops it
// names: ops the placement moved off the Neural Engine, the model's inputs and outputs, op forms the Neural
// Engine runs slowly, and the program's size.

import type { Graph, Op, TensorType } from '../ir/graph.js';
import { isLiteral } from '../ir/graph.js';
import type { FeatureInfo } from '../coreml/description.js';
import { resolveShape, valueInputs, type SymbolSizes } from './cost.js';
import { ANE_EINSUMS, canonicalEinsum, ELEMENTWISE_BINARY, literalNumbers } from './op-classes.js';
import type { Finding, PlacedOp, Totals } from './placement.js';
import type { Rule, RuleId, Rules } from './rules.js';

/** What the findings read of the program and its placement. */
export interface FindContext {
  rules: Rules;
  on: (id: RuleId) => Rule | undefined;
  types: Map<string, TensorType>;
  sizes: SymbolSizes;
  isConst: (name: string) => boolean;
  totals: Totals;
  /** The op budget at the costed length (opBudget). */
  budget: number;
  inputs?: readonly FeatureInfo[];
  outputs?: readonly FeatureInfo[];
}

/** Adds a finding of one rule (when the rule is on), naming at most five of its ops. */
type Add = (id: RuleId, message: string, names?: string[], count?: number) => void;

/** The warning and note rules, and ops off the Neural Engine inside the body. */
export function findRules(g: Graph, ops: Op[], placed: PlacedOp[], x: FindContext): Finding[] {
  const out: Finding[] = [];
  const add: Add = (id, message, names = [], count = names.length) => {
    const r = x.on(id);
    if (r) out.push({ rule: id, warn: r.warn, message, ops: names.slice(0, 5), count });
  };
  movedOps(placed, x, add);
  inputsAndOutputs(g, x, add);
  opForms(ops, x, add);
  programSize(ops, x, add);
  return out;
}

const threshold = (x: FindContext, id: RuleId) => x.rules.get(id)!.threshold!;
const shapeOf = (x: FindContext, name: string) => resolveShape(x.types.get(name)?.shape ?? [], x.sizes);

/** Placement rules that warn: name the ops they moved. */
function movedOps(placed: PlacedOp[], x: FindContext, add: Add): void {
  const moved = new Map<RuleId, string[]>();
  for (const p of placed)
    if (p.rule !== 'default' && x.rules.get(p.rule)!.warn)
      (moved.get(p.rule) ?? moved.set(p.rule, []).get(p.rule)!).push(p.name);
  for (const [id, names] of moved)
    add(id, `${names.length} ops off the Neural Engine: ${x.rules.get(id)!.check}`, names);
}

/** Rows 5 and 8: flexible input shapes, and inputs or outputs whose last axis is narrow. */
function inputsAndOutputs(g: Graph, x: FindContext, add: Add): void {
  const ins =
    x.inputs ??
    g.inputs.map(
      (v) =>
        ({
          name: v.name,
          dtype: v.type.dtype,
          shape: v.type.shape.filter((d): d is number => typeof d === 'number'),
        }) as FeatureInfo,
    );
  const most = threshold(x, 'flexible-shapes');
  for (const v of g.inputs) {
    if (v.type.shape.every((d) => typeof d === 'number')) continue;
    const f = ins.find((i) => i.name === v.name);
    if (!f?.enumeratedShapes)
      add(
        'flexible-shapes',
        `input "${v.name}" has a range-flexible shape: only its default shape runs on the Neural Engine (give enumerated shapes or one function per length)`,
        [v.name],
      );
    else if (f.enumeratedShapes.length > most)
      add(
        'flexible-shapes',
        `input "${v.name}" has ${f.enumeratedShapes.length} enumerated shapes, more than ${most}`,
        [v.name],
      );
  }
  const narrow: string[] = [];
  const widths = new Map<string, number[]>();
  for (const f of ins)
    widths.set(
      f.name,
      (f.enumeratedShapes ?? [f.shape]).map(
        (s) => (s.at(-1) ?? 1) * (f.dtype === 'fp16' ? 2 : f.dtype === 'int8' || f.dtype === 'uint8' ? 1 : 4),
      ),
    );
  for (const name of g.outputs) {
    const t = x.types.get(name);
    if (t) widths.set(name, [(shapeOf(x, name).at(-1) ?? 1) * (t.dtype === 'fp16' ? 2 : 4)]);
  }
  for (const [name, bytes] of widths)
    if (Math.min(...bytes) < threshold(x, 'io-last-axis') * 2) narrow.push(`${name} (${Math.min(...bytes)} B)`);
  if (narrow.length)
    add(
      'io-last-axis',
      `model inputs or outputs whose last axis is under 64 bytes (padded to 64 on the Neural Engine): ${narrow.join(', ')}`,
      narrow,
    );
}

/** Op forms the Neural Engine runs slowly or not at all: one finding per rule, naming its ops. */
function opForms(ops: Op[], x: FindContext, add: Add): void {
  const shape = (name: string) => shapeOf(x, name);
  const found = {
    linear: [] as string[],
    einsums: [] as string[],
    softmax: [] as string[],
    masks: [] as string[],
    eps: [] as string[],
    layout: [] as string[],
    broadcast: [] as string[],
  };
  for (const op of ops) {
    const ins = valueInputs(op);
    if (
      (op.op === 'linear' || op.op === 'matmul') &&
      ins.some(
        ({ name }) => x.isConst(name) && shape(name).reduce((a, b) => a * b, 1) >= threshold(x, 'linear-weights'),
      )
    )
      found.linear.push(op.name);
    if (
      op.op === 'einsum' &&
      isLiteral(op.inputs.equation) &&
      !ANE_EINSUMS.has(canonicalEinsum(String(op.inputs.equation.value)))
    )
      found.einsums.push(`${op.name} (${String(op.inputs.equation.value)})`);
    if (op.op === 'softmax' && typeof op.inputs.x === 'string') {
      const rank = shape(op.inputs.x).length;
      const axis = literalNumbers(op.inputs.axis)[0] ?? -1;
      const channel = rank === 5 ? 2 : rank === 4 ? 1 : rank === 3 ? 0 : -1;
      if ((axis < 0 ? axis + rank : axis) !== channel) found.softmax.push(op.name);
    }
    for (const [key, arg] of Object.entries(op.inputs)) {
      if (!isLiteral(arg) || typeof arg.value === 'string' || key === 'epsilon') continue;
      if ((arg.value as number[]).some((v) => typeof v === 'number' && (Number.isNaN(v) || v <= -65504)))
        found.masks.push(op.name);
    }
    const e = literalNumbers(op.inputs.epsilon)[0];
    if (e !== undefined && e < threshold(x, 'norm-epsilon')) found.eps.push(`${op.name} (${e})`);
    if (op.op === 'transpose') {
      const perm = literalNumbers(op.inputs.perm);
      if (perm.length && perm.at(-1) !== perm.length - 1 && perm.at(-1) !== -1) found.layout.push(op.name);
    }
    if (
      op.op === 'reshape' &&
      typeof op.inputs.x === 'string' &&
      shape(op.inputs.x).at(-1) !== resolveShape(op.outputs[0]!.type.shape, x.sizes).at(-1)
    )
      found.layout.push(op.name);
    if (ELEMENTWISE_BINARY.has(op.op)) {
      const o = resolveShape(op.outputs[0]!.type.shape, x.sizes);
      const c = o.length === 4 ? 1 : o.length === 5 ? 2 : -1;
      if (
        c >= 0 &&
        o[c]! > 1 &&
        ins.some(({ name }) => !x.isConst(name) && shape(name).length === o.length && shape(name)[c] === 1)
      )
        found.broadcast.push(op.name);
    }
  }
  const { linear, einsums, softmax, masks, eps, layout, broadcast } = found;
  if (linear.length)
    add(
      'linear-weights',
      `${linear.length} linear/matmul ops with a constant weight of ${threshold(x, 'linear-weights')} elements or more (a 1x1 conv is preferred)`,
      linear,
    );
  if (einsums.length)
    add(
      'einsum-form',
      `${einsums.length} einsums of another form than Apple's two per-head attention einsums`,
      einsums,
    );
  if (softmax.length)
    add('softmax-axis', `${softmax.length} softmax ops over an axis other than the channel axis`, softmax);
  if (masks.length)
    add('mask-constant', `${masks.length} ops with a constant of -inf, NaN or at most -65504 (use -1e4)`, masks);
  if (eps.length)
    add(
      'norm-epsilon',
      `${eps.length} norms with epsilon below ${threshold(x, 'norm-epsilon')} (underflows in float16)`,
      eps,
    );
  if (layout.length)
    add(
      'last-axis-layout',
      `${layout.length} transposes or reshapes move the last axis (a memory rewrite each)`,
      layout,
    );
  if (broadcast.length)
    add(
      'channel-broadcast',
      `${broadcast.length} elementwise ops broadcast a non-constant tensor over channels`,
      broadcast,
    );
}

/** The program's size: its constants, its op count against the budget, and work too small to place. */
function programSize(ops: Op[], x: FindContext, add: Add): void {
  const gb = x.totals.weightBytes / 1e9;
  if (x.totals.weightBytes > threshold(x, 'weight-size'))
    add(
      'weight-size',
      `${gb.toFixed(2)} GB of constants: above ~1 GB per file Core ML may refuse the Neural Engine on iOS (~2 GB on macOS, ~3 GB per process)`,
    );
  if (ops.length > x.budget)
    add(
      'op-count',
      `${ops.length.toLocaleString('en-US')} non-constant ops, above the budget of ${x.budget.toLocaleString('en-US')}: load and compile time grow with the count`,
      [],
      ops.length,
    );
  if (x.totals.flops < threshold(x, 'small-graph'))
    add('small-graph', `${x.totals.flops} FLOPs in all: so little work may be placed on the CPU`);
}
