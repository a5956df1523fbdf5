// The ONNX lowering's head batching (src/onnx/batch-heads.ts): per-head attention written once for all heads.
// It must compute what the per-head graph computes (our interpreter, both graphs; onnxruntime on the lowered
// one) for every attention form, and the lowered graph must not grow with the head count.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { literal, type Graph, type Op } from '../src/ir/graph.js';
import { Interpreter } from '../src/graph/interpreter.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { buildModel } from '../src/model/model.js';
import { type BuildOptions, type ModelSource } from '../src/model/options.js';
import { batchHeads } from '../src/onnx/batch-heads.js';
import { lowerGraph } from '../src/onnx/lower.js';
import type { OnnxNodeProto } from '../src/onnx/schema.js';
import { simplifyNodes } from '../src/onnx/simplify.js';
import { readTransposed } from '../src/onnx/write.js';
import { OrtExecutor } from '../src/run/ort-executor.js';
import { prepareVariant } from '../src/model/variants.js';
import type { RtTensor } from '../src/runtime/tensor.js';
import { cleanupTempDirs, FX, tempDir } from './helpers/fixtures.js';

const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
afterAll(() => {
  ckpt.close();
  cleanupTempDirs();
});

// tiny-mlm read with another head count (the weights do not depend on it: Wqkv is (3C, C)).
function withHeads(H: number): ModelSource {
  return { config: { ...ckpt.config, numHeads: H, headDim: ckpt.config.hidden / H }, weights: ckpt.weights };
}

function feeds(g: Graph, S: number): Record<string, RtTensor> {
  const out: Record<string, RtTensor> = {};
  for (const v of g.inputs) {
    const n = v.name;
    const data =
      n === 'input_ids'
        ? Int32Array.from({ length: S }, (_, i) => 3 + ((i * 37) % 900))
        : n === 'attention_mask'
          ? Int32Array.from({ length: S }, (_, i) => (i < S - 5 ? 1 : 0))
          : n === 'segment_ids'
            ? Int32Array.from({ length: S }, (_, i) => (i < 30 ? 1 : i < 71 ? 2 : i < S - 4 ? 3 : 0))
            : Float32Array.from({ length: S * S }, (_, i) =>
                i % S < S - 5 && Math.abs(Math.floor(i / S) - (i % S)) < 40 ? 0 : -1e4,
              ); // mask (1, S, 1, S)
    out[n] = {
      dtype: v.type.dtype === 'int32' ? 'int32' : 'fp32',
      shape: [1, S, ...(n === 'mask' ? [1, S] : [])],
      data,
    };
  }
  return out;
}

function maxRelDiff(a: RtTensor, b: RtTensor): number {
  const [x, y] = [a.data as Float32Array, b.data as Float32Array];
  expect(x.length).toBe(y.length);
  let [err, scale] = [0, 0];
  for (let i = 0; i < x.length; i++) {
    err = Math.max(err, Math.abs(x[i]! - y[i]!));
    scale = Math.max(scale, Math.abs(x[i]!));
  }
  return err / Math.max(scale, 1);
}

const einsums = (g: Graph) => g.ops.filter((op) => op.op === 'einsum').length;

/** The graph with every split written as one slice_by_index per output (x[..., a:b, ...] on the split's axis). */
function splitsAsSlices(g: Graph): Graph {
  const rank = new Map<string, number>([
    ...g.inputs.map((v) => [v.name, v.type.shape.length] as const),
    ...[...g.consts.values()].map((c) => [c.name, c.type.shape.length] as const),
  ]);
  for (const op of g.ops) for (const o of op.outputs) rank.set(o.name, o.type.shape.length);
  const ops = g.ops.flatMap((op): Op[] => {
    if (op.op !== 'split') return [op];
    const x = op.inputs.x as string;
    const r = rank.get(x)!;
    const axis = ((literalValue(op.inputs.axis)[0]! % r) + r) % r;
    let at = 0;
    return op.outputs.map((o) => {
      const [b, e] = [at, (at += o.type.shape[axis] as number)];
      const on = (v: number) => Array.from({ length: r }, (_, k) => (k === axis ? v : 0));
      const masks = Array.from({ length: r }, (_, k) => k !== axis);
      return {
        op: 'slice_by_index',
        name: o.name,
        inputs: {
          x,
          begin: literal('int32', on(b)),
          end: literal('int32', on(e)),
          begin_mask: literal('bool', masks),
          end_mask: literal('bool', masks),
        },
        outputs: [o],
      };
    });
  });
  return { ...g, ops };
}
const literalValue = (a: unknown) => (a as { value: number[] }).value;

describe('batched attention heads in the ONNX lowering', () => {
  const S = 100;
  const cases: [string, BuildOptions, ModelSource?][] = [
    ['banded local, chunked global', { seqLen: S, maskFrom: 'attention', attentionChunk: 32, head: 'none' }],
    [
      "banded windows cut per head (the CPU engine's)",
      { seqLen: S, maskFrom: 'attention', attentionChunk: 32, head: 'none', bandWindows: 'per-head' },
    ],
    ['packed texts (segment ids), banded', { seqLen: S, pack: 3, attentionChunk: 48, head: 'mlm' }],
    ['packed texts in blocks of half the window', { seqLen: 96, pack: 3, packBlocks: 8, head: 'mlm' }],
    ['packed texts in blocks of the window', { seqLen: 96, pack: 3, packBlocks: 16, head: 'mlm' }],
    ['a mask input (all pairs), chunked', { seqLen: S, maskFrom: 'input', attentionChunk: 64, head: 'mlm' }],
    ['any length (symbolic S)', { seqLen: [1, 512], maskFrom: 'attention', head: 'mlm' }],
    ['8 heads', { seqLen: S, maskFrom: 'attention', attentionChunk: 32, head: 'none' }, withHeads(8)],
  ];
  for (const [label, o, src] of cases) {
    it(`computes what the per-head graph computes: ${label}`, async () => {
      const g = buildModel(src ?? ckpt, o);
      const b = batchHeads(g);
      // Every attention block matched: no per-head einsum is left.
      expect(einsums(g)).toBeGreaterThan(0);
      expect(einsums(b)).toBe(0);
      const inputs = feeds(g, typeof o.seqLen === 'number' ? o.seqLen : S);
      const want = (await new Interpreter(g, 'fp32').run(inputs)).get(g.outputs[0]!)!;
      const got = (await new Interpreter(b, 'fp32').run(inputs)).get(b.outputs[0]!)!;
      expect(maxRelDiff(want, got)).toBeLessThan(1e-5);
      // onnxruntime on the lowered graph (batched inside lowerGraph).
      const viaOrt = (await new OrtExecutor(g, ort).run(inputs)).get(g.outputs[0]!)!;
      expect(maxRelDiff(want, viaOrt)).toBeLessThan(1e-5);
    });
  }

  // Packages from earlier versions cut each head (and each query chunk) with its own slice_by_index; onnxruntime
  // runs packages as read back, so those slices must widen to all heads as the splits do.
  it.each([
    ['banded local, chunked global', { seqLen: S, maskFrom: 'attention', attentionChunk: 32, head: 'none' }],
    ['packed texts (segment ids), banded', { seqLen: S, pack: 3, attentionChunk: 48, head: 'mlm' }],
  ] as [string, BuildOptions][])('batches per-head slices as it batches splits: %s', async (_, o) => {
    const g = buildModel(ckpt, o);
    const sliced = splitsAsSlices(g);
    expect(sliced.ops.some((op) => op.op === 'split')).toBe(false);
    const b = batchHeads(sliced);
    expect(einsums(b)).toBe(0);
    const inputs = feeds(g, S);
    const want = (await new Interpreter(g, 'fp32').run(inputs)).get(g.outputs[0]!)!;
    expect(maxRelDiff(want, (await new Interpreter(b, 'fp32').run(inputs)).get(b.outputs[0]!)!)).toBeLessThan(1e-5);
  });

  it('creates its onnxruntime session without writing a file (the weights read in place)', async () => {
    const dir = tempDir('mbane-ort-tmp-');
    const before = process.env.TMPDIR;
    process.env.TMPDIR = dir; // os.tmpdir() reads it on every call
    try {
      const g = buildModel(ckpt, { seqLen: 12, maskFrom: 'attention', head: 'mlm' });
      const out = (await new OrtExecutor(g, ort).run(feeds(g, 12))).get(g.outputs[0]!)!;
      expect(out.shape).toEqual([1, ckpt.config.vocabSize, 1, 12]);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
    }
  });

  it('rotated, folded weights', async () => {
    const v = prepareVariant(ckpt, { fold: true, rotation: 'hadamard', norm: 'l2', seed: 1 });
    const g = buildModel(v.source, { seqLen: S, maskFrom: 'attention', attentionChunk: 32, norm: v.norm, head: 'mlm' });
    const b = batchHeads(g);
    expect(einsums(b)).toBe(0);
    const inputs = feeds(g, S);
    const want = (await new Interpreter(g, 'fp32').run(inputs)).get(g.outputs[0]!)!;
    expect(maxRelDiff(want, (await new Interpreter(b, 'fp32').run(inputs)).get(b.outputs[0]!)!)).toBeLessThan(1e-5);
  });

  it('lowers to as many nodes whatever the head count, one Softmax per chunk of each layer', () => {
    const count = (H: number, o: BuildOptions) => {
      const nodes = lowerGraph(buildModel(withHeads(H), o), { io: 'hf' }).nodes;
      return {
        total: nodes.length,
        softmax: nodes.filter((n) => n.op_type === 'Softmax').length,
        einsum: nodes.filter((n) => n.op_type === 'Einsum').length,
      };
    };
    const banded: BuildOptions = { seqLen: S, maskFrom: 'attention', attentionChunk: 32, head: 'mlm' };
    const dynamic: BuildOptions = { seqLen: [1, 512], maskFrom: 'attention', head: 'mlm' };
    for (const o of [banded, dynamic]) {
      const [h2, h4, h8] = [2, 4, 8].map((H) => count(H, o));
      expect(h4).toEqual(h2);
      expect(h8).toEqual(h2);
      expect(h2.einsum).toBe(0);
    }
    // tiny-mlm: 2 global layers of ceil(100 / 32) = 4 query chunks, 2 banded local layers of one block each.
    expect(count(4, banded).softmax).toBe(2 * 4 + 2);
    // Pinned: the whole 4-layer model at 100 tokens, 323 nodes since q and k share one RoPE (369 before; 1,050 per head).
    expect(count(4, banded).total).toBeLessThanOrEqual(323);
  });
});

describe('lowered node clean-up', () => {
  const node = (op_type: string, input: string[], output: string, perm?: number[]): OnnxNodeProto => ({
    name: output,
    op_type,
    input,
    output: [output],
    ...(perm ? { attribute: [{ name: 'perm', type: 7, ints: perm }] } : {}),
  });

  it('composes consecutive transposes, drops identity ones, merges consecutive reshapes, and keeps values read twice', () => {
    const nodes = [
      node('Transpose', ['x'], 'a', [0, 2, 3, 1]),
      node('Transpose', ['a'], 'b', [0, 3, 1, 2]), // a then b: identity
      node('Relu', ['b'], 'c'),
      node('Transpose', ['c'], 'd', [1, 0, 2, 3]),
      node('Transpose', ['d'], 'e', [0, 2, 1, 3]), // one Transpose [1, 2, 0, 3]
      node('Reshape', ['e', 's1'], 'f'),
      node('Reshape', ['f', 's2'], 'g'), // one Reshape to s2
      node('Transpose', ['g'], 'h', [1, 0]),
      node('Transpose', ['h'], 'out', [1, 0]), // identity, but a graph output: kept, as one Transpose
      node('Add', ['h', 'g'], 'k'), // h is read twice: not folded into `out`
    ];
    const got = simplifyNodes(nodes, new Set(['out', 'k']));
    expect(got.map((n) => [n.op_type, n.input, n.output[0], n.attribute?.[0]?.ints])).toEqual([
      ['Relu', ['x'], 'c', undefined],
      ['Transpose', ['c'], 'e', [1, 2, 0, 3]],
      ['Reshape', ['e', 's2'], 'g', undefined],
      ['Transpose', ['g'], 'h', [1, 0]],
      ['Transpose', ['h'], 'out', [1, 0]],
      ['Add', ['h', 'g'], 'k', undefined],
    ]);
  });

  it('gathers before casting: a table read by a Gather is cast row by row (each cast of a chain), unless read twice', () => {
    const nodes = [
      node('Cast', ['table'], 'c1'),
      node('Cast', ['c1'], 'c2'), // float16 -> float32 -> (rounded) ...: a chain, moved whole
      node('Gather', ['c2', 'ids'], 'rows'),
      node('Cast', ['other'], 'd'),
      node('Gather', ['d', 'ids'], 'picked'),
      node('Add', ['d', 'rows'], 'k'), // d is read twice: its cast stays whole
    ];
    const got = simplifyNodes(nodes, new Set(['picked', 'k']));
    expect(got.map((n) => [n.op_type, n.input, n.output[0]])).toEqual([
      ['Gather', ['table', 'ids'], 'c1__gathered'],
      ['Cast', ['c1__gathered'], 'c2__gathered'],
      ['Cast', ['c2__gathered'], 'rows'],
      ['Cast', ['other'], 'd'],
      ['Gather', ['d', 'ids'], 'picked'],
      ['Add', ['d', 'rows'], 'k'],
    ]);
  });

  it('stores projection weights transposed: no node of the lowered model reshapes or transposes a weight', () => {
    const lowered = lowerGraph(buildModel(ckpt, { seqLen: 40, maskFrom: 'attention', head: 'mlm' }), { io: 'hf' });
    const inits = new Set(lowered.initializers.filter((t) => t.dims.length >= 2).map((t) => t.name));
    expect(
      lowered.nodes.filter((n) => (n.op_type === 'Transpose' || n.op_type === 'Reshape') && inits.has(n.input[0]!)),
    ).toEqual([]);
    // Each layer's Wqkv and Wi (both (192, 64) in tiny-mlm) once, as W^T, never in the checkpoint's form (3C, C, 1, 1).
    const C = ckpt.config.hidden;
    const withDims = (d: number[]) =>
      lowered.initializers.filter((t) => JSON.stringify(t.dims) === JSON.stringify(d)).length;
    expect(withDims([C, 3 * C])).toBe(2 * ckpt.config.numLayers);
    expect(withDims([3 * C, C, 1, 1])).toBe(0);
  });
});

describe('products of transposed operands on onnxruntime (onnx/write.ts readTransposed)', () => {
  const permOf = (n: OnnxNodeProto | undefined) => n?.attribute?.find((a) => a.name === 'perm')?.ints?.map(Number);
  const flag = (n: OnnxNodeProto, name: string) => Number(n.attribute?.find((a) => a.name === name)?.i ?? 0);

  it("a banded layer's keys reach their product in rows: no transpose before a product moves single values", () => {
    const g = buildModel(ckpt, { seqLen: 100, pack: 3, attentionChunk: 48, head: 'mlm' });
    const low = lowerGraph(g, { io: 'ane', float32: true, storedLayout: true });
    const nodes = readTransposed(
      low.nodes,
      low.initializers.map((t) => t.name),
    );
    const producer = new Map(nodes.flatMap((n) => n.output.map((o) => [o, n] as const)));
    const products = nodes.filter((n) => n.op_type === 'MatMul' || n.op_type === 'FusedMatMul');
    // Without the rewrite the keys' transpose (K, X, H, D) -> (H, X, D, K) is a product's right side. A swap of
    // the last two axes alone is not one: onnxruntime's optimiser reads it into the product itself.
    const strided = products.flatMap((n) => {
      const t = producer.get(n.input[1]!);
      const perm = permOf(t) ?? [];
      const r = perm.length;
      const swapOnly = perm.every((p, i) => p === (i < r - 2 ? i : i === r - 2 ? r - 1 : r - 2));
      return t?.op_type === 'Transpose' && perm[r - 1] !== r - 1 && !swapOnly ? [n.input[1]!] : [];
    });
    expect(strided).toEqual([]);
    const keys = products.filter((n) => flag(n, 'transB') === 1 && producer.get(n.input[1]!)?.op_type === 'Transpose');
    expect(keys.length).toBeGreaterThan(0);
    expect(permOf(producer.get(keys[0]!.input[1]!))).toEqual([2, 1, 0, 3]);
    // A left side is never read transposed unless it is a weight.
    expect(products.filter((n) => flag(n, 'transA') === 1)).toEqual([]);
  });

  it('splits a transpose ending in a swap only where it pays, and keeps what other nodes read', () => {
    const node = (op: string, input: string[], out: string, perm?: number[]): OnnxNodeProto => ({
      name: out,
      op_type: op,
      input,
      output: [out],
      ...(perm ? { attribute: [{ name: 'perm', type: 7, ints: perm }] } : {}),
    });
    const nodes = [
      node('Transpose', ['W'], 'Wt', [1, 0]), // a weight: read transposed in place
      node('MatMul', ['x', 'Wt'], 'y'),
      node('Transpose', ['k'], 'kT', [2, 1, 3, 0]), // keys: rows moved, then read transposed
      node('MatMul', ['q', 'kT'], 's'),
      node('Transpose', ['a'], 'aT', [0, 2, 3, 1]), // a left side: stays
      node('MatMul', ['aT', 'b'], 'c'),
      node('Transpose', ['m'], 'mT', [2, 1, 3, 0]), // read twice: stays
      node('MatMul', ['q', 'mT'], 'd'),
      node('Relu', ['mT'], 'e'),
    ];
    const got = readTransposed(nodes, ['W']);
    expect(got.map((n) => [n.op_type, n.input, n.output[0], permOf(n), flag(n, 'transA'), flag(n, 'transB')])).toEqual([
      ['FusedMatMul', ['x', 'W'], 'y', undefined, 0, 1],
      ['Transpose', ['k'], 'kT_rows', [2, 1, 0, 3], 0, 0],
      ['FusedMatMul', ['q', 'kT_rows'], 's', undefined, 0, 1],
      ['Transpose', ['a'], 'aT', [0, 2, 3, 1], 0, 0],
      ['MatMul', ['aT', 'b'], 'c', undefined, 0, 0],
      ['Transpose', ['m'], 'mT', [2, 1, 3, 0], 0, 0],
      ['MatMul', ['q', 'mT'], 'd', undefined, 0, 0],
      ['Relu', ['mT'], 'e', undefined, 0, 0],
    ]);
  });
});
