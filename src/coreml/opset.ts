// MIL op signatures, transcribed from coremltools' converters/mil/mil/ops/defs/iOS15..iOS18/*.py
// (each op's input_spec, type_domains and default_inputs), for the ops that the reference packages
// contain and those our model builder may emit; and validateGraph, which checks a graph against them
// for a deployment target the way MIL's InputSpec.validate_inputs does (known inputs, const-ness,
// type domains, and inputs sharing a type domain having one dtype).

import type { Arg, DType, Graph } from '../graph/ir.js';
import { isLiteral, numel } from '../graph/ir.js';
import { ModernBertError } from '../errors.js';
import { valueTypes } from './graph-types.js';
import { atLeast, targetInfo, type Target } from './target.js';

/** An element type as an op input sees it: our dtypes, plus MIL's string for attributes such as pad_type. */
export type InputDType = DType | 'string';

export interface InputSig {
  name: string;
  /** 'tuple': a variadic list of values (concat's and einsum's `values`, MIL's TupleInputType). */
  kind: 'tensor' | 'tuple';
  optional: boolean;
  /** Must be known at compile time (a literal or a Const): MIL's `const=True`. */
  const: boolean;
  /** Allowed dtypes (MIL's type_domain); undefined for tuples, whose elements MIL does not constrain here. */
  dtypes?: readonly InputDType[];
  /** Type domain id ('T', 'U', ...): inputs sharing one must have the same dtype. */
  domain?: string;
  /** The default that MIL uses when an optional input is absent, as coremltools states it. */
  default?: string;
}

/** One version of an op: the inputs it takes from the opset of `since` on (until a later version replaces it). */
export interface OpSig {
  op: string;
  since: Target;
  inputs: readonly InputSig[];
}

// Type domains, named as in coremltools (uint16 is left out: our graphs have no uint16 dtype).
const F: readonly InputDType[] = ['fp16', 'fp32'];
const FI: readonly InputDType[] = ['fp16', 'fp32', 'int32'];
const FIB: readonly InputDType[] = ['fp16', 'fp32', 'int32', 'bool'];
const FIB17: readonly InputDType[] = ['fp16', 'fp32', 'int8', 'uint8', 'int16', 'int32', 'bool'];
const IDX17: readonly InputDType[] = ['int8', 'int16', 'int32'];
const I32: readonly InputDType[] = ['int32'];
const BOOL: readonly InputDType[] = ['bool'];
const STR: readonly InputDType[] = ['string'];

interface InputOpts {
  const?: boolean;
  optional?: boolean;
  default?: string;
}

/** A tensor input whose dtype is in `dtypes`; a string `domain` ties it to other inputs of the same domain. */
function tensor(name: string, dtypes: readonly InputDType[], domain?: string, o: InputOpts = {}): InputSig {
  return {
    name,
    kind: 'tensor',
    optional: o.optional ?? false,
    const: o.const ?? false,
    dtypes,
    ...(domain ? { domain } : {}),
    ...(o.default !== undefined ? { default: o.default } : {}),
  };
}

/** An optional compile-time constant input (most attributes: axes, epsilon, strides, ...). */
function attr(name: string, dtypes: readonly InputDType[], defaultValue: string | undefined, domain?: string): InputSig {
  return tensor(name, dtypes, domain, { const: true, optional: true, ...(defaultValue !== undefined ? { default: defaultValue } : {}) });
}

/** A required compile-time constant input. */
function constInput(name: string, dtypes: readonly InputDType[], domain?: string): InputSig {
  return tensor(name, dtypes, domain, { const: true });
}

function tuple(name: string): InputSig {
  return { name, kind: 'tuple', optional: false, const: false };
}

function sig(op: string, since: Target, ...inputs: InputSig[]): OpSig {
  return { op, since, inputs };
}

const binary = (op: string): OpSig[] => [sig(op, 'iOS15', tensor('x', FI, 'T'), tensor('y', FI, 'T'))]; // elementwise_binary.py
const unaryFloat = (op: string): OpSig[] => [sig(op, 'iOS15', tensor('x', F, 'T'))]; // elementwise_unary / activation
const unaryWithInt = (op: string): OpSig[] => [sig(op, 'iOS15', tensor('x', FI, 'T'))]; // elementwise_unary_with_int
const reduction = (op: string): OpSig[] => [
  // reduction.py ReductionAxes
  sig(op, 'iOS15', tensor('x', FI, 'T'), attr('axes', I32, 'None (all axes)'), attr('keep_dims', BOOL, 'False')),
];

const SIGNATURES: readonly OpSig[][] = [
  // control_flow.py: the value lives in the op's `val` attribute.
  [sig('const', 'iOS15', constInput('val', ['fp16', 'fp32', 'int32', 'int16', 'int8', 'uint8', 'bool', 'string']))],
  // scatter_gather.py (iOS15, iOS16, iOS17)
  [
    sig('gather', 'iOS15', tensor('x', FI, 'T'), tensor('indices', I32), attr('axis', I32, '0')),
    sig('gather', 'iOS16', tensor('x', FI, 'T'), tensor('indices', ['int32', 'int16'], 'I'), attr('axis', I32, '0'), attr('batch_dims', I32, '0')),
    sig(
      'gather',
      'iOS17',
      tensor('x', ['fp16', 'fp32', 'int32', 'int16', 'int8', 'uint8'], 'T'),
      tensor('indices', ['int32', 'int16', 'int8', 'uint8'], 'I'),
      attr('axis', I32, '0'),
      attr('batch_dims', I32, '0'),
      attr('validate_indices', BOOL, 'False'),
    ),
  ],
  // elementwise_unary.py
  [
    sig('cast', 'iOS15', tensor('x', FIB, 'T'), constInput('dtype', STR)),
    sig('cast', 'iOS17', tensor('x', FIB17, 'T'), constInput('dtype', STR)),
  ],
  // tensor_transformation.py
  [sig('transpose', 'iOS15', tensor('x', FIB, 'T'), constInput('perm', I32)), sig('transpose', 'iOS17', tensor('x', FIB17, 'T'), constInput('perm', I32))],
  [
    sig('expand_dims', 'iOS15', tensor('x', FIB, 'T'), constInput('axes', I32)),
    sig('expand_dims', 'iOS17', tensor('x', FIB17, 'T'), constInput('axes', I32)),
  ],
  [sig('squeeze', 'iOS15', tensor('x', FIB, 'T'), attr('axes', I32, 'None (all size-1 axes)')), sig('squeeze', 'iOS17', tensor('x', FIB17, 'T'), attr('axes', I32, 'None (all size-1 axes)'))],
  [sig('reshape', 'iOS15', tensor('x', FIB, 'T'), tensor('shape', I32)), sig('reshape', 'iOS17', tensor('x', FIB17, 'T'), tensor('shape', IDX17, 'U'))],
  [
    sig(
      'slice_by_index',
      'iOS15',
      tensor('x', FIB, 'T'),
      tensor('begin', I32),
      tensor('end', I32),
      attr('stride', I32, 'None (all 1)'),
      attr('begin_mask', BOOL, 'None (all False)'),
      attr('end_mask', BOOL, 'None (all False)'),
      attr('squeeze_mask', BOOL, 'None (all False)'),
    ),
    sig(
      'slice_by_index',
      'iOS17',
      tensor('x', FIB17, 'T'),
      tensor('begin', IDX17, 'U'),
      tensor('end', IDX17, 'U'),
      attr('stride', IDX17, 'None (all 1)', 'U'),
      attr('begin_mask', BOOL, 'None (all False)'),
      attr('end_mask', BOOL, 'None (all False)'),
      attr('squeeze_mask', BOOL, 'None (all False)'),
    ),
  ],
  [
    sig('slice_by_size', 'iOS15', tensor('x', FIB, 'T'), tensor('begin', I32), tensor('size', I32)),
    sig('slice_by_size', 'iOS17', tensor('x', FIB17, 'T'), tensor('begin', IDX17, 'U'), tensor('size', IDX17, 'U')),
  ],
  // normalization.py
  [
    sig('layer_norm', 'iOS15', tensor('x', F, 'T'), attr('axes', I32, 'all axes'), attr('gamma', F, 'None', 'T'), attr('beta', F, 'None', 'T'), attr('epsilon', F, '1e-05', 'T')),
    sig('layer_norm', 'iOS17', tensor('x', F, 'T'), attr('axes', I32, 'all axes'), attr('gamma', F, 'None', 'U'), attr('beta', F, 'None', 'U'), attr('epsilon', F, '1e-05', 'U')),
  ],
  [sig('l2_norm', 'iOS15', tensor('x', F, 'T'), attr('epsilon', F, '1e-06', 'T')), sig('l2_norm', 'iOS17', tensor('x', F, 'T'), attr('epsilon', F, '1e-06', 'U'))],
  // conv.py: from iOS 17 the weight and bias may differ in dtype from x, and bias need not be const.
  [
    sig(
      'conv',
      'iOS15',
      tensor('x', F, 'T'),
      tensor('weight', F, 'T'),
      attr('bias', F, 'None', 'T'),
      attr('strides', I32, '[1] * spatial dims'),
      attr('pad_type', STR, '"valid"'),
      attr('pad', I32, '[0] * 2 * spatial dims'),
      attr('dilations', I32, '[1] * spatial dims'),
      attr('groups', I32, '1'),
    ),
    sig(
      'conv',
      'iOS17',
      tensor('x', F, 'T'),
      tensor('weight', F, 'U'),
      tensor('bias', F, 'U', { optional: true, default: 'None' }),
      attr('strides', I32, '[1] * spatial dims'),
      attr('pad_type', STR, '"valid"'),
      attr('pad', I32, '[0] * 2 * spatial dims'),
      attr('dilations', I32, '[1] * spatial dims'),
      attr('groups', I32, '1'),
    ),
  ],
  // linear.py
  [
    sig('linear', 'iOS15', tensor('x', FI, 'T'), constInput('weight', FI, 'T'), attr('bias', FI, 'zeros', 'T')),
    sig('linear', 'iOS17', tensor('x', FI, 'T'), constInput('weight', FI, 'U'), attr('bias', FI, 'zeros', 'U')),
  ],
  [
    sig('matmul', 'iOS15', tensor('x', FI, 'T'), tensor('y', FI, 'T'), attr('transpose_x', BOOL, 'False'), attr('transpose_y', BOOL, 'False')),
    sig('matmul', 'iOS17', tensor('x', FI, 'T'), tensor('y', FI, 'U'), attr('transpose_x', BOOL, 'False'), attr('transpose_y', BOOL, 'False')),
  ],
  [sig('einsum', 'iOS15', tuple('values'), constInput('equation', STR))],
  // tensor_operation.py
  [sig('split', 'iOS15', tensor('x', FIB, 'T'), attr('num_splits', I32, undefined), attr('split_sizes', I32, undefined), constInput('axis', I32))],
  [sig('concat', 'iOS15', tuple('values'), constInput('axis', I32), attr('interleave', BOOL, 'False'))],
  [sig('range_1d', 'iOS15', tensor('end', FI, 'T'), tensor('start', FI, 'T'), tensor('step', FI, 'T'))],
  [sig('tile', 'iOS15', tensor('x', FIB, 'T'), tensor('reps', I32))],
  [sig('shape', 'iOS15', tensor('x', FIB, 'T'))],
  // identity takes any tensor, list or dictionary (ListOrTensorOrDictInputType): no dtype constraint.
  [sig('identity', 'iOS15', { name: 'x', kind: 'tensor', optional: false, const: false })],
  [sig('fill_like', 'iOS16', tensor('ref_tensor', FIB, 'T'), attr('value', FIB, '0.0', 'U'))],
  // activation.py
  [sig('softmax', 'iOS15', tensor('x', F, 'T'), attr('axis', I32, '-1'))],
  [sig('gelu', 'iOS15', tensor('x', F, 'T'), attr('mode', STR, '"EXACT"'))],
  ...['sigmoid', 'relu', 'silu'].map(unaryFloat),
  // control_flow.py
  [sig('select', 'iOS15', tensor('cond', BOOL), tensor('a', FIB, 'T'), tensor('b', FIB, 'T'))],
  // elementwise_binary.py
  ...['add', 'sub', 'mul', 'real_div', 'maximum', 'minimum', 'pow'].map(binary),
  ...['equal', 'not_equal', 'greater', 'greater_equal', 'less', 'less_equal'].map(binary),
  // elementwise_binary_logical
  ...['logical_and', 'logical_or'].map((op) => [sig(op, 'iOS15', tensor('x', BOOL, 'T'), tensor('y', BOOL, 'T'))]),
  // elementwise_unary.py
  [sig('logical_not', 'iOS15', tensor('x', BOOL))],
  unaryWithInt('abs'),
  unaryWithInt('square'),
  ...['sqrt', 'tanh', 'erf', 'exp'].map(unaryFloat),
  [sig('rsqrt', 'iOS15', tensor('x', F, 'T'), attr('epsilon', F, '1e-12', 'T')), sig('rsqrt', 'iOS17', tensor('x', F, 'T'), attr('epsilon', F, '1e-12', 'U'))],
  // clip is re-registered for iOS 17 with the same inputs (its semantics for alpha > beta changed).
  [sig('clip', 'iOS15', tensor('x', F, 'T'), constInput('alpha', F, 'T'), constInput('beta', F, 'T')), sig('clip', 'iOS17', tensor('x', F, 'T'), constInput('alpha', F, 'T'), constInput('beta', F, 'T'))],
  // reduction.py
  ...['reduce_l2_norm', 'reduce_sum', 'reduce_mean', 'reduce_max'].map(reduction),
];

const BY_OP = new Map<string, readonly OpSig[]>(SIGNATURES.map((versions) => [versions[0]!.op, versions]));

/** Op types in the table. */
export function knownOps(): string[] {
  return [...BY_OP.keys()];
}

/** The signature of `op` in force at `target` (the latest version not newer than it); undefined when unknown or not yet available. */
export function opSignature(op: string, target: Target): OpSig | undefined {
  const versions = BY_OP.get(op) ?? [];
  let found: OpSig | undefined;
  for (const v of versions) if (atLeast(target, v.since)) found = v;
  return found;
}

/** Every version of `op`, oldest first (empty when unknown). */
export function opVersions(op: string): readonly OpSig[] {
  return BY_OP.get(op) ?? [];
}

/** Multi-array dtypes that ML Program inputs and outputs take (backend/mil/helper.py cast_to_framework_io_dtype); fp16 from iOS 16. */
function checkIODType(name: string, dtype: DType, target: Target): void {
  const ok = dtype === 'fp32' || dtype === 'int32' || (dtype === 'fp16' && atLeast(target, 'iOS16'));
  if (!ok) {
    const why = dtype === 'fp16' ? 'fp16 model inputs/outputs need iOS16 or later' : 'ML Program inputs/outputs take fp32, fp16 or int32';
    throw new ModernBertError('UNSUPPORTED', `model input/output "${name}" has dtype ${dtype} at target ${target}: ${why}`, {
      value: name,
      dtype,
      target,
    });
  }
}

/**
 * Checks every op of `graph` against the MIL signatures in force at `target`: known op, available at the
 * target, no unknown or missing inputs, const-ness, tuple vs single value, dtypes and type domains, values
 * defined before use; and the model's input/output dtypes. Throws ModernBertError('UNSUPPORTED') naming the op.
 */
export function validateGraph(graph: Graph, target: Target | string): void {
  const t = targetInfo(target).target;
  const types = valueTypes(graph);
  for (const v of graph.inputs) checkIODType(v.name, v.type.dtype, t);
  const defined = new Set<string>([...graph.inputs.map((v) => v.name), ...graph.consts.keys()]);
  const opNames = new Set<string>();
  for (const op of graph.ops) {
    const fail = (message: string, context: Record<string, unknown> = {}): ModernBertError =>
      new ModernBertError('UNSUPPORTED', `op "${op.name}" (${op.op}): ${message}`, { op: op.name, type: op.op, target: t, ...context });
    if (opNames.has(op.name)) throw fail('another op has the same name');
    opNames.add(op.name);
    const versions = opVersions(op.op);
    if (versions.length === 0) throw fail(`unknown MIL op type "${op.op}"`);
    const s = opSignature(op.op, t);
    if (!s) throw fail(`not available before ${versions[0]!.since} (target ${t})`, { since: versions[0]!.since });
    for (const name of Object.keys(op.inputs)) {
      if (s.inputs.some((i) => i.name === name)) continue;
      const later = versions.find((v) => v.inputs.some((i) => i.name === name));
      throw fail(
        later
          ? `input "${name}" needs ${later.since} or later (target ${t})`
          : `unknown input "${name}" (takes ${s.inputs.map((i) => i.name).join(', ')})`,
        { input: name },
      );
    }
    const domains = new Map<string, { input: string; dtype: InputDType }>();
    for (const input of s.inputs) {
      const arg: Arg | undefined = op.inputs[input.name];
      if (arg === undefined) {
        if (!input.optional) throw fail(`missing required input "${input.name}"`, { input: input.name });
        continue;
      }
      if (input.kind === 'tuple') {
        if (!Array.isArray(arg)) throw fail(`input "${input.name}" takes a tuple of values, not ${isLiteral(arg) ? 'a literal' : 'one value'}`, { input: input.name });
        if (arg.length === 0) throw fail(`input "${input.name}" is an empty tuple`, { input: input.name });
        for (const name of arg) if (!defined.has(name)) throw fail(`input "${input.name}" uses "${name}", which is not defined before this op`, { input: input.name, value: name });
        continue;
      }
      if (Array.isArray(arg)) throw fail(`input "${input.name}" takes one value, not a tuple`, { input: input.name });
      let dtype: InputDType;
      let isConst: boolean;
      if (isLiteral(arg)) {
        const count = typeof arg.value === 'string' ? 1 : arg.value.length;
        if (count !== numel(arg.shape)) throw fail(`literal for "${input.name}" has ${count} values for shape [${arg.shape.join(', ')}]`, { input: input.name });
        dtype = arg.dtype;
        isConst = true;
      } else {
        const v = types.get(arg);
        if (!v || !defined.has(arg)) throw fail(`input "${input.name}" uses "${arg}", which is not defined before this op`, { input: input.name, value: arg });
        dtype = v.type.dtype;
        isConst = v.source === 'const';
      }
      if (input.const && !isConst) {
        throw fail(`input "${input.name}" must be a compile-time constant (a literal or a Const), got value "${String(arg)}"`, { input: input.name });
      }
      if (input.dtypes && !input.dtypes.includes(dtype)) {
        throw fail(`input "${input.name}" has dtype ${dtype}; allowed at ${s.since}+: ${input.dtypes.join(', ')}`, { input: input.name, dtype });
      }
      if (input.domain) {
        const first = domains.get(input.domain);
        if (first && first.dtype !== dtype) {
          throw fail(`inputs "${first.input}" (${first.dtype}) and "${input.name}" (${dtype}) must have the same dtype`, { input: input.name, dtype });
        }
        if (!first) domains.set(input.domain, { input: input.name, dtype });
      }
    }
    for (const out of op.outputs) defined.add(out.name);
  }
  for (const name of graph.outputs) {
    const v = types.get(name);
    if (!v) throw new ModernBertError('UNSUPPORTED', `graph output "${name}" is not a value of the graph`, { value: name });
    checkIODType(name, v.type.dtype, t);
  }
}
