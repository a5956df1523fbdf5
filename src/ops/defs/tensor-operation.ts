// Ops that make, split and join tensors: coremltools' ops/defs/iOS15/tensor_operation.py (split, concat,
// range_1d, tile, shape, fill_like, identity), iOS15-17/scatter_gather.py (gather) and control_flow.py
// (const, select).

import { ModernBertError } from '../../errors.js';
import { literal, numel, type Dim, type DType, type TensorType } from '../../ir/graph.js';
import { mapBroadcast } from '../../runtime/broadcast.js';
import { allocData } from '../../runtime/tensor.js';
import {
  attr,
  BOOL,
  constInput,
  FI,
  FIB,
  I32,
  register,
  since,
  tensor,
  tuple,
  type Kernel,
  type OnnxArgs,
} from '../registry.js';
import { broadcastShapes, normAxis } from '../shapes.js';
import { fail, floatOut, ONNX_TYPE, ONNX_TYPE_INT64, onnxSame } from './common.js';
import { sliceBox } from './tensor-transformation.js';

/** Split sizes: `split_sizes`, or `num_splits` equal parts of dim `d`. */
function splitSizes(
  has: (k: string) => boolean,
  ints: (k: string) => number[],
  d: Dim,
  bad: (m: string) => never,
): number[] {
  if (has('split_sizes')) return ints('split_sizes');
  if (!has('num_splits')) return bad('needs split_sizes or num_splits');
  const n = ints('num_splits')[0]!;
  if (typeof d !== 'number' || n < 1 || d % n !== 0) return bad(`cannot split dim ${String(d)} into ${n} equal parts`);
  return Array<number>(n).fill(d / n);
}

const split: Kernel = (a) => {
  const x = a.t('x');
  const axis = normAxis(a.ints('axis')[0]!, x.shape.length);
  const d = x.shape[axis]!;
  const sizes = splitSizes(a.has, a.ints, d, (m) => fail(a, m));
  if (sizes.reduce((p, q) => p + q, 0) !== d) fail(a, `split sizes ${sizes.join('+')} do not add up to ${d}`);
  let start = 0;
  return sizes.map((s) => {
    const begin = x.shape.map((_, k) => (k === axis ? start : 0));
    start += s;
    return sliceBox(
      x,
      begin,
      x.shape.map((v, k) => (k === axis ? s : v)),
      x.shape.map(() => 1),
    );
  });
};

const concat: Kernel = (a) => {
  const vs = a.tuple('values');
  const rank = vs[0]!.shape.length;
  const axis = normAxis(a.ints('axis')[0]!, rank);
  if (a.bools('interleave')[0]) fail(a, 'interleave=True is not supported');
  const shape = [...vs[0]!.shape];
  shape[axis] = vs.reduce((s, v) => s + v.shape[axis]!, 0);
  for (const v of vs) {
    if (v.shape.length !== rank || v.shape.some((d, k) => k !== axis && d !== shape[k])) {
      fail(a, `cannot concatenate [${v.shape.join(', ')}] with [${vs[0]!.shape.join(', ')}] on axis ${axis}`);
    }
  }
  const outer = numel(shape.slice(0, axis));
  const innerOut = numel(shape.slice(axis));
  const out = allocData(vs[0]!.dtype, outer * innerOut);
  let offset = 0;
  for (const v of vs) {
    const chunk = numel(v.shape.slice(axis));
    for (let o = 0; o < outer; o++)
      (out as Float32Array).set((v.data as Float32Array).subarray(o * chunk, (o + 1) * chunk), o * innerOut + offset);
    offset += chunk;
  }
  return [{ dtype: vs[0]!.dtype, shape, data: out }];
};

const gather: Kernel = (a) => {
  const x = a.t('x');
  const idx = a.t('indices');
  const axis = normAxis(a.ints('axis')[0]!, x.shape.length);
  if (a.has('batch_dims') && a.ints('batch_dims')[0] !== 0) fail(a, 'batch_dims other than 0 are not supported');
  const d = x.shape[axis]!;
  const outer = numel(x.shape.slice(0, axis));
  const inner = numel(x.shape.slice(axis + 1));
  const nIdx = idx.data.length;
  const out = allocData(x.dtype, outer * nIdx * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < nIdx; j++) {
      let k = idx.data[j]!;
      if (k < 0) k += d;
      if (!(k >= 0 && k < d)) {
        throw new ModernBertError(
          'BAD_INPUT',
          `${a.op.op} "${a.op.name}": index ${idx.data[j]} is out of range 0..${d - 1}`,
          { op: a.op.name },
        );
      }
      const src = (o * d + k) * inner;
      (out as Float32Array).set((x.data as Float32Array).subarray(src, src + inner), (o * nIdx + j) * inner);
    }
  }
  return [{ dtype: x.dtype, shape: [...x.shape.slice(0, axis), ...idx.shape, ...x.shape.slice(axis + 1)], data: out }];
};

// gather.type_inference: x's shape with the gathered axis replaced by the indices' shape.
const gatherType = (x: TensorType, indices: TensorType, axisIn: number): TensorType[] => {
  const axis = normAxis(axisIn, x.shape.length);
  return [{ dtype: x.dtype, shape: [...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)] }];
};

// split: Split-13 takes the sizes as an int64 input; num_splits is its equal split (no sizes input).
const splitOnnx = (a: OnnxArgs): void => {
  const axis = { axis: { int: a.ints('axis')[0]! } };
  a.node('Split', a.has('split_sizes') ? [a.input('x'), a.int64s(a.ints('split_sizes'))] : [a.input('x')], axis, a.out);
};

// MIL's interleave (alternating slices of the values) has no ONNX form.
const concatOnnx = (a: OnnxArgs): void => {
  if (a.bools('interleave')[0]) a.fail('interleaved concat has no ONNX form');
  a.node('Concat', a.tuple('values'), { axis: { int: a.ints('axis')[0]! } }, a.out);
};

// Gather-13 gathers along one axis like MIL's (batch_dims 0); negative indices count from the end in both.
const gatherOnnx = (a: OnnxArgs): void => {
  if (a.has('batch_dims') && a.ints('batch_dims')[0] !== 0) a.fail('gather with batch_dims has no ONNX Gather form');
  a.node('Gather', [a.input('x'), a.input('indices')], { axis: { int: a.ints('axis')[0]! } }, a.out);
};

const GATHER_X17: DType[] = ['fp16', 'fp32', 'int32', 'int16', 'int8', 'uint8'];

register(
  {
    op: 'split',
    versions: [
      since(
        'iOS15',
        tensor('x', FIB, 'T'),
        attr('num_splits', I32, undefined),
        attr('split_sizes', I32, undefined),
        constInput('axis', I32),
      ),
    ],
    infer: (a) => {
      const x = a.t('x');
      const axis = normAxis(a.ints('axis')[0]!, x.shape.length);
      const sizes = splitSizes(a.has, a.ints, x.shape[axis]!, a.fail);
      if (typeof x.shape[axis] === 'number' && sizes.reduce((p, q) => p + q, 0) !== x.shape[axis])
        a.fail(`split sizes ${sizes.join('+')} != ${x.shape[axis]}`);
      return sizes.map((s) => ({ dtype: x.dtype, shape: x.shape.map((d, k) => (k === axis ? s : d)) }));
    },
    run: split,
    onnx: splitOnnx,
  },
  {
    op: 'concat',
    versions: [
      since('iOS15', tuple('values'), constInput('axis', I32), attr('interleave', BOOL, literal('bool', false))),
    ],
    // concat.type_inference: equal dtypes and ranks, the axis summed (symbolic dims may not be concatenated here).
    infer: (a) => {
      const vs = a.tuple('values');
      const first = vs[0]!;
      const axis = normAxis(a.ints('axis')[0]!, first.shape.length);
      let total = 0;
      for (const v of vs) {
        if (v.dtype !== first.dtype) a.fail(`values have dtypes ${first.dtype} and ${v.dtype}`);
        if (v.shape.length !== first.shape.length) a.fail('values have different ranks');
        v.shape.forEach((d, k) => {
          if (k !== axis && d !== first.shape[k])
            a.fail(`values differ on axis ${k}: ${String(first.shape[k])} and ${String(d)}`);
        });
        const d = v.shape[axis]!;
        total += typeof d === 'number' ? d : a.fail('cannot concatenate along a symbolic dimension');
      }
      return [{ dtype: first.dtype, shape: first.shape.map((d, k) => (k === axis ? total : d)) }];
    },
    run: concat,
    onnx: concatOnnx,
  },
  {
    op: 'gather',
    versions: [
      since('iOS15', tensor('x', FI, 'T'), tensor('indices', I32), attr('axis', I32, literal('int32', 0))),
      since(
        'iOS16',
        tensor('x', FI, 'T'),
        tensor('indices', ['int32', 'int16'], 'I'),
        attr('axis', I32, literal('int32', 0)),
        attr('batch_dims', I32, literal('int32', 0)),
      ),
      since(
        'iOS17',
        tensor('x', GATHER_X17, 'T'),
        tensor('indices', ['int32', 'int16', 'int8', 'uint8'], 'I'),
        attr('axis', I32, literal('int32', 0)),
        attr('batch_dims', I32, literal('int32', 0)),
        attr('validate_indices', BOOL, literal('bool', false)),
      ),
    ],
    infer: (a) => gatherType(a.t('x'), a.t('indices'), a.ints('axis')[0]!),
    run: gather,
    onnx: gatherOnnx,
  },
  {
    op: 'select',
    versions: [since('iOS15', tensor('cond', BOOL), tensor('a', FIB, 'T'), tensor('b', FIB, 'T'))],
    // select.type_inference broadcasts a with b only: cond's shape does not enter the output type.
    infer: (a) => {
      const ta = a.t('a');
      return [{ dtype: ta.dtype, shape: broadcastShapes(ta.shape, a.t('b').shape, a.fail) }];
    },
    run: (a) => {
      const x = a.t('a');
      const y = a.t('b');
      const dtype =
        x.data instanceof Float32Array || y.data instanceof Float32Array
          ? floatOut(x.data instanceof Float32Array ? x : y)
          : x.dtype;
      return [mapBroadcast([a.t('cond'), x, y], dtype, (v) => (v[0] ? v[1]! : v[2]!), a.op.name)];
    },
    onnx: onnxSame('Where', 'cond', 'a', 'b'),
  },
  {
    op: 'range_1d',
    versions: [since('iOS15', tensor('end', FI, 'T'), tensor('start', FI, 'T'), tensor('step', FI, 'T'))],
    // range_1d.type_inference: a static length when all three are known, else a new symbol (the builder may name it).
    infer: (a) => {
      const [start, end, step] = ['start', 'end', 'step'].map((k) => a.literal(k));
      if (!start || !end || !step) return [{ dtype: a.t('start').dtype, shape: [`${a.label}_length`] }];
      const [s0, e0, st] = [start, end, step].map((l) => Number((l.value as number[])[0]));
      return [{ dtype: start.dtype as DType, shape: [Math.max(0, Math.ceil((e0! - s0!) / st!))] }];
    },
    run: (a) => {
      const [start, end, step] = ['start', 'end', 'step'].map((k) => a.nums(k)[0]!) as [number, number, number];
      const n = Math.max(0, Math.ceil((end - start) / step));
      const dtype = a.t('start').dtype;
      const out = allocData(dtype, n);
      for (let i = 0; i < n; i++) out[i] = start + i * step;
      return [{ dtype, shape: [n], data: out }];
    },
    // Range-11 takes scalars; MIL's may be one-element vectors, so each is reshaped to a scalar first. Integer
    // ranges run in int64: onnxruntime's shape inference compares the constant-propagated values of the inputs,
    // and a length taken from Shape propagates as int64 even through a Cast to int32 ("All inputs to 'Range'
    // op must be of the same type", onnxruntime 1.30, on packed graphs' positions).
    onnx: (a) => {
      const int = a.type('start').dtype !== 'fp32' && a.type('start').dtype !== 'fp16';
      const scalar = (k: string) => {
        const v = a.type(k).shape.length === 0 ? a.input(k) : a.node('Reshape', [a.input(k), a.int64s([])])[0]!;
        return int ? a.node('Cast', [v], { to: { int: ONNX_TYPE_INT64 } })[0]! : v;
      };
      const range = a.node('Range', [scalar('start'), scalar('end'), scalar('step')], {}, int ? undefined : a.out);
      if (int) a.node('Cast', range, { to: { int: ONNX_TYPE[a.outTypes[0]!.dtype] } }, a.out);
    },
  },
  {
    op: 'tile',
    versions: [since('iOS15', tensor('x', FIB, 'T'), tensor('reps', I32))],
    infer: (a) => {
      const x = a.t('x');
      const reps = a.ints('reps');
      if (reps.length !== x.shape.length) a.fail(`reps has ${reps.length} values for rank ${x.shape.length}`);
      return [
        {
          dtype: x.dtype,
          shape: x.shape.map((d, k) =>
            typeof d === 'number' ? d * reps[k]! : reps[k] === 1 ? d : a.fail('cannot tile a symbolic dimension'),
          ),
        },
      ];
    },
    run: (a) => {
      const x = a.t('x');
      const reps = a.ints('reps');
      const shape = x.shape.map((d, k) => d * reps[k]!);
      const out = allocData(x.dtype, numel(shape));
      const rank = shape.length;
      const idx = new Array<number>(rank).fill(0);
      for (let o = 0; o < out.length; o++) {
        let src = 0;
        for (let d = 0; d < rank; d++) src = src * x.shape[d]! + (idx[d]! % x.shape[d]!);
        out[o] = x.data[src]!;
        for (let d = rank - 1; d >= 0 && ++idx[d]! === shape[d]; d--) idx[d] = 0;
      }
      return [{ dtype: x.dtype, shape, data: out }];
    },
    onnx: (a) =>
      void a.node('Tile', [a.input('x'), a.node('Cast', [a.input('reps')], { to: { int: 7 } })[0]!], {}, a.out),
  },
  {
    op: 'shape',
    versions: [since('iOS15', tensor('x', FIB, 'T'))],
    infer: (a) => [{ dtype: 'int32', shape: [a.t('x').shape.length] }],
    run: (a) => {
      const x = a.t('x');
      return [{ dtype: 'int32', shape: [x.shape.length], data: Int32Array.from(x.shape) }];
    },
    // ONNX's Shape gives int64; MIL's int32.
    onnx: (a) => void a.node('Cast', a.node('Shape', [a.input('x')]), { to: { int: ONNX_TYPE.int32 } }, a.out),
  },
  {
    op: 'fill_like',
    versions: [since('iOS16', tensor('ref_tensor', FIB, 'T'), attr('value', FIB, literal('fp32', 0), 'U'))],
    infer: (a) => [{ dtype: a.t('value').dtype, shape: a.t('ref_tensor').shape }],
    run: (a) => {
      const ref = a.t('ref_tensor');
      const v = a.t('value');
      const out = allocData(v.dtype, numel(ref.shape));
      out.fill(v.data[0]!);
      return [{ dtype: v.dtype, shape: [...ref.shape], data: out }];
    },
  },
  // identity takes any tensor, list or dictionary (ListOrTensorOrDictInputType): no dtype constraint.
  {
    op: 'identity',
    versions: [since('iOS15', tensor('x', undefined))],
    infer: (a) => [a.t('x')],
    run: (a) => [a.t('x')],
    onnx: onnxSame('Identity', 'x'),
  },
  // const: the value lives in the op's `val` attribute (the reader turns const ops into Consts and Literals).
  {
    op: 'const',
    versions: [
      since('iOS15', constInput('val', ['fp16', 'fp32', 'int32', 'int16', 'int8', 'uint8', 'bool', 'string'])),
    ],
    infer: (a) => [a.t('val')],
    run: (a) => [a.t('val')],
  },
);
