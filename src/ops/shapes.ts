// Shape rules shared by the op definitions' type inference (coremltools' types/type_mapping.py and
// ops/defs/_utils.py: broadcast_shapes, promoted types, reshape with -1, einsum), and InferArgs over the
// input types that the graph builder and the package reader know.

import { ModernBertError } from '../errors.js';
import { isLiteral, type Arg, type Dim, type Literal, type TensorType } from '../ir/graph.js';
import { inputDefault, type InferArgs } from './registry.js';

/** Types of an op's inputs: a tensor type per value input, a list for tuples, the literal itself for immediates. */
export type InputTypes = Record<string, TensorType | TensorType[] | Literal>;

/** The InputTypes of an op's arguments: literals as they are, values (and tuple elements) by `typeOf`. */
export function inputTypesOf(inputs: Record<string, Arg>, typeOf: (value: string) => TensorType): InputTypes {
  const out: InputTypes = {};
  for (const [k, a] of Object.entries(inputs)) {
    if (isLiteral(a)) out[k] = a;
    else if (Array.isArray(a)) out[k] = a.map(typeOf);
    else out[k] = typeOf(a);
  }
  return out;
}

/** A negative axis counted from the end. */
export const normAxis = (a: number, rank: number): number => (a < 0 ? a + rank : a);

/** InferArgs over known input types; absent optional inputs read as the op's declared default. */
export function inferArgs(op: string, label: string, inputs: InputTypes): InferArgs {
  const fail = (message: string): never => {
    throw new ModernBertError('SHAPE_MISMATCH', `${label}: ${message}`, { op: label });
  };
  const own = (key: string) => (Object.hasOwn(inputs, key) ? inputs[key] : undefined);
  const literal = (key: string): Literal | undefined => {
    const v = own(key);
    if (v !== undefined) return isLiteral(v as Arg) ? (v as Literal) : undefined;
    const d = inputDefault(op, key);
    return d === undefined ? undefined : typeof d === 'function' ? d(args) : d;
  };
  const values = (key: string): (number | boolean)[] => {
    const l = literal(key);
    if (!l) return fail(`input "${key}" must be a compile-time constant`);
    if (typeof l.value === 'string') return fail(`input "${key}" must be numeric`);
    return l.value;
  };
  const args: InferArgs = {
    label,
    has: (key) => own(key) !== undefined,
    t(key) {
      const v = own(key) ?? literal(key);
      if (v === undefined) return fail(`missing input "${key}"`);
      if (Array.isArray(v)) return fail(`input "${key}" must be one tensor, not a tuple`);
      if (isLiteral(v as Arg)) {
        const l = v as Literal;
        if (l.dtype === 'string') return fail(`input "${key}" must be a tensor, not a string`);
        return { dtype: l.dtype, shape: l.shape };
      }
      return v as TensorType;
    },
    tuple(key) {
      const v = own(key);
      if (!Array.isArray(v) || v.length === 0) return fail(`input "${key}" must be a non-empty tuple`);
      return v;
    },
    literal,
    ints: (key) => values(key).map(Number),
    bools: (key) => values(key).map((v) => v === true || v === 1),
    str(key) {
      const l = literal(key);
      if (!l || typeof l.value !== 'string') return fail(`input "${key}" must be a string`);
      return l.value;
    },
    fail,
  };
  return args;
}

/** Broadcasts shapes (numpy rules, coremltools' broadcast_shapes); symbols broadcast only against 1 or themselves. */
export function broadcastShapes(a: readonly Dim[], b: readonly Dim[], fail: (m: string) => never): Dim[] {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    if (da === db || db === 1) out.push(da);
    else if (da === 1) out.push(db);
    else fail(`shapes [${a.join(', ')}] and [${b.join(', ')}] are not broadcastable`);
  }
  return out;
}

/** Product of a shape's dims, as a number times the list of symbols. */
function factor(shape: readonly Dim[]): { n: number; syms: string[] } {
  let n = 1;
  const syms: string[] = [];
  for (const d of shape) typeof d === 'number' ? (n *= d) : syms.push(d);
  return { n, syms };
}

/** The shape of reshape(x, shape): 0 copies x's dim (iOS15 reshape), -1 is inferred (also from one symbol). */
export function reshapeShape(x: readonly Dim[], shape: readonly number[], fail: (m: string) => never): Dim[] {
  const inF = factor(x);
  const out: Dim[] = shape.map((d, i) => (d === 0 ? x[i]! : d));
  const known = factor(out.filter((d) => d !== -1));
  const minus = shape.indexOf(-1);
  const text = `cannot reshape [${x.join(', ')}] to [${shape.join(', ')}]`;
  if (shape.filter((d) => d === -1).length > 1) fail(`${text}: more than one -1`);
  if (minus < 0) {
    if (inF.n !== known.n || inF.syms.sort().join() !== known.syms.sort().join()) fail(text);
    return out;
  }
  const rest = [...inF.syms];
  for (const s of known.syms) {
    const k = rest.indexOf(s);
    if (k < 0) fail(text);
    rest.splice(k, 1);
  }
  if (rest.length === 0) {
    if (inF.n % known.n !== 0) fail(text);
    out[minus] = inF.n / known.n;
  } else if (rest.length === 1 && inF.n === known.n) {
    out[minus] = rest[0]!;
  } else {
    fail(`cannot infer -1 of [${shape.join(', ')}] from symbolic shape [${x.join(', ')}]`);
  }
  return out;
}

/** Labels of a two-operand einsum equation "ab,bc->ac". */
export function parseEinsum(eq: string, fail: (m: string) => never): [string, string, string] {
  const m = /^([a-z]+),([a-z]+)->([a-z]+)$/.exec(eq);
  if (!m) return fail(`unsupported einsum equation "${eq}"`);
  return [m[1]!, m[2]!, m[3]!];
}

/** Output shape of a two-operand einsum: each label's size, broadcasting 1s. */
export function einsumShape(eq: string, a: readonly Dim[], b: readonly Dim[], fail: (m: string) => never): Dim[] {
  const [la, lb, lo] = parseEinsum(eq, fail);
  const dims = new Map<string, Dim>();
  const bind = (labels: string, shape: readonly Dim[]) => {
    if (labels.length !== shape.length) fail(`equation "${eq}" does not fit rank ${shape.length}`);
    [...labels].forEach((l, i) => {
      const d = shape[i]!;
      const prev = dims.get(l);
      if (prev === undefined || prev === 1) dims.set(l, d);
      else if (d !== 1 && d !== prev) fail(`label ${l} is ${prev} and ${d}`);
    });
  };
  bind(la, a);
  bind(lb, b);
  return [...lo].map((l) => dims.get(l) ?? fail(`output label ${l} is in no operand`));
}
