// The op registry (src/ops/): type inference as coremltools' type_inference computes it, the defaults its
// builder writes, and kernels that produce exactly the types that inference declares.

import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { GraphBuilder, bool, i32, str } from '../src/graph/builder.js';
import { literal, type Dim, type TensorType } from '../src/ir/graph.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { buildModel } from '../src/model/model.js';
import { type BuildOptions, type ModelSource } from '../src/model/options.js';
import { foldWeights, IdentityRotation } from '../src/rotation/index.js';
import { inferArgs, isConstexpr, knownOps, opDef, opSignature, type InputTypes } from '../src/ops/index.js';
import { Interpreter } from '../src/graph/interpreter.js';
import type { RtTensor } from '../src/runtime/tensor.js';
import { FX } from './helpers/fixtures.js';

const T = (dtype: TensorType['dtype'], ...shape: Dim[]): TensorType => ({ dtype, shape });
const infer = (op: string, inputs: InputTypes): TensorType[] => opDef(op)!.infer(inferArgs(op, `${op} "t"`, inputs));
const shapeOf = (op: string, inputs: InputTypes): Dim[] => infer(op, inputs)[0]!.shape;

describe('type inference follows coremltools', () => {
  it('select broadcasts its two branches only: cond does not shape the output (control_flow.py select)', () => {
    const cond = T('bool', 1, 4, 1, 4);
    expect(infer('select', { cond, a: literal('fp16', -1e4), b: literal('fp16', 0) })).toEqual([T('fp16')]);
    expect(shapeOf('select', { cond, a: literal('fp16', -1e4), b: T('fp16', 1, 4, 1, 1) })).toEqual([1, 4, 1, 1]);
    expect(shapeOf('select', { cond, a: T('fp16', 1, 1, 1, 4), b: T('fp16', 1, 4, 1, 1) })).toEqual([1, 4, 1, 4]);
  });

  it('elementwise ops broadcast numpy-style, symbols against 1 or themselves, and refuse the rest', () => {
    expect(shapeOf('add', { x: T('fp32', 1, 4, 1, 1), y: T('fp32', 1, 1, 1, 5) })).toEqual([1, 4, 1, 5]);
    expect(shapeOf('mul', { x: T('fp32', 1, 'S'), y: literal('fp32', 2) })).toEqual([1, 'S']);
    expect(shapeOf('sub', { x: T('int32', 'S', 1), y: T('int32', 1, 'S') })).toEqual(['S', 'S']);
    expect(() => infer('add', { x: T('fp32', 1, 4), y: T('fp32', 1, 3) })).toThrow(/not broadcastable/);
    expect(infer('greater', { x: T('fp16', 1, 4, 1, 1), y: literal('fp16', 0) })[0]!.dtype).toBe('bool');
  });

  it('matmul broadcasts batch dims, honours the transposes and checks the inner size (linear.py matmul)', () => {
    expect(shapeOf('matmul', { x: T('fp16', 64, 32), y: T('fp16', 32, 1) })).toEqual([64, 1]);
    expect(shapeOf('matmul', { x: T('fp16', 2, 1, 3, 4), y: T('fp16', 5, 4, 6) })).toEqual([2, 5, 3, 6]);
    expect(
      shapeOf('matmul', {
        x: T('fp16', 4, 3),
        y: T('fp16', 6, 4),
        transpose_x: literal('bool', true),
        transpose_y: literal('bool', true),
      }),
    ).toEqual([3, 6]);
    // The rejected embedding head of the first coremltools check: (64, 32) @ (1, 1).
    expect(() => infer('matmul', { x: T('fp16', 64, 32), y: T('fp16', 1, 1) })).toThrow(
      /inner dimensions 32 and 1 differ/,
    );
  });

  it('reshape infers -1, also from one symbol, and copies 0 from the input', () => {
    expect(shapeOf('reshape', { x: T('fp16', 1, 8, 1, 'S'), shape: literal('int32', [1, 2, 4, -1]) })).toEqual([
      1,
      2,
      4,
      'S',
    ]);
    expect(shapeOf('reshape', { x: T('fp16', 2, 6), shape: literal('int32', [-1, 4]) })).toEqual([3, 4]);
    expect(shapeOf('reshape', { x: T('fp16', 2, 6), shape: literal('int32', [0, 3, 2]) })).toEqual([2, 3, 2]);
    expect(() => infer('reshape', { x: T('fp16', 2, 6), shape: literal('int32', [-1, 5]) })).toThrow(/cannot reshape/);
    expect(() => infer('reshape', { x: T('fp16', 2, 6), shape: literal('int32', [-1, -1]) })).toThrow(
      /more than one -1/,
    );
    expect(() => infer('reshape', { x: T('fp16', 2, 6), shape: literal('int32', [4, 4]) })).toThrow(/cannot reshape/);
  });

  it('slice_by_index sizes a symbolic axis as solve_slice_by_index_shape does', () => {
    const x = T('fp16', 1, 8, 1, 'S');
    const sl = (begin: number[], end: number[], bm: boolean[], em: boolean[]) =>
      shapeOf('slice_by_index', {
        x,
        begin: literal('int32', begin),
        end: literal('int32', end),
        begin_mask: literal('bool', bm),
        end_mask: literal('bool', em),
      });
    // x[..., 0:1] (cls pooling) is one token even when the length is symbolic; both masks keep S.
    expect(sl([0, 0, 0, 0], [0, 0, 0, 1], [true, true, true, false], [true, true, true, false])).toEqual([1, 8, 1, 1]);
    expect(sl([0, 2, 0, 0], [0, 6, 0, 0], [true, false, true, true], [true, false, true, true])).toEqual([
      1,
      4,
      1,
      'S',
    ]);
    // A longer slice of S is a new symbol, as coremltools' get_new_symbol().
    expect(sl([0, 0, 0, 2], [0, 0, 0, 5], [true, true, true, false], [true, true, true, false])[3]).toMatch(/_d3$/);
    expect(() => sl([0, 6, 0, 0], [0, 2, 0, 0], [true, false, true, true], [true, false, true, true])).toThrow(
      /unsupported bounds/,
    );
  });

  it("einsum takes only coremltools' two equation forms", () => {
    const k = T('fp16', 1, 8, 1, 4);
    const q = T('fp16', 1, 4, 1, 8);
    expect(shapeOf('einsum', { values: [k, q], equation: literal('string', 'bkhc,bchq->bkhq') })).toEqual([1, 8, 1, 8]);
    expect(
      shapeOf('einsum', {
        values: [T('fp16', 2, 3, 4), T('fp16', 4, 3, 5)],
        equation: literal('string', 'abc,cbd->abd'),
      }),
    ).toEqual([2, 3, 5]);
    expect(() => infer('einsum', { values: [q, q], equation: literal('string', 'bchq,bchk->bkhq') })).toThrow(
      /not one of the two forms/,
    );
  });

  it('gives every emitted op its coremltools output dtype and shape', () => {
    const x = T('fp16', 1, 8, 1, 4);
    expect(infer('cast', { x: T('bool', 1, 4), dtype: literal('string', 'fp16') })).toEqual([T('fp16', 1, 4)]);
    expect(() => infer('cast', { x, dtype: literal('string', 'fp64') })).toThrow(/cast to "fp64"/);
    expect(infer('shape', { x })).toEqual([T('int32', 4)]);
    expect(infer('fill_like', { ref_tensor: x })).toEqual([T('fp32', 1, 8, 1, 4)]);
    expect(infer('fill_like', { ref_tensor: x, value: literal('fp16', 2) })).toEqual([T('fp16', 1, 8, 1, 4)]);
    expect(infer('reduce_l2_norm', { x, axes: literal('int32', [1]), keep_dims: literal('bool', true) })).toEqual([
      T('fp16', 1, 1, 1, 4),
    ]);
    expect(infer('reduce_sum', { x, axes: literal('int32', [1]) })).toEqual([T('fp16', 1, 1, 4)]);
    expect(infer('reduce_mean', { x })).toEqual([T('fp16')]);
    expect(infer('gather', { x: T('fp16', 100, 8), indices: T('int32', 1, 'S'), axis: literal('int32', 0) })).toEqual([
      T('fp16', 1, 'S', 8),
    ]);
    expect(infer('split', { x, split_sizes: literal('int32', [2, 6]), axis: literal('int32', 1) })).toEqual([
      T('fp16', 1, 2, 1, 4),
      T('fp16', 1, 6, 1, 4),
    ]);
    expect(infer('concat', { values: [x, T('fp16', 1, 1, 1, 4)], axis: literal('int32', 1) })).toEqual([
      T('fp16', 1, 9, 1, 4),
    ]);
    expect(
      infer('slice_by_index', {
        x,
        begin: literal('int32', [0, 2, 0, 0]),
        end: literal('int32', [0, 6, 0, 0]),
        end_mask: literal('bool', [true, false, true, true]),
      }),
    ).toEqual([T('fp16', 1, 4, 1, 4)]);
    expect(infer('transpose', { x, perm: literal('int32', [0, 3, 2, 1]) })).toEqual([T('fp16', 1, 4, 1, 8)]);
    expect(infer('expand_dims', { x: T('fp16', 1, 8, 'S'), axes: literal('int32', [2]) })).toEqual([
      T('fp16', 1, 8, 1, 'S'),
    ]);
    expect(infer('conv', { x, weight: T('fp16', 16, 8, 1, 1) })).toEqual([T('fp16', 1, 16, 1, 4)]);
    expect(
      infer('range_1d', { start: literal('int32', 0), end: literal('int32', 5), step: literal('int32', 1) }),
    ).toEqual([T('int32', 5)]);
    for (const op of ['softmax', 'gelu', 'layer_norm', 'rsqrt', 'real_div', 'identity']) {
      const inputs: InputTypes = op === 'real_div' ? { x, y: x } : { x };
      expect(infer(op, inputs), op).toEqual([x]);
    }
  });
});

describe('the builder writes what coremltools writes', () => {
  it('fills the non-None defaults of the op version at its target', () => {
    const at = (target: 'iOS15' | 'iOS17') => {
      const g = new GraphBuilder('fp16', target);
      const x = g.input('x', 'fp16', [1, 8, 1, 4]);
      const w = g.weight('w', [16, 8, 1, 1], () => new Float32Array(128));
      g.op('conv', { x, weight: w }, 'c');
      g.op('gather', { x: w, indices: i32([0]) }, 'gt');
      g.op('layer_norm', { x, axes: i32([1]) }, 'ln');
      g.op('slice_by_index', { x, begin: i32([0, 0, 0, 0]), end: i32([1, 2, 1, 4]) }, 's');
      return g.graph.ops;
    };
    const [conv, gather, ln, slice] = at('iOS17');
    expect(conv!.inputs).toMatchObject({
      strides: i32([1, 1]),
      pad_type: str('valid'),
      pad: i32([0, 0, 0, 0]),
      dilations: i32([1, 1]),
      groups: i32(1),
    });
    expect(gather!.inputs).toMatchObject({ axis: i32(0), batch_dims: i32(0), validate_indices: bool(false) });
    // The epsilon default is written in the program's float type, as coremltools' fp16 programs hold it.
    expect(ln!.inputs.epsilon).toEqual({ kind: 'literal', dtype: 'fp16', shape: [], value: [1e-5] });
    expect(ln!.inputs.gamma).toBeUndefined(); // None defaults stay absent
    expect(Object.keys(slice!.inputs).sort()).toEqual(['begin', 'end', 'x']);
    expect(Object.keys(at('iOS15')[1]!.inputs).sort()).toEqual(['axis', 'indices', 'x']);
  });

  it('refuses an op the registry lacks, one the target lacks, and inputs the signature does not have', () => {
    const g = new GraphBuilder('fp32', 'iOS15');
    const x = g.input('x', 'fp32', [1, 4]);
    expect(() => g.op('frobnicate', { x })).toThrow(/not in the op registry/);
    expect(() => g.op('__proto__', { x })).toThrow(/not in the op registry/);
    expect(() => g.op('fill_like', { ref_tensor: x })).toThrow(/not available before iOS16/);
    expect(() => g.op('softmax', { x, dim: i32(1) })).toThrow(/no input "dim"/);
  });

  it('every registered op has a version from iOS15 to iOS18 and a kernel', () => {
    for (const op of knownOps()) {
      const def = opDef(op)!;
      expect(typeof def.run, op).toBe('function');
      expect(opSignature(op, 'iOS18'), op).toBeDefined();
    }
  });
});

describe('reduce_min (coremltools iOS15/reduction.py reduce_min)', () => {
  it('infers as every ReductionAxes op and keeps int32 integers (packing finds each text start with it)', async () => {
    expect(infer('reduce_min', { x: T('int32', 6, 3), axes: literal('int32', [0]) })).toEqual([T('int32', 3)]);
    expect(
      infer('reduce_min', { x: T('fp16', 1, 8, 1, 4), axes: literal('int32', [1]), keep_dims: literal('bool', true) }),
    ).toEqual([T('fp16', 1, 1, 1, 4)]);
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'int32', [3, 2]);
    const f = g.input('f', 'fp32', [3, 2]);
    g.output(g.op('reduce_min', { x, axes: i32([0]) }, 'm'), 'out');
    g.output(g.op('reduce_min', { x: f, axes: i32([1]), keep_dims: bool(true) }, 'mf'), 'outf');
    const res = await new Interpreter(g.graph).run({
      x: { dtype: 'int32', shape: [3, 2], data: Int32Array.from([5, 7, 2, 9, 4, -1]) },
      f: { dtype: 'fp32', shape: [3, 2], data: Float32Array.from([0.5, -2, 3, 1, 7, 7]) },
    });
    const out = res.get('out')!;
    expect(out.data).toBeInstanceOf(Int32Array);
    expect([out.dtype, out.shape, Array.from(out.data)]).toEqual(['int32', [2], [2, -1]]);
    expect(Array.from(res.get('outf')!.data)).toEqual([-2, 1, 7]);
  });
});

describe('einsum kernel', () => {
  it('computes the rank-4 form with several blocks on the third axis, in place, as plain loops do', async () => {
    const g = new GraphBuilder('fp32');
    const [n, K1, H, C, Q] = [2, 3, 4, 5, 6];
    const x = g.input('x', 'fp32', [n, K1, H, C]);
    const y = g.input('y', 'fp32', [n, C, H, Q]);
    g.output(g.op('einsum', { values: [x, y], equation: str('bkhc,bchq->bkhq') }, 'e'), 'out');
    const xs = Float32Array.from({ length: n * K1 * H * C }, (_, i) => Math.sin(i * 0.7));
    const ys = Float32Array.from({ length: n * C * H * Q }, (_, i) => Math.cos(i * 0.3));
    const out = (
      await new Interpreter(g.graph).run({
        x: { dtype: 'fp32', shape: [n, K1, H, C], data: xs },
        y: { dtype: 'fp32', shape: [n, C, H, Q], data: ys },
      })
    ).get('out')!;
    expect(out.shape).toEqual([n, K1, H, Q]);
    for (let b = 0; b < n; b++)
      for (let k = 0; k < K1; k++)
        for (let h = 0; h < H; h++)
          for (let q = 0; q < Q; q++) {
            let sum = 0;
            for (let c = 0; c < C; c++) sum += xs[((b * K1 + k) * H + h) * C + c]! * ys[((b * C + c) * H + h) * Q + q]!;
            expect(out.data[((b * K1 + k) * H + h) * Q + q]).toBeCloseTo(sum, 5);
          }
  });
});

describe('kernels produce exactly the types that inference declares', () => {
  const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
  afterAll(() => ckpt.close());
  const runAll = async (o: BuildOptions, seq: number, withMask: boolean, source: ModelSource = ckpt): Promise<void> => {
    const graph = buildModel(source, o);
    const ids = Int32Array.from({ length: seq }, (_, i) => (i === seq - 1 ? ckpt.config.padTokenId : 5 + i));
    const inputs: Record<string, RtTensor> = { input_ids: { dtype: 'int32', shape: [1, seq], data: ids } };
    if (withMask) inputs.mask = { dtype: 'fp32', shape: [1, seq, 1, seq], data: new Float32Array(seq * seq) };
    const keep = graph.ops.flatMap((op) => op.outputs.map((v) => v.name));
    const out = await new Interpreter(graph).run(inputs, { keep });
    for (const op of graph.ops) {
      for (const v of op.outputs) {
        const t = out.get(v.name)!;
        expect(t.dtype, `${op.op} ${v.name}`).toBe(v.type.dtype);
        expect(t.shape, `${op.op} ${v.name}`).toEqual(v.type.shape.map((d) => (typeof d === 'number' ? d : seq)));
      }
    }
  };
  it('in every head, with static and enumerated lengths, with the id-derived and the input mask', async () => {
    await runAll({ seqLen: 12, maskFrom: 'ids' }, 12, false);
    await runAll({ seqLen: [8, 12], maskFrom: 'ids', head: 'embedding' }, 8, false);
    await runAll({ seqLen: 12, maskFrom: 'input', head: 'none', positions: [1, 3] }, 12, true);
    await runAll(
      { seqLen: 12, maskFrom: 'ids', head: 'embedding', dtype: 'fp16', target: 'iOS15', ioDtype: 'fp32' },
      12,
      false,
    );
  });

  it('in the folded l2 form with enumerated lengths at iOS 15, which has no fill_like', async () => {
    const folded = {
      config: ckpt.config,
      weights: foldWeights(ckpt.weights, ckpt.config, new IdentityRotation(ckpt.config.hidden)),
    };
    const o: BuildOptions = { seqLen: [8, 12], maskFrom: 'ids', norm: 'l2', target: 'iOS15' };
    expect(buildModel(folded, o).ops.map((op) => op.op)).not.toContain('fill_like');
    await runAll(o, 12, false, folded);
  });
});

describe('ONNX lowerings (ops/defs: each op beside its kernel) agree with the kernels in onnxruntime', () => {
  // Ops with no ONNX form: const never reaches a graph (the reader makes Consts and literals of it), and
  // fill_like would need a tensor attribute (ConstantOfShape) that no graph of ours uses; the constexpr ops
  // of compressed weights are expanded into constants before lowering (onnx/fold-constexpr.ts).
  const WITHOUT = [
    'const',
    'fill_like',
    'constexpr_affine_dequantize',
    'constexpr_blockwise_shift_scale',
    'constexpr_lut_to_dense',
  ];

  it('every other op of the registry has one', () => {
    expect(
      knownOps()
        .filter((op) => !opDef(op)!.onnx)
        .sort(),
    ).toEqual(WITHOUT.sort());
  });

  // One graph per op over random inputs x (2, 3, 4, 5) and y (same shape, or as the op needs).
  const data = (n: number, seed: number) =>
    Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 2);
  const cases: [string, (g: GraphBuilder, x: string, y: string) => string][] = [
    [
      'binary',
      (g, x, y) =>
        g.op('pow', {
          x: g.op('abs', {
            x: g.op('maximum', {
              x: g.op('minimum', { x, y }),
              y: g.op('real_div', { x, y: g.op('add', { x: g.op('square', { x: y }), y: g.f(1) }) }),
            }),
          }),
          y: g.f(2),
        }),
    ],
    [
      'compare',
      (g, x, y) =>
        g.op('select', {
          cond: g.op('logical_and', {
            x: g.op('not_equal', { x, y }),
            y: g.op('logical_not', { x: g.op('greater_equal', { x, y }) }),
          }),
          a: x,
          b: g.op('sub', { x, y }),
        }),
    ],
    [
      'unary',
      (g, x) =>
        g.op('clip', {
          x: g.op('tanh', {
            x: g.op('erf', {
              x: g.op('exp', { x: g.op('rsqrt', { x: g.op('sqrt', { x: g.op('abs', { x }) }), epsilon: g.f(0.5) }) }),
            }),
          }),
          alpha: g.f(-0.5),
          beta: g.f(0.9),
        }),
    ],
    [
      'activation',
      (g, x) =>
        g.op('softmax', {
          x: g.op('silu', {
            x: g.op('sigmoid', {
              x: g.op('relu', {
                x: g.op('gelu', {
                  x: g.op('gelu', { x, mode: str('TANH_APPROXIMATION') }),
                  mode: str('SIGMOID_APPROXIMATION'),
                }),
              }),
            }),
          }),
          axis: i32(1),
        }),
    ],
    [
      'norms',
      (g, x) =>
        g.op('l2_norm', {
          x: g.op('layer_norm', {
            x,
            axes: i32([1]),
            gamma: g.weight('gamma', [3], () => data(3, 7)),
            epsilon: g.f(1e-5),
          }),
          epsilon: g.f(1e-6),
        }),
    ],
    [
      'reductions',
      (g, x) =>
        g.op('add', {
          x: g.op('reduce_sum', { x, axes: i32([1]), keep_dims: bool(true) }),
          y: g.op('add', {
            x: g.op('reduce_max', { x, axes: i32([1]), keep_dims: bool(true) }),
            y: g.op('reduce_l2_norm', { x, axes: i32([1]), keep_dims: bool(true) }),
          }),
        }),
    ],
    [
      'layout',
      (g, x) =>
        g.op('squeeze', {
          x: g.op('expand_dims', {
            x: g.op('reshape', {
              x: g.op('transpose', {
                x: g.op('slice_by_size', {
                  x: g.slice(x, 3, 1, 'end', 'sl'),
                  begin: i32([0, 1, 0, 0]),
                  size: i32([-1, 2, 3, -1]),
                }),
                perm: i32([0, 3, 2, 1]),
              }),
              shape: i32([2, -1]),
            }),
            axes: i32([1]),
          }),
          axes: i32([1]),
        }),
    ],
    [
      'tensors',
      (g, x) =>
        g.op('tile', {
          x: g.op('concat', {
            values: [
              ...g
                .opN(
                  'split',
                  {
                    x: g.op('gather', { x, indices: i32([2, 0]), axis: i32(2) }),
                    split_sizes: i32([1, 2]),
                    axis: i32(1),
                  },
                  'sp',
                )
                .reverse(),
            ],
            axis: i32(1),
          }),
          reps: i32([1, 1, 2, 1]),
        }),
    ],
    [
      'products',
      (g, x, y) =>
        g.op('linear', {
          x: g.op('matmul', { x, y, transpose_y: bool(true) }),
          weight: g.weight('w', [3, 4], () => data(12, 3)),
          bias: g.weight('b', [3], () => data(3, 4)),
        }),
    ],
    [
      'einsum and conv',
      (g, x, y) =>
        g.op('conv', {
          x: g.op('einsum', { values: [x, y], equation: str('bkhc,bchq->bkhq') }),
          weight: g.weight('cw', [2, 3, 1, 1], () => data(6, 5)),
        }),
    ],
  ];
  for (const [name, make] of cases) {
    it(name, async () => {
      const { lowerGraph } = await import('../src/onnx/lower.js');
      const { onnxBytes } = await import('../src/onnx/write.js');
      const ort = (await import('onnxruntime-node')).default;
      const g = new GraphBuilder('fp32');
      const shapeY = name === 'einsum and conv' ? [2, 5, 4, 3] : [2, 3, 4, 5];
      const x = g.input('x', 'fp32', [2, 3, 4, 5]);
      const y = g.input('y', 'fp32', shapeY);
      g.output(make(g, x, y), 'out');
      const feeds = { x: data(120, 1), y: data(120, 2) };
      const ours = (
        await new Interpreter(g.graph, 'fp32').run({
          x: { dtype: 'fp32', shape: [2, 3, 4, 5], data: feeds.x },
          y: { dtype: 'fp32', shape: shapeY, data: feeds.y },
        })
      ).get('out')!;
      const session = await ort.InferenceSession.create(onnxBytes(lowerGraph(g.graph), { name }));
      const res = await session.run({
        x: new ort.Tensor('float32', feeds.x, [2, 3, 4, 5]),
        y: new ort.Tensor('float32', feeds.y, shapeY),
      });
      expect(res.out!.dims).toEqual(ours.shape);
      const got = res.out!.data as Float32Array;
      for (let i = 0; i < got.length; i++) expect(got[i]!, `${i}`).toBeCloseTo(ours.data[i]!, 5);
    });
  }
});

describe('compressed-weight ops (iOS16/constexpr_ops.py, iOS18/compression.py)', () => {
  const run = async (
    op: string,
    inputs: Record<string, RtTensor>,
    literals: Record<string, ReturnType<typeof literal>> = {},
  ): Promise<RtTensor> => {
    const types: InputTypes = {
      ...Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, T(t.dtype, ...t.shape)])),
      ...literals,
    };
    const [out] = infer(op, types);
    const def = opDef(op)!;
    const fake = {
      op: { op, name: 't', inputs: {}, outputs: [] },
      num: undefined as never,
      has: (k: string) => k in inputs || k in literals,
      t: (k: string) => inputs[k]!,
      tuple: () => [],
      ints: (k: string) => literals[k]!.value as number[],
      nums: (k: string) => literals[k]!.value as number[],
      bools: () => [],
      str: () => '',
    };
    const [t] = await def.run(fake);
    expect(t!.dtype).toBe(out!.dtype);
    expect(t!.shape).toEqual(out!.shape);
    return t!;
  };
  const R = (dtype: TensorType['dtype'], shape: number[], data: number[]): RtTensor => ({
    dtype,
    shape,
    data: dtype === 'fp16' || dtype === 'fp32' ? Float32Array.from(data) : Int32Array.from(data),
  });

  it('are exactly the ops defined as load-time constant expressions (OpDef.constexpr)', () => {
    expect(knownOps().filter(isConstexpr).sort()).toEqual([
      'constexpr_affine_dequantize',
      'constexpr_blockwise_shift_scale',
      'constexpr_lut_to_dense',
    ]);
    expect(isConstexpr('conv')).toBe(false);
    expect(isConstexpr('constexpr_unknown')).toBe(false);
  });

  it('iOS 16 lut_to_dense: a 2^n table over packed uint8 indices, M = ceil(n * prod(shape) / 8)', async () => {
    const out = await run(
      'constexpr_lut_to_dense',
      { indices: R('uint8', [2], [0x6c, 0x03]), lut: R('fp16', [4], [1, 2, 3, 4]) },
      { shape: literal('uint32', [5]) },
    );
    expect([...out.data]).toEqual([1, 4, 3, 2, 4]);
    expect(() =>
      infer('constexpr_lut_to_dense', { indices: T('uint8', 3), lut: T('fp16', 8), shape: literal('uint32', [8]) }),
    ).toThrow(/2, 4, 16, 64, 256/);
    expect(() =>
      infer('constexpr_lut_to_dense', { indices: T('uint8', 3), lut: T('fp16', 4), shape: literal('uint32', [5]) }),
    ).toThrow(/M = ceil/);
  });

  it("iOS 18 lut_to_dense: per-group tables, the docstring's Case 1 (2 groups of 2-bit tables over axis 0)", async () => {
    const indices = R('uint2', [6, 2], [2, 3, 3, 0, 1, 0, 3, 0, 2, 1, 0, 3]);
    const lut = R('fp16', [2, 1, 4, 1], [1, 5, 9, 13, 2, 10, 18, 26]);
    const out = await run('constexpr_lut_to_dense', { indices, lut });
    expect([...out.data]).toEqual([9, 13, 13, 1, 5, 1, 26, 2, 18, 10, 2, 26]);
    expect(() => infer('constexpr_lut_to_dense', { indices: T('uint3', 6, 2), lut: T('fp16', 2, 1, 4, 1) })).toThrow(
      /should be uint2/,
    );
    expect(() => infer('constexpr_lut_to_dense', { indices: T('uint2', 6, 2), lut: T('fp16', 4, 1, 4, 1) })).toThrow(
      /divisible/,
    );
    expect(opSignature('constexpr_lut_to_dense', 'iOS17')!.inputs.map((i) => i.name)).toEqual([
      'indices',
      'lut',
      'shape',
    ]);
    expect(opSignature('constexpr_lut_to_dense', 'iOS18')!.inputs.map((i) => i.name)).toEqual([
      'indices',
      'lut',
      'vector_axis',
    ]);
  });

  it('affine_dequantize: scale * (q - zero_point) per channel of `axis`, rounded to the float16 scale type', async () => {
    const out = await run(
      'constexpr_affine_dequantize',
      {
        quantized_data: R('int8', [2, 3], [-128, 0, 127, 10, 11, 12]),
        zero_point: R('int8', [2], [0, 10]),
        scale: R('fp16', [2], [0.5, 0.1]),
      },
      { axis: literal('int32', 0) },
    );
    expect([...out.data]).toEqual([-64, 0, 63.5, 0, Math.fround(0.0999755859375), Math.fround(0.199951171875)]);
    expect(() =>
      infer('constexpr_affine_dequantize', {
        quantized_data: T('int8', 2, 3),
        zero_point: T('int8', 3),
        scale: T('fp16', 2),
        axis: literal('int32', 0),
      }),
    ).toThrow(/same size as the dimension/);
  });

  it('blockwise_shift_scale: scale and offset repeated over blocks of data.shape / scale.shape', async () => {
    const data = R('int4', [2, 4], [1, 2, -3, -4, 5, 6, 7, -8]);
    const out = await run('constexpr_blockwise_shift_scale', { data, scale: R('fp16', [2, 2], [1, 2, 0.5, 0.25]) });
    expect([...out.data]).toEqual([1, 2, -6, -8, 2.5, 3, 1.75, -2]);
    const shifted = await run('constexpr_blockwise_shift_scale', {
      data: R('int8', [2, 2], [3, 4, 5, 6]),
      scale: R('fp16', [2, 1], [2, 1]),
      offset: R('int8', [2, 1], [1, 5]),
    });
    expect([...shifted.data]).toEqual([4, 6, 0, 1]);
    expect(() => infer('constexpr_blockwise_shift_scale', { data: T('int4', 2, 4), scale: T('fp16', 2, 3) })).toThrow(
      /should be a factor/,
    );
    expect(opSignature('constexpr_blockwise_shift_scale', 'iOS17')).toBeUndefined();
  });
});
