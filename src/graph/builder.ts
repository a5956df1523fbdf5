// Builds a Graph op by op, as coremltools' MIL builder does: each op is looked up in the registry
// (src/ops/) at the graph's deployment target, its absent optional inputs get the defaults coremltools
// writes, and every output is typed by the op's own inference, so that what the model definition writes
// is a complete, typed MIL program.

import { ModernBertError } from '../errors.js';
import {
  literal,
  type Arg,
  type Const,
  type Dim,
  type DType,
  type Graph,
  type Literal,
  type RowSlice,
  type StoredTensor,
  type TensorData,
  type TensorType,
} from '../ir/graph.js';
import { inferArgs, inputTypesOf, opDef, opSignature, opVersions, type InputTypes } from '../ops/index.js';
import { DEFAULT_TARGET, type Target } from '../ir/target.js';

/** A value in the graph under construction (its name). */
export type Val = string;

/** Typed, named construction of a Graph. */
export class GraphBuilder {
  readonly graph: Graph = { inputs: [], consts: new Map(), ops: [], outputs: [], taps: new Map() };
  private readonly types = new Map<string, TensorType>();
  private readonly used = new Map<string, number>();

  readonly target: Target;

  /** `dtype` is the float type of activations and weights (fp16 for the Neural Engine); `target` picks each op's version. */
  constructor(
    readonly dtype: 'fp32' | 'fp16',
    target: Target = DEFAULT_TARGET,
  ) {
    this.target = target;
  }

  /** A graph input. */
  input(name: string, dtype: DType, shape: Dim[]): Val {
    this.define(name, { dtype, shape });
    this.graph.inputs.push({ name, type: { dtype, shape } });
    return name;
  }

  /** A named constant (weights), loaded on demand; float data is declared in the graph's float type; `weight`: the checkpoint tensor (or rows of it) it holds; `stored`: where its values lie in a file. */
  weight(
    name: string,
    shape: number[],
    load: () => TensorData,
    dtype: DType = this.dtype,
    weight?: string | RowSlice,
    stored?: StoredTensor,
  ): Val {
    const n = this.unique(name);
    const held = weight === undefined ? {} : typeof weight === 'string' ? { weight } : { rowsOf: weight };
    const c: Const = { name: n, type: { dtype, shape }, load, ...held, ...(stored ? { stored } : {}) };
    this.graph.consts.set(n, c);
    this.define(n, c.type);
    return n;
  }

  /** Appends an op with one output named after `name`; types are inferred unless given. */
  op(op: string, inputs: Record<string, Arg>, name: string = op, types?: TensorType[]): Val {
    return this.opN(op, inputs, name, types)[0]!;
  }

  /** Appends an op with several outputs (split), named `name_0`, `name_1`, ... */
  opN(op: string, inputs: Record<string, Arg>, name: string = op, types?: TensorType[]): Val[] {
    const opName = this.unique(name);
    const def = opDef(op);
    const sig = opSignature(op, this.target);
    if (!def || !sig) {
      const first = opVersions(op)[0];
      throw new ModernBertError(
        'UNSUPPORTED',
        `op ${op} (${opName}) is ${first ? `not available before ${first.since} (target ${this.target})` : 'not in the op registry'}`,
        { op: opName },
      );
    }
    for (const k of Object.keys(inputs)) {
      if (!sig.inputs.some((i) => i.name === k))
        throw new ModernBertError('INTERNAL', `op ${op} (${opName}) has no input "${k}" at ${this.target}`);
    }
    const label = `${op} "${opName}"`;
    const filled: Record<string, Arg> = { ...inputs };
    for (const i of sig.inputs) {
      if (filled[i.name] !== undefined || i.default === undefined) continue;
      filled[i.name] =
        typeof i.default === 'function' ? i.default(inferArgs(op, label, this.inputTypes(filled, opName))) : i.default;
    }
    inputs = filled;
    const outTypes = types ?? def.infer(inferArgs(op, label, this.inputTypes(inputs, opName)));
    const outputs = outTypes.map((type, k) => {
      const n = outTypes.length === 1 ? opName : this.unique(`${opName}_${k}`);
      this.define(n, type);
      return { name: n, type };
    });
    this.graph.ops.push({ op, name: opName, inputs, outputs });
    return outputs.map((o) => o.name);
  }

  /** Declares `v` a graph output under the name `as` (renames the value; it must not be used yet). */
  output(v: Val, as: string): Val {
    const op = this.graph.ops.find((o) => o.outputs.some((x) => x.name === v));
    if (!op) throw new ModernBertError('INTERNAL', `output ${v} is not produced by an op`);
    const out = op.outputs.find((x) => x.name === v)!;
    if (as !== v) {
      if (this.types.has(as)) throw new ModernBertError('INTERNAL', `value name ${as} is taken`);
      out.name = as;
      this.types.set(as, this.types.get(v)!);
      this.types.delete(v);
      for (const [role, tapped] of this.graph.taps) if (tapped === v) this.graph.taps.set(role, as);
    }
    this.graph.outputs.push(as);
    return as;
  }

  private readonly fills = new Map<string, Val>();

  /**
   * A constant of `shape` holding `value` everywhere, one per shape and value in the graph however many ops
   * take it (as coremltools' const_deduplication pass leaves identical constants): the banded layers' padding.
   */
  filled(name: string, shape: number[], value: number): Val {
    const key = `${shape.join('x')}:${value}`;
    let v = this.fills.get(key);
    if (v === undefined) {
      const n = shape.reduce((p, q) => p * q, 1);
      v = this.weight(name, shape, () => new Float32Array(n).fill(value));
      this.fills.set(key, v);
    }
    return v;
  }

  /** Records an internal value under a role (for example 'hidden_states.3') so it can be read back. */
  tap(role: string, v: Val): Val {
    this.graph.taps.set(role, v);
    return v;
  }

  /** The type of a value. */
  type(v: Val): TensorType {
    const t = this.types.get(v);
    if (!t) throw new ModernBertError('INTERNAL', `unknown value ${v}`);
    return t;
  }

  /** x[..., begin:end, ...] along one axis: slice_by_index with both masks on every other axis, as coremltools writes `x[:, a:b]`. */
  slice(x: Val, axis: number, begin: number, end: number | 'end', name: string): Val {
    const rank = this.type(x).shape.length;
    const at = (v: number) => Array.from({ length: rank }, (_, k) => (k === axis ? v : 0));
    const mask = (onAxis: boolean) => bool(Array.from({ length: rank }, (_, k) => k !== axis || onAxis));
    return this.op(
      'slice_by_index',
      {
        x,
        begin: i32(at(begin)),
        end: i32(at(end === 'end' ? 0 : end)),
        begin_mask: mask(false),
        end_mask: mask(end === 'end'),
      },
      name,
    );
  }

  /** x cut along one axis into `parts` equal pieces, or pieces of the given sizes: one split op, its outputs `name_0`, ... */
  split(x: Val, axis: number, parts: number | number[], name: string): Val[] {
    const d = this.type(x).shape[axis];
    const sizes = typeof parts === 'number' && typeof d === 'number' ? Array<number>(parts).fill(d / parts) : parts;
    if (!Array.isArray(sizes) || sizes.some((s) => !Number.isInteger(s)))
      throw new ModernBertError(
        'INTERNAL',
        `split ${name}: cannot cut axis ${axis} of ${x} (${String(d)}) into ${String(parts)}`,
      );
    return this.opN('split', { x, split_sizes: i32(sizes), axis: i32(axis) }, name);
  }

  /** A float literal in the graph's float type. */
  f(value: number | number[]): Literal {
    return literal(this.dtype, value);
  }

  private define(name: string, type: TensorType): void {
    if (this.types.has(name)) throw new ModernBertError('INTERNAL', `value ${name} defined twice`);
    this.types.set(name, type);
  }

  private unique(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_]/g, '_');
    const k = this.used.get(clean) ?? 0;
    this.used.set(clean, k + 1);
    return k === 0 && !this.types.has(clean) ? clean : `${clean}_${k}`;
  }

  private inputTypes(inputs: Record<string, Arg>, opName: string): InputTypes {
    return inputTypesOf(inputs, (v) => this.typeOrFail(v, opName));
  }

  private typeOrFail(v: string, opName: string): TensorType {
    const t = this.types.get(v);
    if (!t) throw new ModernBertError('INTERNAL', `op ${opName} uses undefined value ${v}`);
    return t;
  }
}

/** Int32 literal (scalar or vector). */
export const i32 = (v: number | number[]): Literal => literal('int32', v);
/** Bool literal (scalar or vector). */
export const bool = (v: boolean | boolean[]): Literal => literal('bool', v);
/** String literal. */
export const str = (v: string): Literal => literal('string', v);
