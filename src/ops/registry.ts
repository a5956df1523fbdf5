// The MIL op registry: each op is defined once, as coremltools defines it with one Operation class per op
// (converters/mil/mil/ops/defs/iOS15..iOS18/*.py): its versioned signature (input names, type domains,
// const-ness, defaults), its output-type inference (following that class's type_inference), and its CPU
// kernel. The graph builder, the package writer's and reader's validation, the printer and the
// interpreter all read this one table.

import type { DType, Literal, Op, TensorType } from '../ir/graph.js';
import type { Numerics } from '../runtime/numerics.js';
import type { RtTensor } from '../runtime/tensor.js';
import { atLeast, type Target } from '../ir/target.js';

/** An element type as an op input sees it: our dtypes, plus MIL's string for attributes such as pad_type. */
export type InputDType = DType | 'string';

/** The default coremltools fills in when an optional input is absent: a value, or one computed from the other inputs. */
export type DefaultValue = Literal | ((a: InferArgs) => Literal);

export interface InputSig {
  name: string;
  /** 'tuple': a variadic list of values (concat's and einsum's `values`, MIL's TupleInputType). */
  kind: 'tensor' | 'tuple';
  optional: boolean;
  /** Must be known at compile time (a literal or a Const): MIL's `const=True`. */
  const: boolean;
  /** Allowed dtypes (MIL's type_domain); undefined where MIL does not constrain them (tuples, identity). */
  dtypes?: readonly InputDType[];
  /** Type domain id ('T', 'U', ...): inputs sharing one must have the same dtype. */
  domain?: string;
  /**
   * What the op's default_inputs() gives when the input is absent. coremltools' builder writes every non-None
   * default into the op, so ours does too; undefined is coremltools' None (the input stays absent).
   */
  default?: DefaultValue;
}

/** One version of an op: the inputs it takes from the opset of `since` on (until a later version replaces it). */
export interface OpVersion {
  since: Target;
  inputs: readonly InputSig[];
}

/** What type inference sees of an op's inputs. */
export interface InferArgs {
  /** `type "name"`, for messages. */
  readonly label: string;
  has(key: string): boolean;
  /** The type of a tensor input (a value, or a literal as a tensor). */
  t(key: string): TensorType;
  tuple(key: string): TensorType[];
  /** The literal bound to `key`, or undefined when the input is absent or a run-time value. */
  literal(key: string): Literal | undefined;
  /** Integer values of a literal input (its default when absent). */
  ints(key: string): number[];
  bools(key: string): boolean[];
  str(key: string): string;
  fail(message: string): never;
}

/** What a CPU kernel sees of its inputs (absent optional inputs read as their defaults). */
export interface OpArgs {
  op: Op;
  num: Numerics;
  has(key: string): boolean;
  /** A tensor input (a value, or a literal as a tensor). */
  t(key: string): RtTensor;
  tuple(key: string): RtTensor[];
  ints(key: string): number[];
  nums(key: string): number[];
  bools(key: string): boolean[];
  str(key: string): string;
}

export type Kernel = (a: OpArgs) => RtTensor[] | Promise<RtTensor[]>;

/** An ONNX node attribute, tagged with its AttributeProto type. */
export type OnnxAttr =
  { int: number } | { ints: number[] } | { float: number } | { floats: number[] } | { str: string };

/** What an op's ONNX lowering sees (src/onnx/lower.ts implements it): its inputs as ONNX value names, and a node emitter. */
export interface OnnxArgs {
  op: Op;
  has(key: string): boolean;
  /** The ONNX value holding a tensor input (a literal becomes an initializer). */
  input(key: string): string;
  tuple(key: string): string[];
  /** The type of a tensor input, and of each output. */
  type(key: string): TensorType;
  outTypes: readonly TensorType[];
  ints(key: string): number[];
  nums(key: string): number[];
  bools(key: string): boolean[];
  str(key: string): string;
  /** The ONNX names this op's outputs must have. */
  out: readonly string[];
  /**
   * In the `fp16` emulation (onnx/emulate-fp16.ts): a value rounded to float16 and back, for the steps inside
   * an op that the mode rounds (layer_norm's squares, gelu's terms). Absent otherwise: the op's output alone is rounded.
   */
  round?(v: string): string;
  /** Products on their operands' own layout, without transposes (onnx/lower.ts LowerOptions.channelsFirst). */
  channelsFirst?: boolean;
  /** Emits one ONNX node; `outputs` defaults to one fresh name. Returns the output names. */
  node(
    opType: string,
    inputs: readonly string[],
    attrs?: Record<string, OnnxAttr>,
    outputs?: readonly string[],
  ): string[];
  /** An int64 vector initializer (ONNX's shape, axis and index inputs). */
  int64s(values: number[]): string;
  /** A scalar initializer of `dtype` (the constants of a decomposition). */
  scalar(value: number, dtype: DType): string;
  fail(message: string): never;
}

/** Emits the ONNX nodes computing one MIL op, writing its outputs under `a.out` (ONNX opset 17). */
export type OnnxLowering = (a: OnnxArgs) => void;

/** One MIL op: every version's signature, its type inference and its kernel. */
export interface OpDef {
  op: string;
  versions: readonly OpVersion[];
  /** Output types, as coremltools' type_inference computes them. */
  infer(a: InferArgs): TensorType[];
  run: Kernel;
  /** Its ONNX form; absent when the op cannot be exported to ONNX. */
  onnx?: OnnxLowering;
  /**
   * A load-time constant expression (MIL's constexpr ops, which hold compressed weights): Core ML computes
   * it once when it loads the model, so its inputs are written inline and every runtime evaluates it once,
   * as a constant.
   */
  constexpr?: boolean;
}

const REGISTRY = new Map<string, OpDef>();

/** Adds op definitions to the registry (each op type once). */
export function register(...defs: OpDef[]): void {
  for (const d of defs) {
    if (REGISTRY.has(d.op)) throw new Error(`op ${d.op} is registered twice`);
    if (d.versions.length === 0) throw new Error(`op ${d.op} has no version`);
    REGISTRY.set(d.op, d);
  }
}

/** The definition of an op type, or undefined (a Map, so names such as `__proto__` find nothing). */
export function opDef(op: string): OpDef | undefined {
  return REGISTRY.get(op);
}

/** Whether ops of this type are load-time constant expressions (OpDef.constexpr); false for unknown types. */
export function isConstexpr(op: string): boolean {
  return REGISTRY.get(op)?.constexpr === true;
}

/** Op types in the registry. */
export function knownOps(): string[] {
  return [...REGISTRY.keys()];
}

/** Every version of `op`, oldest first (empty when unknown). */
export function opVersions(op: string): readonly OpVersion[] {
  return REGISTRY.get(op)?.versions ?? [];
}

/** The signature of `op` in force at `target` (the latest version not newer than it); undefined when unknown or not yet available. */
export function opSignature(op: string, target: Target): (OpVersion & { op: string }) | undefined {
  let found: OpVersion | undefined;
  for (const v of opVersions(op)) if (atLeast(target, v.since)) found = v;
  return found && { op, ...found };
}

/** The newest declared default of an input across an op's versions (for kernels reading an absent input). */
export function inputDefault(op: string, input: string): DefaultValue | undefined {
  const versions = opVersions(op);
  for (let k = versions.length - 1; k >= 0; k--) {
    const sig = versions[k]!.inputs.find((i) => i.name === input);
    if (sig) return sig.default;
  }
  return undefined;
}

// ---- signature helpers, named as coremltools' input types -----------------------------------------------

interface InputOpts {
  const?: boolean;
  optional?: boolean;
  default?: DefaultValue;
}

/** A tensor input whose dtype is in `dtypes`; a string `domain` ties it to other inputs of the same domain (TensorInputType). */
export function tensor(
  name: string,
  dtypes: readonly InputDType[] | undefined,
  domain?: string,
  o: InputOpts = {},
): InputSig {
  return {
    name,
    kind: 'tensor',
    optional: o.optional ?? false,
    const: o.const ?? false,
    ...(dtypes ? { dtypes } : {}),
    ...(domain ? { domain } : {}),
    ...(o.default !== undefined ? { default: o.default } : {}),
  };
}

/** An optional compile-time constant input (most attributes: axes, epsilon, strides, ...) with its default. */
export function attr(
  name: string,
  dtypes: readonly InputDType[],
  defaultValue: DefaultValue | undefined,
  domain?: string,
): InputSig {
  return tensor(name, dtypes, domain, {
    const: true,
    optional: true,
    ...(defaultValue !== undefined ? { default: defaultValue } : {}),
  });
}

/** A required compile-time constant input. */
export function constInput(name: string, dtypes: readonly InputDType[], domain?: string): InputSig {
  return tensor(name, dtypes, domain, { const: true });
}

/** A variadic tuple of values (TupleInputType). */
export function tuple(name: string): InputSig {
  return { name, kind: 'tuple', optional: false, const: false };
}

/** One version's signature. */
export function since(target: Target, ...inputs: InputSig[]): OpVersion {
  return { since: target, inputs };
}

// Type domains, named as in coremltools (uint16 is left out: our graphs have no uint16 dtype).
export const F: readonly InputDType[] = ['fp16', 'fp32'];
export const FI: readonly InputDType[] = ['fp16', 'fp32', 'int32'];
export const FIB: readonly InputDType[] = ['fp16', 'fp32', 'int32', 'bool'];
export const FIB17: readonly InputDType[] = ['fp16', 'fp32', 'int8', 'uint8', 'int16', 'int32', 'bool'];
export const IDX17: readonly InputDType[] = ['int8', 'int16', 'int32'];
export const I32: readonly InputDType[] = ['int32'];
export const BOOL: readonly InputDType[] = ['bool'];
export const STR: readonly InputDType[] = ['string'];

/** A float default in the dtype of input `x` (coremltools writes defaults in the program's float type). */
export const likeX =
  (value: number): DefaultValue =>
  (a) => {
    const dtype = a.t('x').dtype;
    return { kind: 'literal', dtype: dtype === 'fp16' ? 'fp16' : 'fp32', shape: [], value: [value] };
  };
