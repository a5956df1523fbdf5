// Layout ops: coremltools' ops/defs/iOS15/tensor_transformation.py and iOS17/tensor_transformation.py
// (reshape, expand_dims, squeeze, transpose, slice_by_index, slice_by_size). Shape-only ops share their
// input's data; slices and transposes copy.

import { numel, type Dim } from '../../ir/graph.js';
import { allocData, stridesOf, type RtTensor } from '../../runtime/tensor.js';
import {
  attr,
  BOOL,
  constInput,
  FIB,
  FIB17,
  I32,
  IDX17,
  register,
  since,
  tensor,
  type InferArgs,
  type Kernel,
  type OnnxArgs,
  type OpArgs,
} from '../registry.js';
import { normAxis, reshapeShape } from '../shapes.js';
import { fail, ONNX_END } from './common.js';

const relabel = (x: RtTensor, shape: number[]): RtTensor[] => [{ dtype: x.dtype, shape, data: x.data }];

/** expand_dims' output shape: a 1 at each of `axes` (counted in the output's rank). */
function expandedShape<D extends Dim>(shape: readonly D[], axesIn: number[]): (D | 1)[] {
  const rank = shape.length + axesIn.length;
  const axes = axesIn.map((d) => normAxis(d, rank));
  const out: (D | 1)[] = [];
  let k = 0;
  for (let d = 0; d < rank; d++) out.push(axes.includes(d) ? 1 : shape[k++]!);
  return out;
}

/** squeeze's kept axes: all but `axes`, or all but the size-1 axes when absent. */
const squeezedShape = <D extends Dim>(shape: readonly D[], axes: number[] | undefined): D[] => {
  const drop = axes?.map((d) => normAxis(d, shape.length)) ?? shape.flatMap((d, i) => (d === 1 ? [i] : []));
  return shape.filter((_, i) => !drop.includes(i));
};

/** Generic N-d transpose (a copy unless only size-1 axes move). */
export function transposeTensor(x: RtTensor, perm: number[]): RtTensor {
  const shape = perm.map((p) => x.shape[p]!);
  const moved = perm.filter((p) => x.shape[p] !== 1);
  if (moved.every((p, i) => i === 0 || p > moved[i - 1]!)) return { dtype: x.dtype, shape, data: x.data };
  const inStrides = stridesOf(x.shape);
  const s = perm.map((p) => inStrides[p]!);
  const out = allocData(x.dtype, x.data.length);
  const rank = shape.length;
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let o = 0; o < out.length; o++) {
    out[o] = x.data[src]!;
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]!++;
      src += s[d]!;
      if (idx[d]! < shape[d]!) break;
      src -= s[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return { dtype: x.dtype, shape, data: out };
}

/**
 * The box [begin, begin + size) with steps `stride` of x: a view of x's data when the box is one contiguous
 * run (unit steps, size 1 before the first cut axis, whole axes after it: a split or per-head slice over
 * channels), else a copy.
 */
export function sliceBox(x: RtTensor, begin: number[], size: number[], stride: number[]): RtTensor {
  const rank = x.shape.length;
  const inStrides = stridesOf(x.shape);
  const cut = size.findIndex((n, k) => n !== x.shape[k]);
  if (
    stride.every((s) => s === 1) &&
    size.slice(0, Math.max(cut, 0)).every((n) => n === 1) &&
    size.every((n, k) => k <= cut || (begin[k] === 0 && n === x.shape[k]))
  ) {
    const at = begin.reduce((p, b, k) => p + b * inStrides[k]!, 0);
    return { dtype: x.dtype, shape: size, data: x.data.subarray(at, at + numel(size)) };
  }
  const out = allocData(x.dtype, numel(size));
  if (out.length === 0) return { dtype: x.dtype, shape: size, data: out };
  // The innermost contiguous run is copied with subarray/set when its stride is 1.
  const inner = size[rank - 1]!;
  const innerStep = stride[rank - 1]!;
  const idx = new Array<number>(rank).fill(0);
  let o = 0;
  for (;;) {
    let src = 0;
    for (let d = 0; d < rank - 1; d++) src += (begin[d]! + idx[d]! * stride[d]!) * inStrides[d]!;
    src += begin[rank - 1]!;
    if (innerStep === 1) (out as Float32Array).set((x.data as Float32Array).subarray(src, src + inner), o);
    else for (let j = 0; j < inner; j++) out[o + j] = x.data[src + j * innerStep]!;
    o += inner;
    let d = rank - 2;
    for (; d >= 0; d--) {
      if (++idx[d]! < size[d]!) break;
      idx[d] = 0;
    }
    if (d < 0) break;
  }
  return { dtype: x.dtype, shape: size, data: out };
}

interface SliceSpec {
  begin: number[];
  end: number[];
  stride: number[];
  beginMask: boolean[];
  endMask: boolean[];
  squeezeMask: boolean[];
}

const sliceSpec = (a: Pick<InferArgs | OpArgs, 'has' | 'ints' | 'bools'>, rank: number): SliceSpec => {
  const opt = <T>(key: string, read: (k: string) => T[], fill: T): T[] =>
    a.has(key) ? read(key) : Array<T>(rank).fill(fill);
  return {
    begin: a.ints('begin'),
    end: a.ints('end'),
    stride: opt('stride', a.ints, 1),
    beginMask: opt('begin_mask', a.bools, false),
    endMask: opt('end_mask', a.bools, false),
    squeezeMask: opt('squeeze_mask', a.bools, false),
  };
};

/** Begin and length of a slice along one axis of size d (negative indices count from the end, bounds clamp). */
function sliceAxis(s: SliceSpec, k: number, d: number): { b: number; len: number } {
  const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
  const st = s.stride[k]!;
  const b = s.beginMask[k] ? 0 : clamp(s.begin[k]!);
  const e = s.squeezeMask[k] ? b + 1 : s.endMask[k] ? d : clamp(s.end[k]!);
  return { b, len: Math.max(0, Math.ceil((e - b) / st)) };
}

// slice_by_index.type_inference (ops/defs/_utils.py solve_slice_by_index_shape): an axis with both masks
// keeps its size (a symbol with stride 1); bounds that give 0 or 1 element give that size even on a
// symbolic axis; any other slice of a symbolic axis is a new symbol; a static axis is sliced as Python does.
const sliceByIndexType = (a: InferArgs) => {
  const x = a.t('x');
  const s = sliceSpec(a, x.shape.length);
  if (s.begin.length !== x.shape.length || s.end.length !== x.shape.length)
    a.fail(`begin and end must have ${x.shape.length} values`);
  const shape: Dim[] = [];
  x.shape.forEach((d, k) => {
    const [b, e, st] = [s.begin[k]!, s.end[k]!, s.stride[k]!];
    if (st <= 0) a.fail('only positive strides are supported');
    if (s.squeezeMask[k]) return;
    if (s.beginMask[k] && s.endMask[k]) {
      shape.push(typeof d === 'number' ? Math.ceil(d / st) : st === 1 ? d : `${a.label}_d${k}`);
      return;
    }
    if (!s.beginMask[k] && !s.endMask[k] && b >= 0 && e >= 0) {
      if (e < b) a.fail(`unsupported bounds (${b}, ${e}, ${st}) on axis ${k}`);
      const n = Math.ceil((e - b) / st);
      if (n <= 1 || typeof d === 'number') {
        shape.push(typeof d === 'number' ? sliceAxis(s, k, d).len : n);
        return;
      }
    }
    if (!s.beginMask[k] && s.endMask[k] && b === -1) {
      shape.push(1);
      return;
    }
    shape.push(typeof d === 'number' ? sliceAxis(s, k, d).len : `${a.label}_d${k}`);
  });
  return [{ dtype: x.dtype, shape }];
};

const sliceByIndex: Kernel = (a) => {
  const x = a.t('x');
  const s = sliceSpec(a, x.shape.length);
  const begin: number[] = [];
  const size: number[] = [];
  x.shape.forEach((d, k) => {
    if (s.stride[k]! <= 0) fail(a, 'only positive strides are supported');
    const { b, len } = sliceAxis(s, k, d);
    begin.push(b);
    size.push(len);
  });
  const out = sliceBox(x, begin, size, s.stride);
  return [{ ...out, shape: size.filter((_, k) => !s.squeezeMask[k]) }];
};

// slice_by_size: size -1 runs to the end of the axis.
const sliceBySizeShape = (x: readonly Dim[], begin: number[], size: number[], bad: (m: string) => never): Dim[] =>
  x.map((d, k) => {
    if (size[k] !== -1) return size[k]!;
    if (typeof d !== 'number') return bad(`cannot slice symbolic dimension ${d} to its end`);
    return d - normAxis(begin[k]!, d);
  });

// slice_by_index as ONNX Slice over every axis (masks become 0 and ONNX_END), then Squeeze for squeeze_mask.
const sliceByIndexOnnx = (a: OnnxArgs): void => {
  const rank = a.type('x').shape.length;
  const s = sliceSpec(a, rank);
  if (s.stride.some((st) => st <= 0)) a.fail('only positive strides are supported');
  const starts = s.begin.map((b, k) => (s.beginMask[k] ? 0 : b));
  const ends = s.end.map((e, k) =>
    s.squeezeMask[k] ? (starts[k] === -1 ? ONNX_END : starts[k]! + 1) : s.endMask[k] ? ONNX_END : e,
  );
  const axes = Array.from({ length: rank }, (_, k) => k);
  const squeezed = axes.filter((k) => s.squeezeMask[k]);
  const inputs = [a.input('x'), a.int64s(starts), a.int64s(ends), a.int64s(axes), a.int64s(s.stride)];
  if (squeezed.length === 0) a.node('Slice', inputs, {}, a.out);
  else a.node('Squeeze', [a.node('Slice', inputs)[0]!, a.int64s(squeezed)], {}, a.out);
};

// x of the iOS 15 ops, and of their iOS 17 versions (which add the 8- and 16-bit types).
const X15 = tensor('x', FIB, 'T');
const X17 = tensor('x', FIB17, 'T');

register(
  {
    op: 'reshape',
    versions: [since('iOS15', X15, tensor('shape', I32)), since('iOS17', X17, tensor('shape', IDX17, 'U'))],
    infer: (a) => {
      const x = a.t('x');
      return [{ dtype: x.dtype, shape: reshapeShape(x.shape, a.ints('shape'), a.fail) }];
    },
    run: (a) => {
      const x = a.t('x');
      const shape = reshapeShape(x.shape, a.ints('shape'), (m) => fail(a, m)) as number[];
      return relabel(x, shape);
    },
    // MIL's shape holds no 0 (ONNX's "copy this axis"), so the values carry over as they are.
    onnx: (a) => void a.node('Reshape', [a.input('x'), a.int64s(a.ints('shape'))], {}, a.out),
  },
  {
    op: 'expand_dims',
    versions: [since('iOS15', X15, constInput('axes', I32)), since('iOS17', X17, constInput('axes', I32))],
    infer: (a) => {
      const x = a.t('x');
      return [{ dtype: x.dtype, shape: expandedShape(x.shape, a.ints('axes')) }];
    },
    run: (a) => {
      const x = a.t('x');
      return relabel(x, expandedShape(x.shape, a.ints('axes')));
    },
    onnx: (a) => void a.node('Unsqueeze', [a.input('x'), a.int64s(a.ints('axes'))], {}, a.out),
  },
  {
    op: 'squeeze',
    versions: [since('iOS15', X15, attr('axes', I32, undefined)), since('iOS17', X17, attr('axes', I32, undefined))],
    infer: (a) => {
      const x = a.t('x');
      return [{ dtype: x.dtype, shape: squeezedShape(x.shape, a.has('axes') ? a.ints('axes') : undefined) }];
    },
    run: (a) => {
      const x = a.t('x');
      return relabel(x, squeezedShape(x.shape, a.has('axes') ? a.ints('axes') : undefined));
    },
    onnx: (a) =>
      void a.node('Squeeze', a.has('axes') ? [a.input('x'), a.int64s(a.ints('axes'))] : [a.input('x')], {}, a.out),
  },
  {
    op: 'transpose',
    versions: [since('iOS15', X15, constInput('perm', I32)), since('iOS17', X17, constInput('perm', I32))],
    infer: (a) => {
      const x = a.t('x');
      const perm = a.ints('perm').map((p) => normAxis(p, x.shape.length));
      if (perm.length !== x.shape.length || new Set(perm).size !== perm.length)
        a.fail(`perm [${perm.join(', ')}] is not a permutation of rank ${x.shape.length}`);
      return [{ dtype: x.dtype, shape: perm.map((p) => x.shape[p]!) }];
    },
    run: (a) => {
      const x = a.t('x');
      return [
        transposeTensor(
          x,
          a.ints('perm').map((p) => normAxis(p, x.shape.length)),
        ),
      ];
    },
    onnx: (a) =>
      void a.node(
        'Transpose',
        [a.input('x')],
        { perm: { ints: a.ints('perm').map((p) => normAxis(p, a.type('x').shape.length)) } },
        a.out,
      ),
  },
  {
    op: 'slice_by_index',
    versions: [
      since(
        'iOS15',
        X15,
        tensor('begin', I32),
        tensor('end', I32),
        attr('stride', I32, undefined),
        attr('begin_mask', BOOL, undefined),
        attr('end_mask', BOOL, undefined),
        attr('squeeze_mask', BOOL, undefined),
      ),
      since(
        'iOS17',
        X17,
        tensor('begin', IDX17, 'U'),
        tensor('end', IDX17, 'U'),
        attr('stride', IDX17, undefined, 'U'),
        attr('begin_mask', BOOL, undefined),
        attr('end_mask', BOOL, undefined),
        attr('squeeze_mask', BOOL, undefined),
      ),
    ],
    infer: sliceByIndexType,
    run: sliceByIndex,
    onnx: sliceByIndexOnnx,
  },
  {
    op: 'slice_by_size',
    versions: [
      since('iOS15', X15, tensor('begin', I32), tensor('size', I32)),
      since('iOS17', X17, tensor('begin', IDX17, 'U'), tensor('size', IDX17, 'U')),
    ],
    infer: (a) => {
      const x = a.t('x');
      return [{ dtype: x.dtype, shape: sliceBySizeShape(x.shape, a.ints('begin'), a.ints('size'), a.fail) }];
    },
    run: (a) => {
      const x = a.t('x');
      const begin = a.ints('begin').map((b, k) => normAxis(b, x.shape[k]!));
      const size = sliceBySizeShape(x.shape, begin, a.ints('size'), (m) => fail(a, m)) as number[];
      if (size.some((s, k) => s < 0 || begin[k]! + s > x.shape[k]!))
        fail(a, `slice [${begin.join(', ')}] + [${size.join(', ')}] is outside [${x.shape.join(', ')}]`);
      return [
        sliceBox(
          x,
          begin,
          size,
          size.map(() => 1),
        ),
      ];
    },
    onnx: (a) => {
      const begin = a.ints('begin');
      const ends = a.ints('size').map((n, k) => (n === -1 ? ONNX_END : begin[k]! + n));
      if (begin.some((b, k) => b < 0 && ends[k] !== ONNX_END))
        a.fail('negative begins are not supported in ONNX export');
      a.node('Slice', [a.input('x'), a.int64s(begin), a.int64s(ends)], {}, a.out);
    },
  },
);
