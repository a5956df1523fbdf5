// Checks a graph against the op registry for a deployment target, the way MIL's InputSpec.validate_inputs
// and each op's type_inference do when coremltools loads a program: known op, available at the target, no
// unknown or missing inputs, const-ness, type domains, values defined before use, and every declared output
// type equal to the one the op's inference gives. The package writer runs it before writing and the reader
// after reading, so no program that coremltools would refuse is written or run.

import type { Arg, DType, Graph, TensorType } from '../ir/graph.js';
import { isLiteral, numel } from '../ir/graph.js';
import { ModernBertError } from '../errors.js';
import { valueTypes } from '../ir/value-types.js';
import { opDef, opSignature, opVersions, type InputDType } from './registry.js';
import { inferArgs, inputTypesOf } from './shapes.js';
import { atLeast, type Target } from '../ir/target.js';
import './index.js';

/** Multi-array dtypes that ML Program inputs and outputs take (backend/mil/helper.py cast_to_framework_io_dtype); fp16 from iOS 16. */
function checkIODType(name: string, dtype: DType, target: Target): void {
  const ok = dtype === 'fp32' || dtype === 'int32' || (dtype === 'fp16' && atLeast(target, 'iOS16'));
  if (!ok) {
    const why =
      dtype === 'fp16'
        ? 'fp16 model inputs/outputs need iOS16 or later'
        : 'ML Program inputs/outputs take fp32, fp16 or int32';
    throw new ModernBertError(
      'UNSUPPORTED',
      `model input/output "${name}" has dtype ${dtype} at target ${target}: ${why}`,
      {
        value: name,
        dtype,
        target,
      },
    );
  }
}

/**
 * Checks every op of `graph` against the MIL signatures in force at `target`: known op, available at the
 * target, no unknown or missing inputs, const-ness, tuple vs single value, dtypes and type domains, values
 * defined before use; and the model's input/output dtypes. Throws ModernBertError('UNSUPPORTED') naming the op.
 */
export function validateGraph(graph: Graph, target: Target): void {
  const t = target;
  const types = valueTypes(graph);
  for (const v of graph.inputs) checkIODType(v.name, v.type.dtype, t);
  const defined = new Set<string>([...graph.inputs.map((v) => v.name), ...graph.consts.keys()]);
  const opNames = new Set<string>();
  for (const op of graph.ops) {
    const fail = (message: string, context: Record<string, unknown> = {}): ModernBertError =>
      new ModernBertError('UNSUPPORTED', `op "${op.name}" (${op.op}): ${message}`, {
        op: op.name,
        type: op.op,
        target: t,
        ...context,
      });
    if (opNames.has(op.name)) throw fail('another op has the same name');
    opNames.add(op.name);
    const versions = opVersions(op.op);
    if (versions.length === 0) throw fail(`unknown MIL op type "${op.op}"`);
    const s = opSignature(op.op, t);
    if (!s) throw fail(`not available before ${versions[0]!.since} (target ${t})`, { since: versions[0]!.since });
    for (const name of Object.keys(op.inputs)) {
      if (!Object.hasOwn(op.inputs, name) || s.inputs.some((i) => i.name === name)) continue;
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
        if (!Array.isArray(arg))
          throw fail(
            `input "${input.name}" takes a tuple of values, not ${isLiteral(arg) ? 'a literal' : 'one value'}`,
            { input: input.name },
          );
        if (arg.length === 0) throw fail(`input "${input.name}" is an empty tuple`, { input: input.name });
        for (const name of arg)
          if (!defined.has(name))
            throw fail(`input "${input.name}" uses "${name}", which is not defined before this op`, {
              input: input.name,
              value: name,
            });
        continue;
      }
      if (Array.isArray(arg)) throw fail(`input "${input.name}" takes one value, not a tuple`, { input: input.name });
      let dtype: InputDType;
      let isConst: boolean;
      if (isLiteral(arg)) {
        const count = typeof arg.value === 'string' ? 1 : arg.value.length;
        if (count !== numel(arg.shape))
          throw fail(`literal for "${input.name}" has ${count} values for shape [${arg.shape.join(', ')}]`, {
            input: input.name,
          });
        dtype = arg.dtype;
        isConst = true;
      } else {
        const v = types.get(arg);
        if (!v || !defined.has(arg))
          throw fail(`input "${input.name}" uses "${arg}", which is not defined before this op`, {
            input: input.name,
            value: arg,
          });
        dtype = v.type.dtype;
        isConst = v.source === 'const';
      }
      if (input.const && !isConst) {
        throw fail(
          `input "${input.name}" must be a compile-time constant (a literal or a Const), got value "${String(arg)}"`,
          { input: input.name },
        );
      }
      if (input.dtypes && !input.dtypes.includes(dtype)) {
        throw fail(`input "${input.name}" has dtype ${dtype}; allowed at ${s.since}+: ${input.dtypes.join(', ')}`, {
          input: input.name,
          dtype,
        });
      }
      if (input.domain) {
        const first = domains.get(input.domain);
        if (first && first.dtype !== dtype) {
          throw fail(
            `inputs "${first.input}" (${first.dtype}) and "${input.name}" (${dtype}) must have the same dtype`,
            { input: input.name, dtype },
          );
        }
        if (!first) domains.set(input.domain, { input: input.name, dtype });
      }
    }
    checkOutputTypes(op, types, fail);
    for (const out of op.outputs) defined.add(out.name);
  }
  for (const name of graph.outputs) {
    const v = types.get(name);
    if (!v)
      throw new ModernBertError('UNSUPPORTED', `graph output "${name}" is not a value of the graph`, { value: name });
    checkIODType(name, v.type.dtype, t);
  }
}

/** The op's declared output types must be those its inference gives (symbols match any size, as in coremltools). */
function checkOutputTypes(
  op: Graph['ops'][number],
  types: ReturnType<typeof valueTypes>,
  fail: (m: string, c?: Record<string, unknown>) => ModernBertError,
): void {
  const def = opDef(op.op)!;
  const inputs = inputTypesOf(op.inputs, (v) => types.get(v)!.type);
  let inferred: TensorType[];
  try {
    inferred = def.infer(inferArgs(op.op, `${op.op} "${op.name}"`, inputs));
  } catch (e) {
    if (e instanceof ModernBertError) throw fail(`coremltools' type inference refuses it: ${e.message}`);
    throw e;
  }
  if (inferred.length !== op.outputs.length)
    throw fail(`declares ${op.outputs.length} outputs, the op has ${inferred.length}`);
  op.outputs.forEach((out, k) => {
    const want = inferred[k]!;
    const got = out.type;
    const same =
      want.dtype === got.dtype &&
      want.shape.length === got.shape.length &&
      want.shape.every((d, i) => typeof d !== 'number' || typeof got.shape[i] !== 'number' || d === got.shape[i]);
    if (!same)
      throw fail(`output "${out.name}" is declared ${typeText(got)}, its inputs give ${typeText(want)}`, {
        value: out.name,
      });
  });
}

const typeText = (t: TensorType): string => `${t.dtype}[${t.shape.join(', ')}]`;
