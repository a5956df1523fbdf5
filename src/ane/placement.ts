// Predicted placement: the device each op of a program would run on, by the rules of rules.ts, and what that
// costs: where the work leaves the Neural Engine, and whether it comes back (a boundary inside the body, a
// round trip per prediction) or not (an island at the head, such as the embedding lookup and the int32 work
// on the ids, or at the tail). A prediction, not a measurement: MLComputePlan on a Mac is the real answer.
//
// Regions. An op is "input preparation" when it reads only model inputs, constants and other preparation,
// and is none of the model's own math (matrix products, softmax, norms, activations): the embedding lookup,
// masks from the ids, rotary tables picked by position. Ops off the Neural Engine that are preparation form
// head islands; the others form tail islands when no Neural Engine op depends on them, else body islands.

import type { Graph, Op, TensorType } from '../ir/graph.js';
import { valueTypes as graphValueTypes } from '../ir/value-types.js';
import { aneShapeProblems } from '../graph/ane-limits.js';
import type { FeatureInfo } from '../coreml/description.js';
import { storedBytes } from '../coreml/tensor-bytes.js';
import { isConstexpr } from '../ops/index.js';
import { opCost, resolveShape, valueInputs, type SymbolSizes } from './cost.js';
import { findRules } from './findings.js';
import { ANE_DTYPES, BLOCKLIST, bigUpsample, GATHERS, MODEL_OPS, tooBigPool } from './op-classes.js';
import { defaultRules, type Device, type Rule, type RuleId, type Rules } from './rules.js';

/** Where an op off the Neural Engine sits: input preparation, the body, or after the last Neural Engine op. */
export type Region = 'head' | 'body' | 'tail';

/** The layer an op belongs to: its index, or 'in' (embeddings, masks) / 'out' (final norm, head). */
export type LayerOf = number | 'in' | 'out';

/** One op, placed. */
export interface PlacedOp {
  index: number;
  name: string;
  op: string;
  device: Device;
  /** The rule that decided the device. */
  rule: RuleId;
  layer: LayerOf;
  /** For ops off the Neural Engine: which kind of island they are in. */
  region?: Region;
  flops: number;
  bytes: number;
  weightBytes: number;
}

/** A connected group of ops off the Neural Engine. */
export interface Island {
  region: Region;
  ops: number;
  /** Op indices (program order) of its first and last op, and their names. */
  first: { index: number; name: string; op: string };
  last: { index: number; name: string; op: string };
  /** Op types in it, with counts. */
  types: Record<string, number>;
  /** Tensors crossing into it from the Neural Engine, and out of it to the Neural Engine. */
  fromAne: string[];
  toAne: string[];
}

/** A finding of a warning or note rule. */
export interface Finding {
  rule: RuleId;
  warn: boolean;
  message: string;
  /** Ops it concerns (at most a few names), and how many there are. */
  ops: string[];
  count: number;
}

/** Runs of consecutive ops (program order) on one device. */
export interface Segment {
  device: Device;
  from: number;
  to: number;
}

export interface Totals {
  flops: number;
  aneFlops: number;
  weightBytes: number;
  aneWeightBytes: number;
  bytes: number;
}

/** The prediction for one function of a program. */
export interface Placement {
  ops: PlacedOp[];
  /** Non-constant ops (constexpr ops decompress weights at load time and are not counted). */
  opCount: number;
  budget: number;
  devices: Record<Device, number>;
  /** Tensors crossing between the Neural Engine and elsewhere, by the region of the side that is elsewhere. */
  boundaries: Record<Region, number>;
  islands: Island[];
  segments: Segment[];
  totals: Totals;
  findings: Finding[];
  /** The rules as applied (with a rules file's corrections). */
  rules: Rule[];
  /** The length symbolic dims were costed at. */
  seqLen: number | null;
}

export interface PredictOptions {
  rules?: Rules;
  /** Sizes of symbolic dims (a number stands for every symbol: the longest enumerated length). */
  sizes?: SymbolSizes;
  /** The model's inputs and outputs as described (flexible shapes, I/O widths); from the graph when absent. */
  inputs?: readonly FeatureInfo[];
  outputs?: readonly FeatureInfo[];
}

/**
 * The op budget at a length: the op-count rule's threshold up to 1,024 tokens, a third more per doubling
 * beyond, twice it from 8,192 (3,000 -> 4,000 at 2,048, 6,000 at 8,192): a longer input needs more query
 * chunks of global attention, each a few ops per head, for score tensors of a bounded size.
 */
export function opBudget(threshold: number, seqLen: number | null): number {
  const doublings = seqLen !== null && seqLen > 1024 ? Math.min(3, Math.log2(seqLen / 1024)) : 0;
  return Math.round(threshold * (1 + doublings / 3));
}

/** Predicts where each op of `g` runs. */
export function predictPlacement(g: Graph, o: PredictOptions = {}): Placement {
  const rules = o.rules ?? defaultRules();
  const on = (id: RuleId): Rule | undefined => (rules.get(id)!.enabled ? rules.get(id) : undefined);
  const sizes = o.sizes ?? {};
  const types = new Map([...graphValueTypes(g)].map(([n, v]) => [n, v.type]));
  const { constBytes, constSources } = constantData(g, sizes);
  const isConst = (name: string) => constBytes.has(name);
  const ops = g.ops.filter((op) => !isConstexpr(op.op));
  const place = placer({ g, rules, on, sizes, types, isConst });
  const placed: PlacedOp[] = ops.map((op, index) => {
    const { device, rule } = place(op);
    const cost = opCost(op, types, sizes, (n) => constBytes.get(n));
    return { index, name: op.name, op: op.op, device, rule, layer: 'in', ...cost };
  });

  const producer = new Map<string, number>();
  ops.forEach((op, i) => op.outputs.forEach((v) => producer.set(v.name, i)));
  const producersOf = (op: Op) =>
    valueInputs(op).flatMap(({ name }) => (producer.has(name) ? [producer.get(name)!] : []));
  const { islands, islandOf } = findIslands(ops, placed, producersOf);
  const boundaries = countBoundaries(ops, placed, producer, islands, islandOf);
  assignLayers(ops, placed, producersOf, isConst);

  const segments: Segment[] = [];
  placed.forEach((p, i) => {
    const last = segments.at(-1);
    if (last && last.device === p.device) last.to = i;
    else segments.push({ device: p.device, from: i, to: i });
  });
  const totals: Totals = {
    flops: sum(placed.map((p) => p.flops)),
    aneFlops: sum(placed.filter((p) => p.device === 'ane').map((p) => p.flops)),
    ...weightTotals(g, ops, placed, constBytes, constSources),
    bytes: sum(placed.map((p) => p.bytes)),
  };
  const devices: Record<Device, number> = { ane: 0, cpu: 0, 'gpu-or-cpu': 0 };
  for (const p of placed) devices[p.device]++;

  const seq = typeof sizes === 'number' ? sizes : null;
  const budget = opBudget(rules.get('op-count')!.threshold!, seq);
  const findings = findRules(g, ops, placed, {
    rules,
    on,
    types,
    sizes,
    isConst,
    totals,
    budget,
    inputs: o.inputs,
    outputs: o.outputs,
  });
  return {
    ops: placed,
    opCount: ops.length,
    budget,
    devices,
    boundaries,
    islands,
    segments,
    totals,
    findings,
    rules: [...rules.values()],
    seqLen: seq,
  };
}

/** Constant data: Consts, and what constexpr ops decompress from them (the stored bytes of their inputs). */
function constantData(
  g: Graph,
  sizes: SymbolSizes,
): { constBytes: Map<string, number>; constSources: Map<string, string[]> } {
  const constBytes = new Map<string, number>();
  const constSources = new Map<string, string[]>();
  for (const [n, c] of g.consts) {
    constBytes.set(
      n,
      storedBytes(
        c.type.dtype,
        resolveShape(c.type.shape, sizes).reduce((a, b) => a * b, 1),
      ),
    );
    constSources.set(n, [n]);
  }
  for (const op of g.ops.filter((op) => isConstexpr(op.op))) {
    const srcs = valueInputs(op).flatMap(({ name }) => constSources.get(name) ?? []);
    const bytes = srcs.reduce((s, n) => s + (g.consts.has(n) ? constBytes.get(n)! : 0), 0);
    for (const out of op.outputs) {
      constBytes.set(out.name, bytes);
      constSources.set(out.name, srcs);
    }
  }
  return { constBytes, constSources };
}

interface PlacerContext {
  g: Graph;
  rules: Rules;
  on: (id: RuleId) => Rule | undefined;
  sizes: SymbolSizes;
  types: Map<string, TensorType>;
  isConst: (name: string) => boolean;
}

/** The device of one op by the first enabled rule that matches, in the rules' order of precedence. */
function placer({ g, rules, on, sizes, types, isConst }: PlacerContext): (op: Op) => { device: Device; rule: RuleId } {
  const inputs = new Set(g.inputs.map((v) => v.name));
  const outputs = new Set(g.outputs);
  const isDynamic = (op: Op): boolean => {
    const runtime = (key: string) => typeof op.inputs[key] === 'string' && !isConst(op.inputs[key] as string);
    if (op.op === 'slice_by_index') return runtime('begin') || runtime('end');
    if (op.op === 'slice_by_size') return runtime('begin') || runtime('size');
    if (op.op === 'reshape') return runtime('shape');
    return false;
  };
  const shapeProblems = (op: Op, dynamicIns: string[]): string[] => {
    const shapes = [...dynamicIns.map((n) => types.get(n)!), ...op.outputs.map((v) => v.type)];
    if (op.op === 'conv' && typeof op.inputs.weight === 'string') shapes.push(types.get(op.inputs.weight)!);
    return shapes.filter(Boolean).flatMap((t) => aneShapeProblems(resolveShape(t.shape, sizes)));
  };
  return (op) => {
    const ins = valueInputs(op).map((v) => v.name);
    const dynamicIns = ins.filter((n) => !isConst(n));
    const tensors: TensorType[] = [...ins.map((n) => types.get(n)!), ...op.outputs.map((v) => v.type)].filter(Boolean);
    const nonConstTypes = [...dynamicIns.map((n) => types.get(n)!), ...op.outputs.map((v) => v.type)].filter(Boolean);
    const pick = (id: RuleId, device?: Device) => ({ device: device ?? rules.get(id)!.device!, rule: id });
    if (on('blocklist') && (BLOCKLIST.has(op.op) || tooBigPool(op) || bigUpsample(op))) return pick('blocklist');
    if (
      on('io-cast') &&
      op.op === 'cast' &&
      (dynamicIns.some((n) => inputs.has(n)) || op.outputs.some((v) => outputs.has(v.name)))
    )
      return pick('io-cast');
    if (on('fp32') && tensors.some((t) => t.dtype === 'fp32')) return pick('fp32');
    if (on('gather') && GATHERS.has(op.op)) return pick('gather');
    if (on('int-bool') && nonConstTypes.some((t) => !ANE_DTYPES.has(t.dtype))) return pick('int-bool');
    if (on('dynamic') && isDynamic(op)) return pick('dynamic');
    const problems = shapeProblems(op, dynamicIns);
    if (on('rank') && problems.some((p) => p.startsWith('rank'))) return pick('rank');
    if (on('axis-size') && problems.length > 0) return pick('axis-size');
    if (on('fused-attention') && op.op === 'scaled_dot_product_attention') {
      const q = resolveShape(types.get(String(op.inputs.query))?.shape ?? [], sizes);
      const k = resolveShape(types.get(String(op.inputs.key))?.shape ?? [], sizes);
      const scores = q.slice(0, -1).reduce((a, b) => a * b, 1) * (k.at(-2) ?? 1);
      return scores >= (rules.get('fused-attention')!.threshold ?? 0) && tensors.every((t) => t.dtype === 'fp16')
        ? pick('fused-attention', 'ane')
        : pick('fused-attention');
    }
    return pick('default');
  };
}

/**
 * Each op off the Neural Engine gets its region (head: input preparation only; body: Neural Engine work
 * depends on it; tail: the rest), and connected ops off the Neural Engine of one region form an island.
 */
function findIslands(
  ops: Op[],
  placed: PlacedOp[],
  producersOf: (op: Op) => number[],
): { islands: Island[]; islandOf: Map<number, number> } {
  const prep = ops.map(() => false);
  ops.forEach((op, i) => {
    prep[i] = !MODEL_OPS.has(op.op) && producersOf(op).every((p) => prep[p]);
  });
  const consumers = ops.map(() => [] as number[]);
  ops.forEach((op, i) => new Set(producersOf(op)).forEach((p) => consumers[p]!.push(i)));
  const ane = (i: number) => placed[i]!.device === 'ane';
  // Whether a Neural Engine op depends on op i (consumers come later in program order).
  const feedsAne = ops.map(() => false);
  for (let i = ops.length - 1; i >= 0; i--) feedsAne[i] = consumers[i]!.some((c) => ane(c) || feedsAne[c]);
  // Islands are off the Neural Engine relative to work on it: with none there, there are none.
  const anyAne = placed.some((p) => p.device === 'ane');
  placed.forEach((p, i) => {
    if (p.device !== 'ane' && anyAne) p.region = prep[i] ? 'head' : feedsAne[i] ? 'body' : 'tail';
  });

  const islandOf = new Map<number, number>();
  const islands: Island[] = [];
  placed.forEach((p, i) => {
    if (p.region === undefined || islandOf.has(i)) return;
    const k = islands.length;
    const stack = [i];
    const list: number[] = [];
    islandOf.set(i, k);
    while (stack.length) {
      const j = stack.pop()!;
      list.push(j);
      for (const n of [...producersOf(ops[j]!), ...consumers[j]!]) {
        if (!islandOf.has(n) && !ane(n) && placed[n]!.region === p.region) {
          islandOf.set(n, k);
          stack.push(n);
        }
      }
    }
    list.sort((a, b) => a - b);
    const at = (j: number) => ({ index: j, name: ops[j]!.name, op: ops[j]!.op });
    const typesIn: Record<string, number> = {};
    for (const j of list) typesIn[ops[j]!.op] = (typesIn[ops[j]!.op] ?? 0) + 1;
    islands.push({
      region: p.region!,
      ops: list.length,
      first: at(list[0]!),
      last: at(list.at(-1)!),
      types: typesIn,
      fromAne: [],
      toAne: [],
    });
  });
  return { islands, islandOf };
}

/** Boundaries: each tensor crossing between the Neural Engine and elsewhere, once per direction, counted by its island's region. */
function countBoundaries(
  ops: Op[],
  placed: PlacedOp[],
  producer: Map<string, number>,
  islands: Island[],
  islandOf: Map<number, number>,
): Record<Region, number> {
  const ane = (i: number) => placed[i]!.device === 'ane';
  const anyAne = placed.some((p) => p.device === 'ane');
  const crossings = new Set<string>();
  const boundaries: Record<Region, number> = { head: 0, body: 0, tail: 0 };
  ops.forEach((op, i) => {
    for (const { name } of valueInputs(op)) {
      const p = producer.get(name);
      if (p === undefined || ane(p) === ane(i) || !anyAne) continue;
      const dir = ane(p) ? 'out' : 'in';
      const key = `${name}\u0000${dir}`;
      if (crossings.has(key)) continue;
      crossings.add(key);
      const island = islands[islandOf.get(ane(p) ? i : p)!]!;
      (ane(p) ? island.fromAne : island.toAne).push(name);
      boundaries[island.region]++;
    }
  });
  return boundaries;
}

/** Weight bytes: each constant once (tied tensors share a storage key), on the Neural Engine when an op there reads it. */
function weightTotals(
  g: Graph,
  ops: Op[],
  placed: PlacedOp[],
  constBytes: Map<string, number>,
  constSources: Map<string, string[]>,
): { weightBytes: number; aneWeightBytes: number } {
  const readers = new Map<string, Set<Device>>();
  ops.forEach((op, i) => {
    for (const { name } of valueInputs(op))
      for (const src of constSources.get(name) ?? [])
        (readers.get(src) ?? readers.set(src, new Set()).get(src)!).add(placed[i]!.device);
  });
  const seenStorage = new Set<string>();
  let weightBytes = 0;
  let aneWeightBytes = 0;
  for (const [n, c] of g.consts) {
    const key = c.storageKey ?? n;
    if (seenStorage.has(key)) continue;
    seenStorage.add(key);
    weightBytes += constBytes.get(n)!;
    if (readers.get(n)?.has('ane')) aneWeightBytes += constBytes.get(n)!;
  }
  return { weightBytes, aneWeightBytes };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * The layer of each op: from its name (ours: `layers_N_...`) or the weights it reads (coremltools keeps the
 * PyTorch names: `layers_N_attn_...`), else the latest layer among its inputs; ops after the last op so
 * named are the output ('out'), ops that no layer precedes the input side ('in').
 */
function assignLayers(
  ops: Op[],
  placed: PlacedOp[],
  producersOf: (op: Op) => number[],
  isConst: (name: string) => boolean,
): void {
  const LAYER = /(?:^|[._])layers?[._](\d+)[._]/;
  const named = (op: Op): number | undefined => {
    const m =
      LAYER.exec(op.name) ??
      valueInputs(op)
        .filter(({ name }) => isConst(name))
        .map(({ name }) => LAYER.exec(name))
        .find((x) => x !== null);
    return m ? Number(m[1]) : undefined;
  };
  const byName = ops.map(named);
  const lastNamed = byName.reduce<number>((last, n, i) => (n === undefined ? last : i), -1);
  ops.forEach((op, i) => {
    const n = byName[i];
    if (n !== undefined) {
      placed[i]!.layer = n;
      return;
    }
    const from = producersOf(op)
      .map((p) => placed[p]!.layer)
      .filter((l): l is number => typeof l === 'number');
    if (from.length === 0) placed[i]!.layer = producersOf(op).some((p) => placed[p]!.layer === 'out') ? 'out' : 'in';
    else placed[i]!.layer = i > lastNamed ? 'out' : Math.max(...from);
  });
}
