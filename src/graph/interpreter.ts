// Runs a Graph on the CPU: ops in order, values freed after their last use, float outputs rounded to
// float16 in the float16 modes. Shapes are taken from the data, so graphs with symbolic lengths run as is.

import { ModernBertError } from '../errors.js';
import { isLiteral, numel, type Arg, type Graph, type Literal, type Op } from '../ir/graph.js';
import { numericsFor, type Numerics, type Precision } from '../runtime/numerics.js';
import {
  inferArgs,
  inputDefault,
  inputTypesOf,
  isConstexpr,
  opDef,
  softmaxWithBias,
  type OpArgs,
} from '../ops/index.js';
import { sharedFloat32 } from '../io/weights.js';
import { ARENA_MIN, blockOf, releaseBlock, trimBlock, withArena, type Block } from '../runtime/arena.js';
import { F16_EXACT, shareable, type RtTensor } from '../runtime/tensor.js';
import { planAttention, runAttention, type AttentionGroup } from './fused-attention.js';

export interface RunOptions {
  /** Values to return besides the graph outputs (for example tapped hidden states). */
  keep?: string[];
  /** Called after each op with (done, total). */
  onOp?: (done: number, total: number) => void;
}

/** A graph prepared to run at one precision; constants are loaded once and kept. */
export class Interpreter {
  readonly num: Numerics;
  private readonly consts = new Map<string, RtTensor>();
  private readonly lastUse = new Map<string, number>();
  /** `add` ops whose only reader is the next op, a softmax, by index, with the softmax axis: run as one. */
  private readonly fusedAdds = new Map<number, number>();
  /** Attention's einsum, add, softmax, einsum groups (fused-attention.ts), by first op: one kernel in float32. */
  readonly attention: Map<number, AttentionGroup>;

  constructor(
    readonly graph: Graph,
    precision: Precision = 'fp32',
  ) {
    this.num = numericsFor(precision);
    const readers = new Map<string, number>();
    graph.ops.forEach((op, i) => {
      for (const a of Object.values(op.inputs)) {
        for (const v of refs(a)) {
          this.lastUse.set(v, i);
          readers.set(v, (readers.get(v) ?? 0) + 1);
        }
      }
    });
    this.attention = planAttention(graph, readers);
    graph.ops.forEach((op, i) => {
      const next = graph.ops[i + 1];
      const out = op.outputs[0]!.name;
      const axis =
        next?.inputs.axis === undefined
          ? [-1]
          : isLiteral(next.inputs.axis)
            ? (next.inputs.axis.value as number[])
            : [];
      if (
        op.op === 'add' &&
        next?.op === 'softmax' &&
        next.inputs.x === out &&
        axis.length === 1 &&
        readers.get(out) === 1 &&
        !graph.outputs.includes(out) &&
        ![...graph.taps.values()].includes(out)
      ) {
        this.fusedAdds.set(i, axis[0]!);
      }
    });
  }

  /** Runs the graph; returns the outputs and the values named in `keep`. */
  async run(inputs: Record<string, RtTensor>, opts: RunOptions = {}): Promise<Map<string, RtTensor>> {
    // Activations live in the run's arena; what the run returns is copied out of it.
    return withArena(() => this.runOps(inputs, opts));
  }

  private async runOps(inputs: Record<string, RtTensor>, opts: RunOptions): Promise<Map<string, RtTensor>> {
    const env = new Env();
    for (const inp of this.graph.inputs) {
      const t = inputs[inp.name];
      if (!t) throw new ModernBertError('BAD_INPUT', `missing graph input "${inp.name}"`, { input: inp.name });
      checkInput(inp.name, inp.type.shape, t);
      env.setInput(
        inp.name,
        this.num.half && t.data instanceof Float32Array ? { ...t, data: this.num.round(Float32Array.from(t.data)) } : t,
      );
    }
    const keep = new Set([...this.graph.outputs, ...(opts.keep ?? [])]);
    const total = this.graph.ops.length;
    for (let i = 0; i < total; i++) {
      const op = this.graph.ops[i]!;
      const impl = opDef(op.op)?.run;
      if (!impl)
        throw new ModernBertError('UNSUPPORTED', `op "${op.op}" (${op.name}) is not supported by the interpreter`, {
          op: op.name,
        });
      let outs: RtTensor[];
      if (isConstexpr(op.op)) {
        // Compressed weights: decompressed once, then held like the other constants.
        if (!this.consts.has(op.outputs[0]!.name)) {
          outs = await impl(this.args(op, env));
          op.outputs.forEach((o, k) => {
            const t = outs[k]!;
            const c =
              t.data instanceof Float32Array
                ? { ...t, data: this.num.half ? this.num.round(shareable(t.data)) : shareable(t.data) }
                : t;
            this.consts.set(o.name, c);
          });
        }
        opts.onOp?.(i + 1, total);
        continue;
      }
      const group = this.num.precision === 'fp32' ? this.attention.get(i) : undefined;
      if (group && !group.inner.some((n) => keep.has(n))) {
        const value = (n: string) => env.get(n) ?? this.constant(n);
        const [k, q, mask, v] = [value(group.k), value(group.q), value(group.mask), value(group.v)];
        const out = k && q && mask && v ? await runAttention(k, q, mask, v) : undefined;
        if (out) {
          env.set(this.graph.ops[i + 3]!.outputs[0]!.name, out);
          for (let j = i; j < i + 4; j++) {
            this.free(this.graph.ops[j]!, j, env, keep);
            opts.onOp?.(j + 1, total);
          }
          i += 3;
          continue;
        }
      }
      const fused = this.fusedAdds.get(i);
      if (fused !== undefined && !keep.has(op.outputs[0]!.name) && this.fusable(op, fused, env)) {
        const a = this.args(op, env);
        outs = [softmaxWithBias(a.t('x'), a.t('y'), fused, this.num, `softmax "${this.graph.ops[i + 1]!.name}"`)];
        if (this.num.half) this.num.round(outs[0]!.data as Float32Array);
        this.free(op, i, env, keep);
        opts.onOp?.(i + 1, total);
        i++;
        const next = this.graph.ops[i]!;
        env.set(next.outputs[0]!.name, outs[0]!);
        this.free(next, i, env, keep);
        opts.onOp?.(i + 1, total);
        continue;
      }
      outs = await impl(this.args(op, env));
      if (outs.length !== op.outputs.length)
        throw new ModernBertError(
          'INTERNAL',
          `${op.op} "${op.name}" returned ${outs.length} outputs, expected ${op.outputs.length}`,
        );
      op.outputs.forEach((o, k) => {
        const t = outs[k]!;
        // Ops that only relabel a shape, and contiguous slices, share their input's (already rounded) data.
        if (this.num.half && t.data instanceof Float32Array && !sharesInput(op, t, env)) this.num.round(t.data);
        env.set(o.name, t);
      });
      this.free(op, i, env, keep);
      opts.onOp?.(i + 1, total);
    }
    const result = new Map<string, RtTensor>();
    for (const k of keep) {
      const t = env.get(k) ?? this.consts.get(k);
      if (!t) throw new ModernBertError('INTERNAL', `value "${k}" was not computed`);
      result.set(k, blockOf(t.data) ? { ...t, data: t.data.slice() } : t);
    }
    return result;
  }

  /** Frees the inputs of op i that no later op reads. */
  private free(op: Op, i: number, env: Map<string, RtTensor>, keep: Set<string>): void {
    for (const a of Object.values(op.inputs)) {
      for (const v of refs(a)) if (this.lastUse.get(v) === i && !keep.has(v)) env.delete(v);
    }
  }

  /** Whether add's operands fit the fused kernel: floats of equal shapes, or one mask value per key of a softmax over axis 1. */
  private fusable(add: Op, axis: number, env: Map<string, RtTensor>): boolean {
    const args = this.args(add, env);
    const x = args.t('x');
    const y = args.t('y');
    if (!(x.data instanceof Float32Array) || !(y.data instanceof Float32Array)) return false;
    if (y.shape.length === x.shape.length && y.shape.every((d, k) => d === x.shape[k])) return true;
    const ax = axis < 0 ? axis + x.shape.length : axis;
    return ax === 1 && x.shape.length === 4 && y.shape.length === 4 && y.data.length === x.shape[1];
  }

  private constant(name: string): RtTensor | undefined {
    let t = this.consts.get(name);
    if (t) return t;
    const c = this.graph.consts.get(name);
    if (!c) return undefined;
    const shape = c.type.shape as number[];
    let data = c.load();
    if (data instanceof Int8Array) data = Int32Array.from(data); // int8 storage (compressed weights) runs as int32
    if (data.length !== numel(shape)) {
      throw new ModernBertError(
        'SHAPE_MISMATCH',
        `constant "${name}" holds ${data.length} values for shape [${shape.join(', ')}]`,
        { const: name },
      );
    }
    if (data instanceof Float32Array) {
      // Rounded copies for the float16 modes are as long-lived as the originals, so they are shared too.
      if (this.num.half && !F16_EXACT.has(data)) {
        const copy = sharedFloat32(data.length);
        copy.set(data);
        data = this.num.round(copy);
      } else data = shareable(data);
    }
    t = { dtype: c.type.dtype, shape, data };
    this.consts.set(name, t);
    return t;
  }

  private args(op: Op, env: Map<string, RtTensor>): OpArgs {
    return opArgs(op, this.num, (name) => env.get(name) ?? this.constant(name));
  }
}

/**
 * What an op's kernel reads: its inputs through `value` (env, then constants), literals as tensors, and an
 * absent optional input as the default its signature declares. The one construction, shared with benches
 * that run ops one by one (bench/fidelity.mjs).
 */
export function opArgs(op: Op, num: Numerics, value: (name: string) => RtTensor | undefined): OpArgs {
  const read = (name: string): RtTensor => {
    const t = value(name);
    if (!t) throw new ModernBertError('INTERNAL', `${op.op} "${op.name}" reads "${name}", which is not available`);
    return t;
  };
  const arg = (key: string): Arg => {
    const a = Object.hasOwn(op.inputs, key) ? op.inputs[key] : undefined;
    if (a !== undefined) return a;
    const d = inputDefault(op.op, key);
    if (d === undefined)
      throw new ModernBertError('BAD_INPUT', `${op.op} "${op.name}" has no input "${key}"`, { op: op.name });
    return typeof d === 'function' ? d(inferArgs(op.op, `${op.op} "${op.name}"`, inputTypesOf(op.inputs, read))) : d;
  };
  const tensor = (key: string): RtTensor => {
    const a = arg(key);
    if (isLiteral(a)) return literalTensor(a);
    if (Array.isArray(a)) throw new ModernBertError('BAD_INPUT', `${op.op} "${op.name}": input "${key}" is a tuple`);
    return read(a);
  };
  const list = (key: string): number[] => Array.from(tensor(key).data);
  return {
    op,
    num,
    has: (key) => Object.hasOwn(op.inputs, key) && op.inputs[key] !== undefined,
    t: tensor,
    tuple: (key) => {
      const a = arg(key);
      return Array.isArray(a) ? a.map(read) : [tensor(key)];
    },
    ints: list,
    nums: list,
    bools: (key) => list(key).map((v) => v !== 0),
    str: (key) => {
      const a = arg(key);
      if (isLiteral(a) && typeof a.value === 'string') return a.value;
      throw new ModernBertError('BAD_INPUT', `${op.op} "${op.name}": input "${key}" must be a string`);
    },
  };
}

/**
 * The values of one run. Each arena block that ops wrote (runtime/arena.ts) is tracked with the ranges of
 * the values that hold it (views included). When the last one is deleted, the block goes back for the next
 * op; when a view dies and leaves a long part of the block that no live value covers, that part goes back
 * (the 75 MB QKV output of a layer at 8,192 tokens otherwise stays whole while only V, a third of it, is
 * read). Other arrays (inputs, constants, short ones) are left to the garbage collector.
 */
class Env extends Map<string, RtTensor> {
  private readonly holders = new Map<Block, [number, number][]>();

  /** Sets a graph input: its buffer belongs to the caller. */
  setInput(name: string, t: RtTensor): void {
    super.set(name, t);
  }

  override set(name: string, t: RtTensor): this {
    const b = blockOf(t.data);
    if (b !== undefined) {
      const list = this.holders.get(b) ?? [];
      list.push(range(t.data));
      this.holders.set(b, list);
    }
    return super.set(name, t);
  }

  override delete(name: string): boolean {
    const t = super.get(name);
    if (t === undefined || !super.delete(name)) return false;
    const b = blockOf(t.data);
    if (b === undefined) return true;
    const list = this.holders.get(b) ?? [];
    const [off, len] = range(t.data);
    const k = list.findIndex(([o, n]) => o === off && n === len);
    if (k >= 0) list.splice(k, 1);
    this.holders.delete(b);
    if (list.length === 0) {
      releaseBlock(b);
      return true;
    }
    const keep = union(list);
    const freed = b.length - keep.reduce((n, [, l]) => n + l, 0);
    if (freed < ARENA_MIN) {
      this.holders.set(b, list);
      return true;
    }
    for (const nb of trimBlock(b, keep))
      this.holders.set(
        nb,
        list.filter(([o]) => o >= nb.offset && o < nb.offset + nb.length),
      );
    return true;
  }
}

/** The float range [offset in its buffer, length] of an array. */
function range(d: RtTensor['data']): [number, number] {
  return [d.byteOffset / d.BYTES_PER_ELEMENT, d.length];
}

/** The union of ranges, as sorted disjoint ranges. */
function union(ranges: readonly [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [o, n] of [...ranges].sort((p, q) => p[0] - q[0])) {
    const last = out[out.length - 1];
    if (last !== undefined && o <= last[0] + last[1]) last[1] = Math.max(last[1], o + n - last[0]);
    else out.push([o, n]);
  }
  return out;
}

function refs(a: Arg): string[] {
  if (typeof a === 'string') return [a];
  if (Array.isArray(a)) return a;
  return [];
}

/** Whether output t views one of op's inputs (the same arena block or, outside the arena, the same buffer). */
function sharesInput(op: Op, t: RtTensor, env: Map<string, RtTensor>): boolean {
  const key = (d: RtTensor['data']) => blockOf(d) ?? d.buffer;
  const out = key(t.data);
  for (const a of Object.values(op.inputs))
    for (const v of refs(a)) {
      const x = env.get(v);
      if (x !== undefined && key(x.data) === out) return true;
    }
  return false;
}

function literalTensor(l: Literal): RtTensor {
  if (typeof l.value === 'string') throw new ModernBertError('BAD_INPUT', 'a string literal is not a tensor');
  const vals = (l.value as (number | boolean)[]).map(Number);
  const dtype = l.dtype === 'string' ? 'fp32' : l.dtype;
  const data =
    dtype === 'fp32' || dtype === 'fp16'
      ? Float32Array.from(vals)
      : dtype === 'bool'
        ? Uint8Array.from(vals)
        : Int32Array.from(vals);
  return { dtype, shape: l.shape, data };
}

function checkInput(name: string, declared: (number | string)[], t: RtTensor): void {
  const symbols = new Map<string, number>();
  const ok =
    t.shape.length === declared.length &&
    declared.every((d, i) => {
      const got = t.shape[i]!;
      if (typeof d === 'number') return d === got;
      const prev = symbols.get(d);
      symbols.set(d, got);
      return prev === undefined || prev === got;
    });
  if (!ok) {
    throw new ModernBertError(
      'SHAPE_MISMATCH',
      `input "${name}" has shape [${t.shape.join(', ')}], the model expects [${declared.join(', ')}]`,
      { input: name },
    );
  }
}
