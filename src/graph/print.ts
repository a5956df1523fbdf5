// Prints a graph as MIL text in the style of coremltools' Program.__str__ (mil/program.py, block.py,
// operation.py, var.py), so that our programs and coremltools' program.mil.txt can be read and diffed
// side by side: const ops are not printed; a constant of at most 10 elements is printed as its value
// (Python syntax), a larger one as %name; inputs in the op signature's order.

import type { Arg, Dim, Graph, Literal, TensorType } from '../ir/graph.js';
import { isLiteral, numel } from '../ir/graph.js';
import { opVersions } from '../ops/index.js';

/** coremltools prints const values of at most this many elements inline (Operation.var_to_str). */
const MAX_INLINE = 10;
const SPACES = '  ';

export interface PrintOptions {
  /** Function name (default "main"). */
  functionName?: string;
  /** Opset shown after the function name (default "CoreML7"). */
  opset?: string;
}

/** Python's repr of a float: shortest round-trip digits, exponent form below 1e-4 and from 1e16, ".0" on integers. */
export function pyFloat(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, exp] = x.toExponential().split('e') as [string, string];
  const e = Number(exp);
  if (e < -4 || e >= 16) return `${mantissa}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  const fixed = x.toString();
  return fixed.includes('.') ? fixed : `${fixed}.0`;
}

/** The text of one element as Python prints it. */
function element(dtype: Literal['dtype'], v: number | boolean): string {
  if (dtype === 'bool') return v ? 'True' : 'False';
  if (dtype === 'fp16' || dtype === 'fp32') return pyFloat(Number(v));
  return String(Number(v));
}

/** Nested Python list text of flat values in row-major `shape` (a scalar for shape []). */
function nested(
  values: readonly (number | boolean)[],
  shape: readonly number[],
  dtype: Literal['dtype'],
  at = 0,
): string {
  if (shape.length === 0) return element(dtype, values[at]!);
  const [n, ...rest] = shape as [number, ...number[]];
  const stride = numel(rest);
  const items: string[] = [];
  for (let i = 0; i < n; i++) items.push(nested(values, rest, dtype, at + i * stride));
  return `[${items.join(', ')}]`;
}

/** A literal as Python prints it ("int16" for strings, -10000.0, [1, 1], True, ...). */
export function literalText(lit: Literal): string {
  if (typeof lit.value === 'string') return `"${lit.value}"`;
  return nested(lit.value, lit.shape, lit.dtype);
}

/** "(1, 64, 1, 32, fp16)(Tensor)", "(64,fp16)(Tensor)" or "(fp16)(Scalar)", as Var.shape_str/type_str print them. */
export function typeText(type: TensorType): string {
  const dims = type.shape.map((d: Dim) => String(d));
  let s = `(${dims.join(', ')}`;
  if (dims.length === 1) s += ',';
  else if (dims.length > 1) s += ', ';
  return `${s}${type.dtype})${dims.length === 0 ? '(Scalar)' : '(Tensor)'}`;
}

/** How an argument prints: %name, (%a, %b), or the value of a literal or small constant. */
function argText(graph: Graph, arg: Arg): string {
  if (Array.isArray(arg)) return `(${arg.map((a) => `%${a}`).join(', ')})`;
  if (isLiteral(arg)) return literalText(arg);
  const c = graph.consts.get(arg);
  if (c && c.type.shape.every((d) => typeof d === 'number') && numel(c.type.shape as number[]) <= MAX_INLINE) {
    const data = Array.from(c.load(), (v) => (c.type.dtype === 'bool' ? v !== 0 : v));
    return literalText({
      kind: 'literal',
      dtype: c.type.dtype,
      shape: c.type.shape as number[],
      value: data as number[] | boolean[],
    });
  }
  return `%${arg}`;
}

/** Input names of an op in signature order (all versions), then any others in the graph's order. */
function orderedInputs(opType: string, inputs: Record<string, Arg>): string[] {
  const order: string[] = [];
  for (const v of opVersions(opType)) for (const i of v.inputs) if (!order.includes(i.name)) order.push(i.name);
  const present = order.filter((n) => n in inputs);
  return [...present, ...Object.keys(inputs).filter((n) => !order.includes(n))];
}

/** One op line without indentation: `%out: (shape, dtype)(Tensor) = type(k=v, ..., name="...")`. */
function opText(graph: Graph, op: Graph['ops'][number]): string {
  const outs = op.outputs.map((o) => `%${o.name}: ${typeText(o.type)}`).join(', ');
  const args = orderedInputs(op.op, op.inputs).map((k) => `${k}=${argText(graph, op.inputs[k]!)}`);
  return `${outs} = ${op.op}(${[...args, `name="${op.name}"`].join(', ')})`;
}

/** The whole program as coremltools prints it (leading newline included, as Program.__str__ starts each function with one). */
export function printGraph(graph: Graph, options: PrintOptions = {}): string {
  const head = `${options.functionName ?? 'main'}[${options.opset ?? 'CoreML7'}]`;
  const inputs = graph.inputs.map((v) => `%${v.name}: ${typeText(v.type)}`);
  let s = `\n${head}(${inputs.join(`,\n${' '.repeat(head.length + 1)}`)}) {\n`;
  s += `${SPACES}block0() {\n`;
  for (const op of graph.ops) s += `${SPACES}${SPACES}${opText(graph, op)}\n`;
  s += `${SPACES}} -> (${graph.outputs.map((o) => `%${o}`).join(', ')})\n}\n`;
  return s;
}
