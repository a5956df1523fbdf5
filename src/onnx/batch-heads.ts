// Attention with its heads batched, for onnxruntime. model/model.ts splits attention per head (the Neural Engine's
// layout): q, k and v split into H heads (packages from earlier versions cut each head with a slice),
// per-head einsums, mask add and softmax, and a concat of the heads on the channel axis. Lowered as it is,
// that is some 20-40 ONNX nodes per head and layer, whose per-node cost dominates short inputs. This pass
// finds each such block (a concat on axis 1 of H head outputs, each one or several query chunks of einsum ->
// add mask -> softmax -> einsum) and writes it once for all heads:
//
//   q (1, C, X, Q) -> (H, X, Q, D), k (1, K, X, C) -> (H, X, D, K), v (1, C, X, K) -> (H, X, D, K)
//   probs = softmax(q @ k + mask, keys last)   (H, X, Q, K)
//   out = v @ probs^T -> (1, C, X, Q)          (H, X, D, Q)
//
// X is 1 for full attention and the block axis of banded local attention. Each head's q, k and v are
// widened to all channels through the splits, slices, transposes and concats between them (the band's
// windows), so the pass holds for every head count, both attention forms, query chunks, masks of any form
// (input, padding, window, packed segments) and any weight form. The new ops are the registry's, so the
// interpreter runs the rewritten graph too (tests compare it). A block that does not match stays as it is;
// per-head values read elsewhere (taps) are kept, since only ops that nothing reads are dropped.

import { ModernBertError } from '../errors.js';
import {
  isLiteral,
  literal,
  type Arg,
  type Dim,
  type Graph,
  type Literal,
  type Op,
  type TensorType,
} from '../ir/graph.js';
import { inferArgs, inputTypesOf, opDef } from '../ops/index.js';

const SCORES = 'bkhc,bchq->bkhq';
const WEIGHTED = 'bchk,bkhq->bchq';

/** A per-head value widened to all heads: the value and its channel axis. */
interface Wide {
  v: string;
  axis: number;
}

/** One query chunk of one head's attention: out = einsum(v, softmax(einsum(k, q) + mask)). */
interface Core {
  k: string;
  q: string;
  v: string;
  mask: string;
}

/** The graph with every per-head attention block written once for all heads (the same graph when none matches). */
export function batchHeads(graph: Graph): Graph {
  const batcher = new HeadBatcher(graph);
  const ops: Op[] = [];
  let changed = false;
  for (const op of graph.ops) {
    const batched = op.op === 'concat' && batcher.block(op);
    // Ops emitted by a block that did not match stay too (a later block may reuse them); live() drops the unread.
    ops.push(...batcher.take());
    if (batched) changed = true;
    else ops.push(op);
  }
  return changed ? { ...graph, ops: live(graph, ops) } : graph;
}

const i32 = (v: number[]) => literal('int32', v);
const lit = (op: Op, key: string): Literal | undefined =>
  isLiteral(op.inputs[key]) ? (op.inputs[key] as Literal) : undefined;
function ints(op: Op, key: string): number[] | undefined {
  const l = lit(op, key);
  return l && typeof l.value !== 'string' ? l.value.map(Number) : undefined;
}
function text(op: Op, key: string): string | undefined {
  const l = lit(op, key);
  return l && typeof l.value === 'string' ? l.value : undefined;
}
function axisOf(op: Op, rank: number): number | undefined {
  const a = ints(op, 'axis')?.[0];
  return a === undefined ? undefined : a < 0 ? a + rank : a;
}
/** Whether the ops take the same inputs but `except`. */
function sameParams(ops: Op[], except: string): boolean {
  const key = (op: Op) =>
    JSON.stringify(
      Object.entries(op.inputs)
        .filter(([k]) => k !== except)
        .sort(),
    );
  return ops.every((o) => key(o) === key(ops[0]!));
}

/** The rewrite's state: who produces each value, each value's type, and the ops emitted so far. */
class HeadBatcher {
  private readonly producer = new Map<string, Op>();
  private readonly types = new Map<string, TensorType>();
  private readonly taken: Set<string>;
  private readonly memo = new Map<string, string>();
  private readonly structureKeys = new Map<string, string>();
  private added: Op[] = [];

  constructor(graph: Graph) {
    for (const v of graph.inputs) this.types.set(v.name, v.type);
    for (const c of graph.consts.values()) this.types.set(c.name, c.type);
    for (const op of graph.ops)
      for (const v of op.outputs) (this.producer.set(v.name, op), this.types.set(v.name, v.type));
    this.taken = new Set(this.types.keys());
  }

  /** The ops emitted since the last call. */
  take(): Op[] {
    const added = this.added;
    this.added = [];
    return added;
  }

  /** Rewrites one concat of per-head attention outputs for all heads at once; false when it is not one. */
  block(concat: Op): boolean {
    const match = this.matchBlock(concat);
    if (!match) return false;
    const { parts, H, C, X } = match;
    const D = C / H;
    const out = concat.outputs[0]!;
    const base = concat.name;
    const outs = parts.map((p, j) => {
      const b = `${base}_c${j}`;
      const q = this.emit(
        'transpose',
        { x: this.emit('reshape', { x: p.q.v, shape: i32([H, D, X, -1]) }, `${b}_q4`), perm: i32([0, 2, 3, 1]) },
        `${b}_qT`,
      ); // (H, X, Q, D)
      // (1, C, X, K) -> (H, X, D, K); keys still (1, K, X, C) -> (H, X, D, K).
      const heads = (w: Wide, n: string) =>
        this.once(`${n}|${w.v}`, () =>
          w.axis === 1
            ? this.emit(
                'transpose',
                {
                  x: this.emit('reshape', { x: w.v, shape: i32([H, D, X, -1]) }, `${b}_${n}4`),
                  perm: i32([0, 2, 1, 3]),
                },
                `${b}_${n}T`,
              )
            : this.emit(
                'transpose',
                {
                  x: this.emit('reshape', { x: w.v, shape: i32([-1, X, H, D]) }, `${b}_${n}4`),
                  perm: i32([2, 1, 3, 0]),
                },
                `${b}_${n}T`,
              ),
        );
      const [k, v] = [heads(p.k, 'k'), heads(p.v, 'v')];
      const mask = this.once(`mask|${p.mask}`, () =>
        this.emit('transpose', { x: p.mask, perm: i32([0, 2, 3, 1]) }, `${b}_maskT`),
      ); // (1, X|1, Q|1, K|1)
      const scores = this.emit(
        'matmul',
        { x: q, y: k, transpose_x: literal('bool', false), transpose_y: literal('bool', false) },
        `${b}_scores`,
      ); // (H, X, Q, K)
      const probs = this.emit(
        'softmax',
        { x: this.emit('add', { x: scores, y: mask }, `${b}_masked`), axis: literal('int32', 3) },
        `${b}_probs`,
      );
      const o = this.emit(
        'matmul',
        { x: v, y: probs, transpose_x: literal('bool', false), transpose_y: literal('bool', true) },
        `${b}_out`,
      ); // (H, X, D, Q)
      const last = parts.length === 1 ? out.name : undefined;
      return this.emit(
        'reshape',
        { x: this.emit('transpose', { x: o, perm: i32([0, 2, 1, 3]) }, `${b}_outT`), shape: i32([1, C, X, -1]) },
        `${b}_merged`,
        last,
      ); // (1, C, X, Q)
    });
    if (parts.length > 1)
      this.emit(
        'concat',
        { values: outs, axis: literal('int32', 3), interleave: literal('bool', false) },
        base,
        out.name,
      );
    return true;
  }

  /** The heads' q, k, v (widened to all channels) and mask per query chunk, when `concat` joins H attention heads. */
  private matchBlock(
    concat: Op,
  ): { parts: { k: Wide; q: Wide; v: Wide; mask: string }[]; H: number; C: number; X: number } | undefined {
    const heads = concat.inputs.values;
    if (
      !Array.isArray(heads) ||
      heads.length < 2 ||
      axisOf(concat, this.typeOf(heads[0]!).shape.length) !== 1 ||
      ints(concat, 'interleave')?.[0]
    )
      return undefined;
    const H = heads.length;
    // Each head: one chunk, or its chunks concatenated on the query axis.
    const chunks = heads.map((hv) => {
      const cat = this.opOf(hv, 'concat');
      return cat && axisOf(cat, 4) === 3 && Array.isArray(cat.inputs.values) ? cat.inputs.values : [hv];
    });
    const n = chunks[0]!.length;
    if (chunks.some((c) => c.length !== n)) return undefined;
    const parts: { k: Wide; q: Wide; v: Wide; mask: string }[] = [];
    for (let j = 0; j < n; j++) {
      const cs = chunks.map((c) => this.core(c[j]!));
      if (cs.some((c) => !c)) return undefined;
      const per = cs as Core[];
      if (per.some((c) => this.structure(c.mask) !== this.structure(per[0]!.mask))) return undefined;
      const [k, q, v] = [
        this.widen(per.map((c) => c.k)),
        this.widen(per.map((c) => c.q)),
        this.widen(per.map((c) => c.v)),
      ];
      if (!k || !q || !v || k.axis !== 3 || q.axis !== 1 || v.axis !== 1) return undefined;
      parts.push({ k: this.channelsFirst(k), q, v, mask: per[0]!.mask });
    }
    const out = concat.outputs[0]!;
    const C = out.type.shape[1];
    const X = out.type.shape[2];
    if (typeof C !== 'number' || typeof X !== 'number' || C % H !== 0 || typeof out.type.shape[0] !== 'number')
      return undefined;
    const channels = (w: Wide) => this.typeOf(w.v).shape[w.axis];
    if (parts.some((p) => channels(p.k) !== C || channels(p.q) !== C || channels(p.v) !== C)) return undefined;
    return { parts, H, C, X };
  }

  // One query chunk of one head: out = einsum(v, softmax(einsum(k, q) + mask)).
  private core(out: string): Core | undefined {
    const weighted = this.opOf(out, 'einsum');
    if (!weighted || text(weighted, 'equation') !== WEIGHTED) return undefined;
    const [v, probs] = weighted.inputs.values as string[];
    const sm = this.opOf(probs!, 'softmax');
    if (!sm || axisOf(sm, 4) !== 1 || typeof sm.inputs.x !== 'string') return undefined;
    const add = this.opOf(sm.inputs.x, 'add');
    if (!add || typeof add.inputs.x !== 'string' || typeof add.inputs.y !== 'string') return undefined;
    const isScores = (s: string) => {
      const e = this.opOf(s, 'einsum');
      return e !== undefined && text(e, 'equation') === SCORES;
    };
    const [scores, mask] = isScores(add.inputs.x)
      ? [add.inputs.x, add.inputs.y]
      : isScores(add.inputs.y)
        ? [add.inputs.y, add.inputs.x]
        : [];
    if (!scores || !mask) return undefined;
    const [k, q] = this.producer.get(scores)!.inputs.values as string[];
    return { k: k!, q: q!, v: v!, mask };
  }

  // The values of H heads (one per head) as one value over all channels, or undefined when they are not
  // per-head cuts of shared values. Head h must hold channels h*D .. (h+1)*D of the widened value.
  private widen(vs: string[]): Wide | undefined {
    if (vs.every((v) => v === vs[0])) return undefined;
    const ops = vs.map((v) => this.producer.get(v));
    if (ops[0]?.op === 'split') return ops.every((o) => o === ops[0]) ? this.widenSplit(ops[0], vs) : undefined;
    if (ops.some((o) => !o || o.op !== ops[0]!.op || o.outputs.length !== 1)) return undefined;
    const os = ops as Op[];
    switch (os[0]!.op) {
      case 'slice_by_index':
        return this.widenSlices(os);
      case 'transpose': {
        const xs = os.map((o) => o.inputs.x);
        const perm = ints(os[0]!, 'perm');
        if (!perm || !sameParams(os, 'x') || xs.some((x) => typeof x !== 'string')) return undefined;
        const inner = this.widen(xs as string[]);
        if (!inner) return undefined;
        return {
          v: this.emit('transpose', { ...os[0]!.inputs, x: inner.v }, `${os[0]!.name}_heads`),
          axis: perm.indexOf(inner.axis),
        };
      }
      case 'concat': {
        const tuples = os.map((o) => o.inputs.values);
        if (
          !tuples.every((t) => Array.isArray(t) && t.length === (tuples[0] as string[]).length) ||
          !sameParams(os, 'values')
        )
          return undefined;
        if (os[0]!.inputs.interleave !== undefined && ints(os[0]!, 'interleave')?.[0]) return undefined;
        const parts = (tuples[0] as string[]).map((_, i) => this.widen(tuples.map((t) => (t as string[])[i]!)));
        const axis = axisOf(os[0]!, this.typeOf(vs[0]!).shape.length);
        if (parts.some((p) => !p || p.axis !== parts[0]!.axis || p.axis === axis)) return undefined;
        return {
          v: this.emit('concat', { ...os[0]!.inputs, values: parts.map((p) => p!.v) }, `${os[0]!.name}_heads`),
          axis: parts[0]!.axis,
        };
      }
      default:
        return undefined;
    }
  }

  // The H outputs of one split into equal parts, head h's the h-th: the split's input, cut on its axis.
  private widenSplit(op: Op, vs: string[]): Wide | undefined {
    const x = op.inputs.x;
    if (typeof x !== 'string' || op.outputs.length !== vs.length || op.outputs.some((o, h) => o.name !== vs[h]))
      return undefined;
    const shape = this.typeOf(x).shape;
    const axis = axisOf(op, shape.length);
    const sizes = op.outputs.map((o) => (axis === undefined ? undefined : o.type.shape[axis]));
    if (axis === undefined || sizes.some((d) => typeof d !== 'number' || d !== sizes[0])) return undefined;
    return { v: x, axis };
  }

  // Per-head slices: channel cuts of one shared value (h*D .. (h+1)*D on one axis), or the same cut of per-head values.
  private widenSlices(os: Op[]): Wide | undefined {
    const H = os.length;
    const xs = os.map((o) => o.inputs.x);
    if (xs.some((x) => typeof x !== 'string')) return undefined;
    const rs = os.map((o) => this.ranges(o));
    if (rs.some((r) => !r)) return undefined;
    const r = rs as ([number, number] | 'all')[][];
    if (xs.every((x) => x === xs[0])) {
      // A channel cut of one shared value: the heads differ on exactly one axis, h*D .. (h+1)*D.
      const x = xs[0] as string;
      const differ = r[0]!
        .map((_, k) => r.some((rh) => JSON.stringify(rh[k]) !== JSON.stringify(r[0]![k])))
        .flatMap((d, k) => (d ? [k] : []));
      if (differ.length !== 1) return undefined;
      const a = differ[0]!;
      const C = this.typeOf(x).shape[a];
      if (typeof C !== 'number' || C % H !== 0) return undefined;
      const D = C / H;
      if (r.some((rh, h) => JSON.stringify(rh[a]) !== JSON.stringify([h * D, (h + 1) * D]))) return undefined;
      const rest = r[0]!.map((rk, k) => (k === a ? 'all' : rk));
      if (rest.every((rk) => rk === 'all')) return { v: x, axis: a };
      const op0 = os[0]!;
      const set = (key: string, v: number, fill: number) => {
        const l = ints(op0, key) ?? this.typeOf(x).shape.map(() => fill);
        return l.map((e, k) => (k === a ? v : e));
      };
      const inputs: Record<string, Arg> = {
        ...op0.inputs,
        x,
        begin: i32(set('begin', 0, 0)),
        end: i32(set('end', 0, 0)),
      };
      inputs.begin_mask = literal('bool', set('begin_mask', 1, 0).map(Boolean));
      inputs.end_mask = literal('bool', set('end_mask', 1, 0).map(Boolean));
      return {
        v: this.once(`slice|${x}|${JSON.stringify(rest)}`, () =>
          this.emit('slice_by_index', inputs, `${op0.name}_heads`),
        ),
        axis: a,
      };
    }
    // The same cut of per-head values, away from their channel axis.
    const inner = this.widen(xs as string[]);
    if (!inner || !sameParams(os, 'x') || r[0]![inner.axis] !== 'all') return undefined;
    return {
      v: this.emit('slice_by_index', { ...os[0]!.inputs, x: inner.v }, `${os[0]!.name}_heads`),
      axis: inner.axis,
    };
  }

  // Each axis's range [b, e) of a stride-1 slice_by_index without squeezes ('all' for the whole axis).
  private ranges(op: Op): ([number, number] | 'all')[] | undefined {
    const shape = this.typeOf(op.inputs.x as string).shape;
    const [begin, end] = [ints(op, 'begin'), ints(op, 'end')];
    if (!begin || !end) return undefined;
    const flag = (key: string) => ints(op, key) ?? shape.map(() => 0);
    const [bm, em, sq, st] = [
      flag('begin_mask'),
      flag('end_mask'),
      flag('squeeze_mask'),
      ints(op, 'stride') ?? shape.map(() => 1),
    ];
    if (sq.some(Boolean) || st.some((s) => s !== 1)) return undefined;
    const out: ([number, number] | 'all')[] = [];
    for (let k = 0; k < shape.length; k++) {
      const d: Dim = shape[k]!;
      const norm = (v: number) => (typeof d === 'number' ? Math.min(Math.max(v < 0 ? v + d : v, 0), d) : v);
      const b = bm[k] ? 0 : norm(begin[k]!);
      const e = em[k] ? d : norm(end[k]!);
      if (b === 0 && e === d) out.push('all');
      else if (typeof e === 'number' && b >= 0 && e >= 0) out.push([b, e]);
      else return undefined;
    }
    return out;
  }

  // Keys (1, K, X, C) that are a transpose of (1, C, X, K) are read before it, in the values' layout.
  private channelsFirst(k: Wide): Wide {
    const t = this.opOf(k.v, 'transpose');
    return t && typeof t.inputs.x === 'string' && JSON.stringify(ints(t, 'perm')) === '[0,3,2,1]'
      ? { v: t.inputs.x, axis: 1 }
      : k;
  }

  // Same value, or the same ops over the same values (a mask sliced once per head).
  private structure(v: string): string {
    const known = this.structureKeys.get(v);
    if (known !== undefined) return known;
    const op = this.producer.get(v);
    const key = !op
      ? v
      : `${op.op}(${Object.entries(op.inputs)
          .map(
            ([k, a]) =>
              `${k}=${typeof a === 'string' ? this.structure(a) : Array.isArray(a) ? a.map((x) => this.structure(x)).join(',') : JSON.stringify(a)}`,
          )
          .join(';')})#${op.outputs.findIndex((o) => o.name === v)}`;
    this.structureKeys.set(v, key);
    return key;
  }

  private typeOf(v: string): TensorType {
    return this.types.get(v) ?? internal(`value "${v}" has no type`);
  }

  private opOf(v: string, type: string): Op | undefined {
    const op = this.producer.get(v);
    return op?.op === type ? op : undefined;
  }

  private once(key: string, make: () => string): string {
    return this.memo.get(key) ?? (this.memo.set(key, make()), this.memo.get(key)!);
  }

  /** Adds an op (its output named `name`, or `base` made unique) with the registry's type inference; returns its output. */
  private emit(op: string, inputs: Record<string, Arg>, base: string, name?: string): string {
    let n = name ?? base;
    for (let k = 1; !name && this.taken.has(n); k++) n = `${base}_${k}`;
    this.taken.add(n);
    const def = opDef(op) ?? internal(`op ${op} is not in the registry`);
    const [type] = def.infer(
      inferArgs(
        op,
        `${op} "${n}"`,
        inputTypesOf(inputs, (v) => this.typeOf(v)),
      ),
    );
    this.types.set(n, type!);
    const made: Op = { op, name: n, inputs, outputs: [{ name: n, type: type! }] };
    this.producer.set(n, made);
    this.added.push(made);
    return n;
  }
}

// The ops whose outputs something reads (the graph's outputs, its taps, or a live op), in order.
function live(graph: Graph, ops: Op[]): Op[] {
  const needed = new Set([...graph.outputs, ...graph.taps.values()]);
  const keep: boolean[] = [];
  for (let i = ops.length - 1; i >= 0; i--) {
    const op = ops[i]!;
    keep[i] = op.outputs.some((o) => needed.has(o.name));
    if (!keep[i]) continue;
    for (const a of Object.values(op.inputs)) {
      if (typeof a === 'string') needed.add(a);
      else if (Array.isArray(a)) for (const v of a) needed.add(v);
    }
  }
  return ops.filter((_, i) => keep[i]);
}

function internal(message: string): never {
  throw new ModernBertError('INTERNAL', message);
}
