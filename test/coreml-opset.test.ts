// The MIL op signature table and validateGraph: every rule rejects with a message naming the op and input.

import { describe, expect, it } from 'vitest';
import { knownOps, opSignature } from '../src/ops/index.js';
import { validateGraph } from '../src/ops/validate.js';
import { parseTarget, targetInfo, targetForOpset, type Target } from '../src/ir/target.js';
import { ModernBertError } from '../src/errors.js';
import { literal, type Arg, type Const, type Graph, type Op, type TensorType, type Value } from '../src/ir/graph.js';

const f16 = (...shape: number[]): TensorType => ({ dtype: 'fp16', shape });

/** A graph with input `x` (1, 4, 1, 4) of `xType`, an int32 input `ids` (1, 4), an fp16 const `w` and the given ops. */
function graphOf(...ops: Op[]): Graph {
  return graphWithInput('fp16', ...ops);
}

function graphWithInput(xType: 'fp16' | 'fp32', ...ops: Op[]): Graph {
  const w: Const = { name: 'w', type: f16(8, 4, 1, 1), load: () => new Float32Array(32) };
  const inputs: Value[] = [
    { name: 'x', type: { dtype: xType, shape: [1, 4, 1, 4] } },
    { name: 'ids', type: { dtype: 'int32', shape: [1, 4] } },
  ];
  return { inputs, consts: new Map([['w', w]]), ops, outputs: [ops.at(-1)!.outputs[0]!.name], taps: new Map() };
}

function op(type: string, inputs: Record<string, Arg>, out: TensorType = f16(1, 4, 1, 4), name = 'the_op'): Op {
  return { op: type, name, inputs, outputs: [{ name: `${name}_out`, type: out }] };
}

function rejection(g: Graph, target: Target = 'iOS17'): ModernBertError {
  try {
    validateGraph(g, target);
  } catch (e) {
    expect(e).toBeInstanceOf(ModernBertError);
    expect((e as ModernBertError).code).toBe('UNSUPPORTED');
    return e as ModernBertError;
  }
  throw new Error('expected validateGraph to reject the graph');
}

describe('deployment targets', () => {
  it('map to the specification versions and opsets of coremltools', () => {
    expect(targetInfo()).toEqual({ target: 'iOS17', specificationVersion: 8, opset: 'CoreML7' });
    expect(parseTarget('macOS14')).toBe('iOS17');
    expect(
      (['iOS15', 'iOS16', 'iOS17', 'iOS18'] as const).map((t) => [
        targetInfo(t).specificationVersion,
        targetInfo(t).opset,
      ]),
    ).toEqual([
      [6, 'CoreML5'],
      [7, 'CoreML6'],
      [8, 'CoreML7'],
      [9, 'CoreML8'],
    ]);
    expect(targetForOpset('CoreML8').target).toBe('iOS18');
    expect(() => parseTarget('iOS14')).toThrow(/unknown deployment target "iOS14"/);
    expect(() => targetForOpset('CoreML9')).toThrow(/unknown MIL opset "CoreML9"/);
  });
});

describe('op signature table', () => {
  it('covers the ops of the reference packages and those the model builder may emit', () => {
    const wanted =
      'const gather cast transpose expand_dims reshape layer_norm conv split slice_by_index mul add sub real_div concat einsum softmax gelu select greater_equal reduce_l2_norm matmul linear reduce_sum reduce_mean reduce_max greater less equal abs sqrt rsqrt square range_1d squeeze slice_by_size tile logical_not sigmoid tanh erf exp maximum minimum clip pow l2_norm';
    const known = new Set(knownOps());
    expect(wanted.split(' ').filter((o) => !known.has(o))).toEqual([]);
  });

  it('picks the latest version at or before the target', () => {
    expect(opSignature('gather', 'iOS15')!.inputs.map((i) => i.name)).toEqual(['x', 'indices', 'axis']);
    expect(opSignature('gather', 'iOS16')!.inputs.map((i) => i.name)).toEqual(['x', 'indices', 'axis', 'batch_dims']);
    expect(opSignature('gather', 'iOS18')!.since).toBe('iOS17');
    expect(opSignature('fill_like', 'iOS15')).toBeUndefined();
    const conv = opSignature('conv', 'iOS17')!;
    expect(conv.inputs.find((i) => i.name === 'pad_type')).toMatchObject({
      const: true,
      optional: true,
      dtypes: ['string'],
      default: literal('string', 'valid'),
    });
    expect(conv.inputs.find((i) => i.name === 'bias')).toMatchObject({ const: false, optional: true, domain: 'U' });
    expect(opSignature('conv', 'iOS16')!.inputs.find((i) => i.name === 'bias')).toMatchObject({
      const: true,
      domain: 'T',
    });
  });
});

describe('validateGraph', () => {
  it('accepts a well-formed graph', () => {
    const g = graphOf(op('conv', { x: 'x', weight: 'w', pad_type: literal('string', 'valid') }, f16(1, 8, 1, 4)));
    expect(() => validateGraph(g, 'iOS15')).toThrow(/fp16 model inputs\/outputs need iOS16/);
    expect(() => validateGraph(g, 'iOS16')).not.toThrow();
  });

  it('rejects an unknown op', () => {
    expect(rejection(graphOf(op('frobnicate', { x: 'x' }))).message).toBe(
      'op "the_op" (frobnicate): unknown MIL op type "frobnicate"',
    );
  });

  it('rejects an op its target does not have yet, and inputs added later', () => {
    const fill = graphWithInput('fp32', op('fill_like', { ref_tensor: 'ids' }, { dtype: 'fp32', shape: [1, 4] }));
    expect(() => validateGraph(fill, 'iOS16')).not.toThrow();
    expect(rejection(fill, 'iOS15').message).toBe('op "the_op" (fill_like): not available before iOS16 (target iOS15)');
    const g = graphOf(
      op('gather', { x: 'w', indices: 'ids', validate_indices: literal('bool', false) }, f16(1, 4, 4, 1, 1)),
    );
    expect(() => validateGraph(g, 'iOS17')).not.toThrow();
    expect(rejection(g, 'iOS16').message).toBe(
      'op "the_op" (gather): input "validate_indices" needs iOS17 or later (target iOS16)',
    );
  });

  it('rejects missing required and unknown inputs', () => {
    expect(rejection(graphOf(op('conv', { x: 'x' }))).message).toBe(
      'op "the_op" (conv): missing required input "weight"',
    );
    expect(rejection(graphOf(op('softmax', { x: 'x', dim: literal('int32', 1) }))).message).toBe(
      'op "the_op" (softmax): unknown input "dim" (takes x, axis)',
    );
  });

  it('rejects a runtime value where a constant is required, and accepts Consts there', () => {
    const shape = op('shape', { x: 'ids' }, { dtype: 'int32', shape: [2] }, 'shape_of');
    const g = graphOf(shape, op('transpose', { x: 'x', perm: 'shape_of_out' }));
    expect(rejection(g).message).toMatch(
      /\(transpose\): input "perm" must be a compile-time constant \(a literal or a Const\), got value "shape_of_out"/,
    );
    expect(() => validateGraph(graphOf(op('linear', { x: 'x', weight: 'w' }, f16(1, 4, 1, 8))), 'iOS17')).not.toThrow();
  });

  it('rejects a literal or single value where a tuple is needed, and a tuple where one value is', () => {
    expect(rejection(graphOf(op('concat', { values: literal('fp16', [1]), axis: literal('int32', 1) }))).message).toBe(
      'op "the_op" (concat): input "values" takes a tuple of values, not a literal',
    );
    expect(rejection(graphOf(op('softmax', { x: ['x', 'x'] }))).message).toBe(
      'op "the_op" (softmax): input "x" takes one value, not a tuple',
    );
  });

  it('rejects dtypes outside the type domain, per target', () => {
    expect(rejection(graphOf(op('softmax', { x: 'ids' }))).message).toBe(
      'op "the_op" (softmax): input "x" has dtype int32; allowed at iOS15+: fp16, fp32',
    );
    const cast16 = op(
      'cast',
      { x: 'ids', dtype: literal('string', 'int16') },
      { dtype: 'int16', shape: [1, 4] },
      'ids16',
    );
    const rows = op('gather', { x: 'w', indices: 'ids16_out' }, f16(1, 4, 4, 1, 1), 'rows');
    const toInt = op(
      'cast',
      { x: 'rows_out', dtype: literal('string', 'int32') },
      { dtype: 'int32', shape: [1, 4, 4, 1, 1] },
    );
    const gather = graphWithInput('fp32', cast16, rows, toInt);
    expect(() => validateGraph(gather, 'iOS16')).not.toThrow();
    expect(rejection(gather, 'iOS15').message).toBe(
      'op "rows" (gather): input "indices" has dtype int16; allowed at iOS15+: int32',
    );
  });

  it('rejects inputs of one type domain with different dtypes (conv weight may differ from x from iOS17 on)', () => {
    expect(rejection(graphOf(op('mul', { x: 'x', y: literal('fp32', 2) }))).message).toBe(
      'op "the_op" (mul): inputs "x" (fp16) and "y" (fp32) must have the same dtype',
    );
    const g = graphOf(op('conv', { x: 'x', weight: 'w' }, f16(1, 8, 1, 4)));
    g.consts.get('w')!.type.dtype = 'fp32';
    expect(() => validateGraph(g, 'iOS17')).not.toThrow();
    expect(rejection(g, 'iOS16').message).toMatch(/inputs "x" \(fp16\) and "weight" \(fp32\) must have the same dtype/);
  });

  it('rejects use before definition, malformed literals, duplicate op names and non-Core ML output dtypes', () => {
    const late = graphOf(
      op('relu', { x: 'later_out' }, f16(1, 4, 1, 4), 'early'),
      op('relu', { x: 'x' }, f16(1, 4, 1, 4), 'later'),
    );
    expect(rejection(late).message).toBe(
      'op "early" (relu): input "x" uses "later_out", which is not defined before this op',
    );
    const badLiteral = graphOf(
      op('reduce_sum', { x: 'x', axes: { kind: 'literal', dtype: 'int32', shape: [3], value: [1, 2] } }),
    );
    expect(rejection(badLiteral).message).toMatch(/literal for "axes" has 2 values for shape \[3\]/);
    const twice = graphOf(op('relu', { x: 'x' }, f16(1, 4, 1, 4), 'same'), {
      ...op('relu', { x: 'x' }, f16(1, 4, 1, 4), 'same'),
      outputs: [{ name: 'other', type: f16(1, 4, 1, 4) }],
    });
    expect(rejection(twice).message).toBe('op "same" (relu): another op has the same name');
    const boolOut = graphOf(op('greater', { x: 'x', y: literal('fp16', 0) }, { dtype: 'bool', shape: [1, 4, 1, 4] }));
    expect(rejection(boolOut).message).toMatch(/model input\/output "the_op_out" has dtype bool/);
  });
});
