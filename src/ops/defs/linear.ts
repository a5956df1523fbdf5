// Matrix products: coremltools' ops/defs/iOS15/conv.py (conv), linear.py (linear, matmul, einsum) and
// their iOS 17 versions (weights and bias may differ in dtype from x). All run on the GEMM kernels of
// runtime/matmul.ts.

import { literal, numel, type Dim, type TensorType } from '../../ir/graph.js';
import { matmul } from '../../runtime/matmul.js';
import { allocFloat, type RtTensor } from '../../runtime/tensor.js';
import {
  attr,
  BOOL,
  constInput,
  F,
  FI,
  I32,
  register,
  since,
  STR,
  tensor,
  tuple,
  type DefaultValue,
  type InferArgs,
  type Kernel,
  type OnnxArgs,
  type OpArgs,
} from '../registry.js';
import { broadcastShapes, einsumShape, parseEinsum } from '../shapes.js';
import { f32, fail } from './common.js';
import { transposeTensor } from './tensor-transformation.js';

// conv's defaults depend on the number of spatial dims, rank(x) - 2 (conv.default_inputs).
const perSpatial =
  (value: number, times = 1): DefaultValue =>
  (a) =>
    literal('int32', Array<number>((a.t('x').shape.length - 2) * times).fill(value));

const convKernel: Kernel = async (a) => {
  const x = a.t('x');
  const w = a.t('weight');
  const [nb, cin, h, wd] = x.shape as [number, number, number, number];
  const [cout, win, kh, kw] = w.shape as [number, number, number, number];
  if (x.shape.length !== 4 || kh !== 1 || kw !== 1 || win !== cin)
    fail(
      a,
      `only 1x1 2-D convolutions with matching channels are supported (x [${x.shape.join(', ')}], weight [${w.shape.join(', ')}])`,
    );
  if (a.ints('groups')[0] !== 1) fail(a, 'grouped convolutions are not supported');
  if (a.has('strides') && a.ints('strides').some((s) => s !== 1)) fail(a, 'strides other than 1 are not supported');
  const hw = h * wd;
  const out = allocFloat(nb * cout * hw);
  const bias = a.has('bias') ? f32(a.t('bias'), a) : undefined;
  const xd = f32(x, a);
  for (let b = 0; b < nb; b++) {
    const c = out.subarray(b * cout * hw, (b + 1) * cout * hw);
    await matmul({ M: cout, N: hw, K: cin, a: f32(w, a), b: xd.subarray(b * cin * hw, (b + 1) * cin * hw), c }, a.num);
    if (bias) for (let o = 0; o < cout; o++) for (let s = 0; s < hw; s++) c[o * hw + s]! += bias[o]!;
  }
  return [{ dtype: x.dtype, shape: [nb, cout, h, wd], data: out }];
};

// conv.type_inference, for the 1x1, stride-1, valid-padding convolutions that the model and the kernel use.
const convType = (a: InferArgs): TensorType[] => {
  const x = a.t('x');
  const w = a.t('weight');
  if (x.shape.length !== 4 || w.shape.length !== 4) a.fail('only 2-D convolutions over (N, C, H, W) are supported');
  if (w.shape[2] !== 1 || w.shape[3] !== 1) a.fail('only 1x1 convolutions are supported');
  if (a.ints('groups')[0] !== 1) a.fail('grouped convolutions are not supported');
  if (a.ints('strides').some((s) => s !== 1) || a.ints('dilations').some((d) => d !== 1))
    a.fail('strides and dilations other than 1 are not supported');
  if (x.shape[1] !== w.shape[1]) a.fail(`input has ${x.shape[1]} channels, weight expects ${w.shape[1]}`);
  if (a.has('bias') && a.t('bias').shape.join() !== String(w.shape[0]))
    a.fail(`bias [${a.t('bias').shape.join(', ')}] does not fit ${w.shape[0]} output channels`);
  return [{ dtype: x.dtype, shape: [x.shape[0]!, w.shape[0]!, x.shape[2]!, x.shape[3]!] }];
};

const linearKernel: Kernel = async (a) => {
  const x = a.t('x');
  const w = a.t('weight');
  const [nOut, nIn] = w.shape as [number, number];
  const rows = numel(x.shape) / nIn;
  const out = allocFloat(rows * nOut);
  await matmul({ M: rows, N: nOut, K: nIn, a: f32(x, a), b: f32(w, a), c: out, transB: true }, a.num);
  if (a.has('bias')) {
    const bias = f32(a.t('bias'), a);
    for (let r = 0; r < rows; r++) for (let o = 0; o < nOut; o++) out[r * nOut + o]! += bias[o]!;
  }
  return [{ dtype: x.dtype, shape: [...x.shape.slice(0, -1), nOut], data: out }];
};

/** M, K, N of x @ y with the transposes, and the broadcast batch dims (matmul.type_inference). */
function matmulDims<D extends Dim>(
  xs: readonly D[],
  ys: readonly D[],
  tx: boolean,
  ty: boolean,
  bad: (m: string) => never,
) {
  if (xs.length < 2 || ys.length < 2) bad('operands must have rank 2 or more');
  const m = tx ? xs[xs.length - 1]! : xs[xs.length - 2]!;
  const kx = tx ? xs[xs.length - 2]! : xs[xs.length - 1]!;
  const ky = ty ? ys[ys.length - 1]! : ys[ys.length - 2]!;
  const n = ty ? ys[ys.length - 2]! : ys[ys.length - 1]!;
  if (kx !== ky) bad(`inner dimensions ${kx} and ${ky} differ`);
  return { m, k: kx, n, batch: broadcastShapes(xs.slice(0, -2), ys.slice(0, -2), bad) };
}

const matmulKernel: Kernel = async (a) => {
  const x = a.t('x');
  const y = a.t('y');
  const tx = a.bools('transpose_x')[0]!;
  const ty = a.bools('transpose_y')[0]!;
  const { m: M, k: K, n: N } = matmulDims(x.shape, y.shape, tx, ty, (msg) => fail(a, msg));
  const bx = numel(x.shape.slice(0, -2));
  const by = numel(y.shape.slice(0, -2));
  if (bx !== by && bx !== 1 && by !== 1) fail(a, 'batch dimensions must match or be 1');
  const batch = Math.max(bx, by);
  const out = allocFloat(batch * M * N);
  for (let b = 0; b < batch; b++) {
    const xs = f32(x, a).subarray((bx === 1 ? 0 : b) * M * K, ((bx === 1 ? 0 : b) + 1) * M * K);
    const ys = f32(y, a).subarray((by === 1 ? 0 : b) * K * N, ((by === 1 ? 0 : b) + 1) * K * N);
    await matmul({ M, N, K, a: xs, b: ys, c: out.subarray(b * M * N, (b + 1) * M * N), transA: tx, transB: ty }, a.num);
  }
  const batchShape = (bx >= by ? x.shape : y.shape).slice(0, -2);
  return [{ dtype: x.dtype, shape: [...batchShape, M, N], data: out }];
};

/** The equation's labels renumbered by first appearance: "bkhc,bchq->bkhq" is "0123,0324,0124". */
function einsumForm(lx: string, ly: string, lo: string): string {
  const ids = new Map<string, number>();
  const id = (l: string) => (ids.has(l) ? ids.get(l)! : (ids.set(l, ids.size), ids.size - 1));
  return [lx, ly, lo].map((s) => [...s].map(id).join('')).join(',');
}

/** coremltools' rank-4 form, "abcd,adce->abce" in any letters. */
const RANK4 = '0123,0324,0124';

// einsum.type_inference accepts two equation forms only: "abcd,adce->abce" (rank 4) and "abc,cbd->abd"
// (rank 3), in any letters; anything else coremltools refuses ("unsupported einsum equation").
function checkEinsumForm(eq: string, bad: (m: string) => never): void {
  const form = einsumForm(...parseEinsum(eq, bad));
  if (form !== RANK4 && form !== '012,213,013')
    bad(`einsum equation "${eq}" is not one of the two forms coremltools accepts (abcd,adce->abce or abc,cbd->abd)`);
}

// coremltools' rank-4 form "abcd,adce->abce": for each a and c, out[a, :, c, :] = x[a, :, c, :] @ y[a, :, c, :].
// Run in place with row strides (no transposed copies): the banded attention's blocks lie on the c axis.
async function einsumRank4(a: OpArgs, x: RtTensor, y: RtTensor): Promise<RtTensor> {
  const [n, K1, H, C] = x.shape as [number, number, number, number];
  const Q = y.shape[3]!;
  if (y.shape[0] !== n || y.shape[1] !== C || y.shape[2] !== H)
    fail(a, `operands [${x.shape.join(', ')}] and [${y.shape.join(', ')}] do not fit`);
  const [xd, yd] = [f32(x, a), f32(y, a)];
  const out = allocFloat(n * K1 * H * Q);
  for (let b = 0; b < n; b++) {
    for (let h = 0; h < H; h++) {
      await matmul(
        {
          M: K1,
          N: Q,
          K: C,
          a: xd.subarray(b * K1 * H * C + h * C),
          lda: H * C,
          b: yd.subarray(b * C * H * Q + h * Q),
          ldb: H * Q,
          c: out.subarray(b * K1 * H * Q + h * Q),
          ldc: H * Q,
        },
        a.num,
      );
    }
  }
  return { dtype: x.dtype, shape: [n, K1, H, Q], data: out };
}

// Two-operand einsum as a batched product: labels in both inputs and the output are batch dims,
// in both inputs only are contracted, in one input and the output are free.
const einsumKernel: Kernel = async (a) => {
  const [x, y] = a.tuple('values') as [RtTensor, RtTensor];
  const eq = a.str('equation');
  const [lx, ly, lo] = parseEinsum(eq, (m) => fail(a, m));
  if (einsumForm(lx, ly, lo) === RANK4 && x.shape.length === 4 && y.shape.length === 4)
    return [await einsumRank4(a, x, y)];
  if (lx.length !== x.shape.length || ly.length !== y.shape.length)
    fail(a, `equation "${eq}" does not fit the operand ranks`);
  const size = new Map<string, number>();
  [...lx].forEach((l, i) => size.set(l, x.shape[i]!));
  for (const [i, l] of [...ly].entries()) {
    const prev = size.get(l);
    if (prev !== undefined && prev !== y.shape[i])
      fail(a, `label ${l} is ${prev} in one operand and ${y.shape[i]} in the other`);
    size.set(l, y.shape[i]!);
  }
  const batch = [...lo].filter((l) => lx.includes(l) && ly.includes(l));
  const contract = [...lx].filter((l) => ly.includes(l) && !lo.includes(l));
  const freeX = [...lx].filter((l) => !ly.includes(l));
  const freeY = [...ly].filter((l) => !lx.includes(l));
  if ([...lo].some((l) => !batch.includes(l) && !freeX.includes(l) && !freeY.includes(l)))
    fail(a, `equation "${eq}" is not supported`);
  const prod = (ls: string[]) => ls.reduce((p, l) => p * size.get(l)!, 1);
  const [B, M, K, N] = [prod(batch), prod(freeX), prod(contract), prod(freeY)];
  const xp = transposeTensor(
    x,
    [...batch, ...freeX, ...contract].map((l) => lx.indexOf(l)),
  );
  const yp = transposeTensor(
    y,
    [...batch, ...contract, ...freeY].map((l) => ly.indexOf(l)),
  );
  const out = allocFloat(B * M * N);
  for (let b = 0; b < B; b++) {
    await matmul(
      {
        M,
        N,
        K,
        a: f32(xp, a).subarray(b * M * K, (b + 1) * M * K),
        b: f32(yp, a).subarray(b * K * N, (b + 1) * K * N),
        c: out.subarray(b * M * N, (b + 1) * M * N),
      },
      a.num,
    );
  }
  const produced = [...batch, ...freeX, ...freeY];
  const res: RtTensor = { dtype: x.dtype, shape: produced.map((l) => size.get(l)!), data: out };
  return [
    transposeTensor(
      res,
      [...lo].map((l) => produced.indexOf(l)),
    ),
  ];
};

// With `channelsFirst` (a session that onnxruntime does not optimise, so no optimiser removes transposes),
// the product is W @ x on x's own (Cin, S) layout instead, with no Transpose: a synth-base pass of 470 tokens
// 9% (float16 emulation) to 14% (float32) faster, session included. A weight many times taller than wide
// (the vocabulary projection, 50,368 x 768) keeps x^T W^T: as the GEMM's left operand it ran 25-35% slower.
const TALL = 8;

// conv: the 1x1, stride-1 convolutions that convType accepts are products for a batch of one, written
// channels last: x (1, Cin, H, W) -> (1, H, W, Cin) @ W^T (Cin, Cout) -> (1, Cout, H, W). onnxruntime
// pre-packs a MatMul's constant right operand for its GEMM (W^T, folded from the transpose at load time),
// not a constant left one: W @ x on (Cin, S) ran 1.4x the GEMM time at 128 tokens. The transposes around it
// are the ones around LayerNormalization (normalization.ts), so onnxruntime's transpose optimiser cancels
// them between a norm and the projection that reads it, and pushes the rest through elementwise ops. (Its
// Conv would reorder (1, C, 1, S) into blocked layouts and back around every projection.) Other batches and
// groups take ONNX Conv with a 1x1 kernel.
const convOnnx = (a: OnnxArgs): void => {
  const [n, cin] = a.type('x').shape;
  const cout = a.type('weight').shape[0];
  if (n !== 1 || typeof cin !== 'number' || typeof cout !== 'number' || a.ints('groups')[0] !== 1) {
    const inputs = [a.input('x'), a.input('weight'), ...(a.has('bias') ? [a.input('bias')] : [])];
    a.node('Conv', inputs, { kernel_shape: { ints: [1, 1] }, group: { int: a.ints('groups')[0]! } }, a.out);
    return;
  }
  const w = a.node('Reshape', [a.input('weight'), a.int64s([cout, cin])]); // (Cout, Cin)
  const h = a.type('x').shape[2];
  if (a.channelsFirst && typeof h === 'number' && cout <= TALL * cin) {
    // W (Cout, Cin) @ x (Cin, S): the product in the graph's own layout, nothing moved.
    let y = a.node('MatMul', [w[0]!, a.node('Reshape', [a.input('x'), a.int64s([cin, -1])])[0]!]);
    if (a.has('bias')) y = a.node('Add', [y[0]!, a.node('Reshape', [a.input('bias'), a.int64s([cout, 1])])[0]!]);
    a.node('Reshape', [y[0]!, a.int64s([1, cout, h, -1])], {}, a.out);
    return;
  }
  const wT = a.node('Transpose', w, { perm: { ints: [1, 0] } }); // (Cin, Cout)
  const x = a.node('Transpose', [a.input('x')], { perm: { ints: [0, 2, 3, 1] } }); // (1, H, W, Cin)
  let y = a.node('MatMul', [x[0]!, wT[0]!]); // (1, H, W, Cout)
  if (a.has('bias')) y = a.node('Add', [y[0]!, a.input('bias')]);
  a.node('Transpose', y, { perm: { ints: [0, 3, 1, 2] } }, a.out); // (1, Cout, H, W)
};

// Swaps the last two axes of an ONNX value of rank `rank`.
const swapLast = (a: OnnxArgs, v: string, rank: number): string => {
  const perm = Array.from({ length: rank }, (_, k) => k);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return a.node('Transpose', [v], { perm: { ints: perm } })[0]!;
};

// linear: x W^T + b. onnxruntime folds the transpose of a constant weight at load time.
const linearOnnx = (a: OnnxArgs): void => {
  const prod = [a.input('x'), swapLast(a, a.input('weight'), 2)];
  if (a.has('bias')) a.node('Add', [a.node('MatMul', prod)[0]!, a.input('bias')], {}, a.out);
  else a.node('MatMul', prod, {}, a.out);
};

const matmulOnnx = (a: OnnxArgs): void => {
  const side = (key: string, flag: string) =>
    a.bools(flag)[0] ? swapLast(a, a.input(key), a.type(key).shape.length) : a.input(key);
  a.node('MatMul', [side('x', 'transpose_x'), side('y', 'transpose_y')], {}, a.out);
};

// einsum. The rank-4 form abcd,adce->abce (attention's scores and its weighted sum) becomes a batched MatMul
// over (a, c), computed transposed: out^T (a, c, e, b) = y^T (a, c, e, d) @ x^T (a, c, d, b), then moved to
// (a, b, c, e). The scores then lie keys-last, and the transpose after one einsum is the inverse of the one
// before the next, so onnxruntime's transpose optimiser cancels them through the mask's Add and the Softmax,
// which then runs over its last axis. The other form goes to ONNX Einsum-12, which reads the same equation.
const einsumOnnx = (a: OnnxArgs): void => {
  const [x, y] = a.tuple('values') as [string, string];
  const [lx, ly, lo] = parseEinsum(a.str('equation'), a.fail);
  if (einsumForm(lx, ly, lo) !== RANK4) {
    a.node('Einsum', [x, y], { equation: { str: a.str('equation') } }, a.out);
    return;
  }
  const toLast = { perm: { ints: [0, 2, 3, 1] } };
  const prod = a.node('MatMul', [a.node('Transpose', [y], toLast)[0]!, a.node('Transpose', [x], toLast)[0]!]); // (a, c, e, b)
  a.node('Transpose', prod, { perm: { ints: [0, 3, 1, 2] } }, a.out); // (a, b, c, e)
};

const CONV_ATTRS = [
  attr('strides', I32, perSpatial(1)),
  attr('pad_type', STR, literal('string', 'valid')),
  attr('pad', I32, perSpatial(0, 2)),
  attr('dilations', I32, perSpatial(1)),
  attr('groups', I32, literal('int32', 1)),
];

register(
  {
    op: 'conv',
    versions: [
      since('iOS15', tensor('x', F, 'T'), tensor('weight', F, 'T'), attr('bias', F, undefined, 'T'), ...CONV_ATTRS),
      // From iOS 17 the weight and bias may differ in dtype from x, and bias need not be const.
      since(
        'iOS17',
        tensor('x', F, 'T'),
        tensor('weight', F, 'U'),
        tensor('bias', F, 'U', { optional: true }),
        ...CONV_ATTRS,
      ),
    ],
    infer: convType,
    run: convKernel,
    onnx: convOnnx,
  },
  {
    op: 'linear',
    versions: [
      since('iOS15', tensor('x', FI, 'T'), constInput('weight', FI, 'T'), attr('bias', FI, undefined, 'T')),
      since('iOS17', tensor('x', FI, 'T'), constInput('weight', FI, 'U'), attr('bias', FI, undefined, 'U')),
    ],
    infer: (a) => {
      const x = a.t('x');
      const w = a.t('weight');
      if (x.shape[x.shape.length - 1] !== w.shape[1])
        a.fail(`input width ${x.shape[x.shape.length - 1]} does not match weight [${w.shape.join(', ')}]`);
      return [{ dtype: x.dtype, shape: [...x.shape.slice(0, -1), w.shape[0]!] }];
    },
    run: linearKernel,
    onnx: linearOnnx,
  },
  {
    op: 'matmul',
    versions: [
      since(
        'iOS15',
        tensor('x', FI, 'T'),
        tensor('y', FI, 'T'),
        attr('transpose_x', BOOL, literal('bool', false)),
        attr('transpose_y', BOOL, literal('bool', false)),
      ),
      since(
        'iOS17',
        tensor('x', FI, 'T'),
        tensor('y', FI, 'U'),
        attr('transpose_x', BOOL, literal('bool', false)),
        attr('transpose_y', BOOL, literal('bool', false)),
      ),
    ],
    infer: (a) => {
      const x = a.t('x');
      const { m, n, batch } = matmulDims(
        x.shape,
        a.t('y').shape,
        a.bools('transpose_x')[0]!,
        a.bools('transpose_y')[0]!,
        a.fail,
      );
      return [{ dtype: x.dtype, shape: [...batch, m, n] }];
    },
    run: matmulKernel,
    onnx: matmulOnnx,
  },
  {
    op: 'einsum',
    versions: [since('iOS15', tuple('values'), constInput('equation', STR))],
    infer: (a) => {
      const vs = a.tuple('values');
      if (vs.length !== 2) a.fail('einsum takes two values');
      const [x, y] = vs as [TensorType, TensorType];
      if (x.dtype !== y.dtype) a.fail(`values have dtypes ${x.dtype} and ${y.dtype}`);
      const eq = a.str('equation');
      checkEinsumForm(eq, a.fail);
      return [{ dtype: x.dtype, shape: einsumShape(eq, x.shape, y.shape, a.fail) }];
    },
    run: einsumKernel,
    onnx: einsumOnnx,
  },
);
