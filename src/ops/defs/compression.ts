// Compressed weights: the constexpr ops of coremltools' ops/defs/iOS16/constexpr_ops.py
// (constexpr_lut_to_dense, constexpr_affine_dequantize) and ops/defs/iOS18/compression.py
// (constexpr_lut_to_dense with per-group tables, constexpr_blockwise_shift_scale). Each kernel runs the
// op's `decompress` exactly (the functions below, which the compressor also uses to measure what ships):
// float results are rounded to the table's or scale's dtype, as numpy computes them in that dtype.

import type { Dim, DType, TensorType } from '../../ir/graph.js';
import { numel } from '../../ir/graph.js';
import { roundToF16 } from '../../numeric/fp16.js';
import type { RtTensor } from '../../runtime/tensor.js';
import { attr, constInput, I32, register, since, type InferArgs, type Kernel, type OpArgs } from '../registry.js';
import { f32, fail } from './common.js';

const LUT_T: readonly DType[] = ['int8', 'uint8', 'fp16', 'fp32'];
const INDICES18: readonly DType[] = ['uint1', 'uint2', 'uint3', 'uint4', 'uint6', 'uint8'];
const SHIFT18: readonly DType[] = ['int4', 'uint4', 'int8', 'uint8', 'fp16', 'fp32'];
const DST: readonly DType[] = ['fp16', 'fp32'];

/** Bits of an index type of the iOS 18 LUT (types.get_bitwidth). */
const INDEX_BITS: Readonly<Record<string, number>> = { uint1: 1, uint2: 2, uint3: 3, uint4: 4, uint6: 6, uint8: 8 };

const inDtype = (values: Float32Array, dtype: DType): Float32Array => (dtype === 'fp16' ? roundToF16(values) : values);

/**
 * iOS 16 decompress: `lut[restore_elements_from_packed_bits(indices, log2(lut.size), prod(shape))]`, the
 * indices packed LSB first into uint8 bytes.
 */
export function lutToDenseIOS16(lut: ArrayLike<number>, packed: ArrayLike<number>, count: number): Float32Array {
  const nbits = Math.log2(lut.length);
  const mask = (1 << nbits) - 1;
  const out = new Float32Array(count);
  for (let i = 0, bit = 0; i < count; i++, bit += nbits) {
    const at = bit >> 3;
    const word = packed[at]! | ((at + 1 < packed.length ? packed[at + 1]! : 0) << 8);
    out[i] = lut[(word >> (bit & 7)) & mask]!;
  }
  return out;
}

/**
 * iOS 18 decompress (optimize/_utils.py lut_to_dense) for scalar palettization (VECTOR_SIZE 1): element i
 * of `indices` reads the table of the block it falls in, block_size[d] = indices.shape[d] / lut.shape[d].
 */
export function lutToDenseIOS18(
  indices: ArrayLike<number>,
  shape: readonly number[],
  lut: ArrayLike<number>,
  lutShape: readonly number[],
): Float32Array {
  const palettes = lutShape[shape.length]!;
  const out = new Float32Array(indices.length);
  forEachBlock(shape, lutShape, (i, table) => (out[i] = lut[table * palettes + indices[i]!]!));
  return out;
}

/**
 * Calls `f(i, b)` for each element i of a tensor of `shape` (row-major), b the row-major index of its block
 * in a grid of `grid` blocks (grid[k] divides shape[k]): which table, or which scale, the iOS 18 forms use.
 */
function forEachBlock(shape: readonly number[], grid: readonly number[], f: (i: number, b: number) => void): void {
  const rank = shape.length;
  const block = shape.map((d, k) => d / grid[k]!);
  const coord = new Array<number>(rank).fill(0);
  const n = numel(shape);
  for (let i = 0; i < n; i++) {
    let b = 0;
    for (let k = 0; k < rank; k++) b = b * grid[k]! + Math.floor(coord[k]! / block[k]!);
    f(i, b);
    for (let k = rank - 1; k >= 0; k--) {
      if (++coord[k]! < shape[k]!) break;
      coord[k] = 0;
    }
  }
}

/** iOS 16 decompress (dequantize_by_scale_and_zp): scale * (q - zero_point), scale and zero point scalars or vectors along `axis`. */
function affineDequantize(
  q: ArrayLike<number>,
  shape: readonly number[],
  zeroPoint: ArrayLike<number>,
  scale: ArrayLike<number>,
  axis: number,
): Float32Array {
  const ax = axis < 0 ? axis + shape.length : axis;
  const inner = numel(shape.slice(ax + 1));
  const dim = shape[ax]!;
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) {
    const c = Math.floor(i / inner) % dim;
    out[i] = scale[scale.length === 1 ? 0 : c]! * (q[i]! - zeroPoint[zeroPoint.length === 1 ? 0 : c]!);
  }
  return out;
}

/** iOS 18 decompress: scale * (data - offset), scale and offset repeated over blocks of data.shape / scale.shape. */
export function blockwiseShiftScale(
  data: ArrayLike<number>,
  shape: readonly number[],
  scale: ArrayLike<number>,
  scaleShape: readonly number[],
  offset?: ArrayLike<number>,
): Float32Array {
  const out = new Float32Array(data.length);
  forEachBlock(shape, scaleShape, (i, b) => (out[i] = scale[b]! * (offset ? data[i]! - offset[b]! : data[i]!)));
  return out;
}

const ints = (t: RtTensor): ArrayLike<number> => t.data;
const staticShape = (t: TensorType, a: InferArgs, what: string): number[] => {
  if (!t.shape.every((d): d is number => typeof d === 'number')) a.fail(`${what} must have a static shape`);
  return t.shape as number[];
};

// ---- constexpr_lut_to_dense ---------------------------------------------------------------------------

// iOS 16 type_inference: indices and lut are vectors, lut has 2/4/16/64/256 entries, indices hold
// ceil(nbits * prod(shape) / 8) bytes. iOS 18 (_validate_lut_inputs): lut has rank(indices) + 2, each
// indices dim divisible by lut's, NUM_PALETTES = 2^bits of the indices type; VECTOR_SIZE 1 without vector_axis.
function lutType(a: InferArgs): TensorType[] {
  const lut = a.t('lut');
  const indices = a.t('indices');
  if (a.has('shape')) {
    if (indices.shape.length !== 1) a.fail('Parameter indices needs to have rank == 1');
    if (lut.shape.length !== 1) a.fail('Parameter lut needs to have rank == 1');
    const n = lut.shape[0] as number;
    if (![2, 4, 16, 64, 256].includes(n))
      a.fail('Parameter lut should be a vector of size from one of {2, 4, 16, 64, 256}');
    const shape = a.ints('shape');
    if (indices.shape[0] !== Math.ceil((Math.log2(n) * numel(shape)) / 8))
      a.fail('Constraint violated, M = ceil(n_bits * product(shape) / 8) where M = indices.size');
    return [{ dtype: lut.dtype, shape }];
  }
  const ishape = staticShape(indices, a, 'indices');
  const lshape = staticShape(lut, a, 'lut');
  if (ishape.length < 1) a.fail("Parameter 'indices' needs to have at least rank 1, but got scalar.");
  if (lshape.length !== ishape.length + 2)
    a.fail(
      `Parameter 'lut' need to have 2 more dim than 'indices', but got ${lshape.length}-rank 'lut' and ${ishape.length}-rank 'indices'.`,
    );
  ishape.forEach((d, k) => {
    if (d % lshape[k]! !== 0)
      a.fail(
        `Each dimension of 'indices' should be divisible by each corresponding dimension of the 'lut'. However, at dim ${k}, the 'indices' has ${d} while 'lut' has ${lshape[k]}.`,
      );
  });
  const palettes = lshape[lshape.length - 2]!;
  const nbits = Math.log2(palettes);
  if (!Number.isInteger(nbits))
    a.fail(`Invalid parameter 'lut'; the second last dim should have size 2^nbits, but got ${palettes}.`);
  if (nbits !== INDEX_BITS[indices.dtype])
    a.fail(
      `Invalid parameter 'indices'; the second last dim indicate number of palettes (${palettes}), which means nbits is ${nbits}, so the dtype of indices should be uint${nbits}, but got ${indices.dtype}.`,
    );
  if (!a.has('vector_axis') && lshape[lshape.length - 1]! > 1)
    a.fail("When lut's last dim (VECTOR_SIZE) > 1, the parameter 'vector_axis' need to be provided.");
  const out: Dim[] = [...ishape];
  if (a.has('vector_axis'))
    out[a.ints('vector_axis')[0]!] = (out[a.ints('vector_axis')[0]!] as number) * lshape[lshape.length - 1]!;
  return [{ dtype: lut.dtype, shape: out }];
}

const lutKernel: Kernel = (a: OpArgs) => {
  const lut = a.t('lut');
  const indices = a.t('indices');
  const lutValues = lut.data instanceof Float32Array ? lut.data : Float32Array.from(lut.data);
  if (a.has('shape')) {
    const shape = a.ints('shape');
    return [
      { dtype: lut.dtype, shape, data: inDtype(lutToDenseIOS16(lutValues, ints(indices), numel(shape)), lut.dtype) },
    ];
  }
  if (lut.shape[lut.shape.length - 1] !== 1) fail(a, 'vector palettization (VECTOR_SIZE > 1) is not supported');
  return [
    {
      dtype: lut.dtype,
      shape: [...indices.shape],
      data: inDtype(lutToDenseIOS18(ints(indices), indices.shape, lutValues, lut.shape), lut.dtype),
    },
  ];
};

// ---- constexpr_affine_dequantize (iOS 16) ---------------------------------------------------------------

function affineType(a: InferArgs): TensorType[] {
  const q = a.t('quantized_data');
  const rank = q.shape.length;
  const axis = a.ints('axis')[0]!;
  if (axis < -rank || axis >= rank)
    a.fail('Parameter axis needs to be in the range -quantized_data.rank <= axis < quantized_data.rank');
  for (const name of ['scale', 'zero_point']) {
    const p = a.t(name);
    if (p.shape.length > 1) a.fail(`Parameter ${name} needs to be either a scalar or vector`);
    if (p.shape.length === 1 && p.shape[0] !== q.shape[axis < 0 ? axis + rank : axis])
      a.fail(
        `Parameter ${name}, if vector, needs to have same size as the dimension size along the parameter quantized_data`,
      );
  }
  return [{ dtype: a.t('scale').dtype, shape: [...q.shape] }];
}

const affineKernel: Kernel = (a) => {
  const q = a.t('quantized_data');
  const scale = a.t('scale');
  const out = affineDequantize(ints(q), q.shape, ints(a.t('zero_point')), f32(scale, a), a.ints('axis')[0]!);
  return [{ dtype: scale.dtype, shape: [...q.shape], data: inDtype(out, scale.dtype) }];
};

// ---- constexpr_blockwise_shift_scale (iOS 18) -----------------------------------------------------------

function shiftScaleType(a: InferArgs): TensorType[] {
  const data = a.t('data');
  const scale = a.t('scale');
  const shape = staticShape(data, a, 'data');
  const sshape = staticShape(scale, a, 'scale');
  if (shape.length !== sshape.length)
    a.fail(`Parameter 'data' and 'scale' need to have the same rank, but got ${shape.length} vs ${sshape.length}.`);
  if (shape.length < 1) a.fail("Parameter 'data' needs to have at least rank 1, but got scalar.");
  shape.forEach((d, k) => {
    if (d % sshape[k]! !== 0)
      a.fail(
        `Number of scales along each dimension should be a factor of corresponding dimension size of 'data'. However, at dim ${k}, the 'data' has ${d} while 'scale' has ${sshape[k]}.`,
      );
  });
  if (a.has('offset')) {
    const offset = a.t('offset');
    if (offset.shape.join() !== sshape.join())
      a.fail(
        `Invalid parameter 'offset'; the shape of 'offset' should match the shape of 'scale', but got (${offset.shape.join(', ')}) vs (${sshape.join(', ')}).`,
      );
    if (offset.dtype !== 'fp16' && offset.dtype !== 'fp32' && offset.dtype !== data.dtype)
      a.fail(
        `Invalid parameter 'offset'; the dtype of 'offset' should match the dtype of 'data', but got (${offset.dtype}) vs (${data.dtype}).`,
      );
  }
  return [{ dtype: scale.dtype, shape: [...shape] }];
}

const shiftScaleKernel: Kernel = (a) => {
  const data = a.t('data');
  const scale = a.t('scale');
  const offset = a.has('offset') ? a.t('offset').data : undefined;
  const out = blockwiseShiftScale(data.data, data.shape, f32(scale, a), scale.shape, offset);
  return [{ dtype: scale.dtype, shape: [...data.shape], data: inDtype(out, scale.dtype) }];
};

register(
  {
    op: 'constexpr_lut_to_dense',
    versions: [
      since('iOS16', constInput('indices', ['uint8']), constInput('lut', LUT_T, 'T'), constInput('shape', ['uint32'])),
      since(
        'iOS18',
        constInput('indices', INDICES18, 'IndicesT'),
        constInput('lut', LUT_T, 'T'),
        attr('vector_axis', I32, undefined),
      ),
    ],
    infer: lutType,
    run: lutKernel,
    constexpr: true,
  },
  {
    op: 'constexpr_affine_dequantize',
    versions: [
      since(
        'iOS16',
        constInput('quantized_data', ['uint8', 'int8'], 'SrcT'),
        constInput('zero_point', ['uint8', 'int8', 'fp32'], 'ZeroPointT'),
        constInput('scale', DST, 'DstT'),
        constInput('axis', I32),
      ),
    ],
    infer: affineType,
    run: affineKernel,
    constexpr: true,
  },
  {
    op: 'constexpr_blockwise_shift_scale',
    versions: [
      since(
        'iOS18',
        constInput('data', SHIFT18, 'SrcT'),
        constInput('scale', DST, 'DstT'),
        attr('offset', SHIFT18, undefined, 'OffsetT'),
      ),
    ],
    infer: shiftScaleType,
    run: shiftScaleKernel,
    constexpr: true,
  },
);
