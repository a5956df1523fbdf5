// convert --compress: the palette and quantizer choices, the graph that stores them as coremltools writes
// (read back, run, and equal to the weights the fidelity report measured), the tied table stored once,
// and the command line's errors and fidelity gate.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compressGraph } from '../src/compress/compress-graph.js';
import { compressedBytes, CompressedWeights, compressTensor, decompress } from '../src/compress/compressed-weights.js';
import { palettize } from '../src/compress/palettize.js';
import { quantizeInt4Blocks, quantizeInt8PerRow } from '../src/compress/quantize.js';
import { checkShapes, compressSpec, globMatch, type CompressSpec } from '../src/compress/spec.js';
import { parseConfig } from '../src/model/config.js';
import { buildModel } from '../src/model/model.js';
import { SynthWeights } from '../src/synth/synth.js';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { writeMLPackage } from '../src/coreml/mil-write.js';
import { BlobReader } from '../src/coreml/milblob.js';
import { GraphBuilder } from '../src/graph/builder.js';
import { Interpreter } from '../src/graph/interpreter.js';
import type { Graph } from '../src/ir/graph.js';
import { roundToF16 } from '../src/numeric/fp16.js';
import type { Target } from '../src/ir/target.js';
import type { Tensor } from '../src/io/weights.js';
import { loadOrt, OrtExecutor } from '../src/run/ort-executor.js';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import { cleanupTempDirs, FX, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

let seed = 11;
const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
const randn = (n: number, scale = 0.05) => Float32Array.from({ length: n }, () => gauss() * scale);
const sse = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0);

describe('palettes (k-means on the float16 histogram)', () => {
  it('finds well-separated clusters exactly, and each index points at the nearest entry', () => {
    const centers = [-1, -0.25, 0.5, 2];
    const data = Float32Array.from({ length: 4000 }, (_, i) => centers[i % 4]! + (rand() - 0.5) * 0.01);
    const { lut, indices } = palettize(data, 2);
    lut.forEach((v, j) => expect(Math.abs(v - centers[j]!)).toBeLessThan(0.003));
    const rounded = roundToF16(Float32Array.from(data));
    rounded.forEach((v, i) => {
      const best = Math.min(...[...lut].map((c) => Math.abs(c - v)));
      expect(Math.abs(lut[indices[i]!]! - v)).toBe(best);
    });
  });

  it('Lloyd steps beat the quantile start, and more bits never cost accuracy', () => {
    const data = randn(20000);
    data[5] = 0.9; // an outlier, which quantiles alone would ignore
    const err = (bits: number) => {
      const p = palettize(data, bits);
      return sse(
        Float32Array.from(p.indices, (i) => p.lut[i]!),
        data,
      );
    };
    const errs = [2, 3, 4, 6, 8].map(err);
    for (let k = 1; k < errs.length; k++) expect(errs[k]!).toBeLessThan(errs[k - 1]!);
    // Quantile centroids alone (no Lloyd): sorted data, 16 equal-count bins, each its median.
    const sorted = roundToF16(Float32Array.from(data)).sort();
    const quantiles = Float32Array.from(
      { length: 16 },
      (_, j) => sorted[Math.floor(((j + 0.5) / 16) * sorted.length)]!,
    );
    const nearest = Float32Array.from(data, (v) =>
      quantiles.reduce((b, c) => (Math.abs(c - v) < Math.abs(b - v) ? c : b)),
    );
    expect(errs[2]!).toBeLessThan(sse(nearest, data));
  });

  it('keeps fewer distinct values than entries exactly', () => {
    const p = palettize(Float32Array.from([0.5, -1, 0.5, 3]), 4);
    expect([...p.indices].map((i) => p.lut[i])).toEqual([0.5, -1, 0.5, 3]);
  });

  it('orders the histogram by value across signs, subnormals and zeros (the bitmap of ranks), table after table', () => {
    const values = [3e-7, -2, -6e-8, 0, 1.5, -0.001, 65504, -65504, 2 ** -24, -3e-7];
    const data = Float32Array.from(values);
    for (let rep = 0; rep < 3; rep++) {
      const p = palettize(data, 4); // 10 distinct values, 16 entries: each kept exactly, the table ascending
      expect([...p.indices].map((i) => p.lut[i])).toEqual([...roundToF16(Float32Array.from(values))]);
      expect([...p.lut.slice(0, 10)]).toEqual([...roundToF16(Float32Array.from(values))].sort((x, y) => x - y));
    }
  });

  it('ends at a k-means fixed point: each entry the mean of its values, each value at its nearest entry (groups of 16 rows)', () => {
    const rows = 64;
    const cols = 96;
    const spec = compressSpec({ mode: 'pal3', target: 'iOS18', weights: 'fp16', groupSize: 16 });
    const data = randn(rows * cols);
    const c = compressTensor(spec, data, [rows, cols]) as Extract<
      ReturnType<typeof compressTensor>,
      { kind: 'palette' }
    >;
    const rounded = roundToF16(Float32Array.from(data));
    for (let g = 0; g < rows / 16; g++) {
      const lut = c.luts.subarray(g * 8, (g + 1) * 8);
      const sum = new Float64Array(8);
      const count = new Float64Array(8);
      for (let i = g * 16 * cols; i < (g + 1) * 16 * cols; i++) {
        const v = rounded[i]!;
        const j = c.indices[i]!;
        expect(Math.abs(lut[j]! - v)).toBe(Math.min(...[...lut].map((e) => Math.abs(e - v))));
        sum[j]! += v;
        count[j]!++;
      }
      // Each entry is its cluster's mean, to float16 rounding (half a float16 step, 2^-11 relative).
      lut.forEach(
        (e, j) =>
          count[j]! > 0 &&
          expect(Math.abs(e - sum[j]! / count[j]!)).toBeLessThanOrEqual(Math.abs(e) * 2 ** -11 + 1e-12),
      );
    }
  });
});

describe('linear quantization', () => {
  it('int8 per row maps each row range onto [-128, 127] with 0 exact', () => {
    const data = Float32Array.from([-1, 0, 1, 2, 0, 0, 0, 0.5]);
    const q = quantizeInt8PerRow(data, 2);
    expect(Math.min(...q.q.subarray(0, 4))).toBe(-128);
    expect(Math.max(...q.q.subarray(0, 4))).toBe(127);
    const back = decompress({ kind: 'int8', rows: 2, cols: 4, ...q } as never);
    expect(back[1]).toBe(0);
    back.forEach((v, i) => expect(Math.abs(v - data[i]!)).toBeLessThanOrEqual(q.scale[i < 4 ? 0 : 1]! / 2 + 1e-3));
  });

  it('int4 per block: max |w| onto 7, integers in [-8, 7]', () => {
    const data = randn(64);
    const q = quantizeInt4Blocks(data, 2, 16);
    expect(q.scale).toHaveLength(4);
    expect(Math.max(...q.q.map(Math.abs))).toBe(7);
    expect(Math.min(...q.q)).toBeGreaterThanOrEqual(-8);
  });
});

describe('options', () => {
  const spec = (mode: string, target: Target, more: Partial<{ groupSize: number; blockSize: number }> = {}) =>
    compressSpec({ mode, target, weights: 'fp16', ...more });
  it('refuse what the target cannot express, naming the valid choices', () => {
    expect(() => spec('pal5', 'iOS18')).toThrow(/valid: pal8, pal6, pal4, pal3, pal2, int8, int4/);
    expect(() => spec('pal3', 'iOS17')).toThrow(/needs `target: iOS18`.*valid at iOS17: pal8, pal6, pal4, pal2, int8/);
    expect(() => spec('int4', 'iOS16')).toThrow(/needs `target: iOS18`/);
    expect(() => spec('pal4', 'iOS15')).toThrow(/iOS16` or later/);
    expect(() => spec('pal4', 'iOS17', { groupSize: 16 })).toThrow(/needs `target: iOS18`/);
    expect(() => spec('int8', 'iOS18', { groupSize: 16 })).toThrow(/palette modes/);
    expect(() => spec('pal4', 'iOS18', { blockSize: 16 })).toThrow(/applies to `compress: int4`/);
  });
  it('--keep globs match whole names', () => {
    expect(globMatch('*.Wqkv.weight', 'model.layers.0.attn.Wqkv.weight')).toBe(true);
    expect(globMatch('*.Wqkv', 'model.layers.0.attn.Wqkv.weight')).toBe(false);
  });
});

// A graph that reads one stored weight under two names (as the tied embedding and decoder do): two convs
// over the same (64, 32) matrix, added.
function twoConvs(load: () => Float32Array, target: Target): Graph {
  const g = new GraphBuilder('fp16', target);
  const x = g.input('x', 'fp16', [1, 32, 1, 4]);
  const conv = (name: string) =>
    g.op(
      'conv',
      { x, weight: g.weight(name.replace(/\./g, '_'), [64, 32, 1, 1], load, 'fp16', name) },
      `${name.replace(/\./g, '_')}_conv`,
    );
  g.output(g.op('add', { x: conv('enc.weight'), y: conv('dec.weight') }, 'added'), 'sum');
  return g.graph;
}

describe('compressed packages', () => {
  const w = randn(64 * 32);
  const inner = {
    has: (n: string) => n === 'enc.weight' || n === 'dec.weight',
    get: (): Tensor => ({ shape: [64, 32], data: w.slice() }),
    shape: () => [64, 32],
    names: () => ['enc.weight', 'dec.weight'],
    storedName: () => 'enc.weight', // tied
  };
  const x = { dtype: 'fp16' as const, shape: [1, 32, 1, 4], data: roundToF16(randn(128, 1)) };
  const cases: [string, Target, Partial<CompressSpec>][] = [
    ['pal4', 'iOS17', {}],
    ['pal6', 'iOS16', {}],
    ['pal8', 'iOS17', {}],
    ['pal2', 'iOS17', {}],
    ['int8', 'iOS17', {}],
    ['pal3', 'iOS18', {}],
    ['pal4', 'iOS18', { groupSize: 16 }],
    ['pal6', 'iOS18', {}],
    ['pal8', 'iOS18', {}],
    ['int8', 'iOS18', {}],
    ['int4', 'iOS18', { blockSize: 8 }],
  ];
  it.each(cases)(
    '%s at %s: read back, the package computes what the fidelity weights compute, the tied table stored once',
    async (mode, target, more) => {
      const spec = compressSpec({ mode, target, weights: 'fp16', ...more });
      const cw = new CompressedWeights(inner, spec);
      const path = join(tempDir(), 'c.mlpackage');
      await writeMLPackage(path, {
        graph: compressGraph(
          twoConvs(() => w.slice(), target),
          cw,
        ),
        target,
      });
      const read = readMLPackage(path);
      const op = mode.startsWith('pal')
        ? 'constexpr_lut_to_dense'
        : target === 'iOS18'
          ? 'constexpr_blockwise_shift_scale'
          : 'constexpr_affine_dequantize';
      expect(read.graph.ops.filter((o) => o.op === op)).toHaveLength(2);
      // What the fidelity report runs: the dequantized weights in place of the originals.
      const dense = cw.get('enc.weight').data;
      const plain = twoConvs(() => dense.slice(), target);
      const [got, want] = await Promise.all([
        new Interpreter(read.graph, 'fp16').run({ x }),
        new Interpreter(plain, 'fp16').run({ x }),
      ]);
      expect([...got.get('sum')!.data]).toEqual([...want.get('sum')!.data]);
      // onnxruntime (--runtime ort, float32) runs the same package: its constexpr ops expanded before lowering.
      const [viaOrt, viaEngine] = await Promise.all([
        new OrtExecutor(read.graph, (await loadOrt())!).run({ x }),
        new Interpreter(read.graph, 'fp32').run({ x }),
      ]);
      const [o, e] = [viaOrt.get('sum')!.data, viaEngine.get('sum')!.data];
      expect(o.length).toBe(e.length);
      for (let i = 0; i < e.length; i++) expect(Math.abs(o[i]! - e[i]!), `${i}`).toBeLessThan(1e-4);
      // One blob per part of the tied table (indices or integers, table or scales, int8's zero points); tables
      // of under 10 entries (pal2, pal3) are immediates, as should_use_weight_file decides.
      const r = BlobReader.open(join(path, 'Data/com.apple.CoreML/weights/weight.bin'));
      try {
        expect(r.list()).toHaveLength(mode === 'int8' ? 3 : mode === 'pal2' || mode === 'pal3' ? 1 : 2);
      } finally {
        r.close();
      }
      expect([...dense]).toEqual([...decompress(compressTensor(spec, w, [64, 32]))]);
    },
  );

  it.each([
    ['int8', 'iOS17'],
    ['int8', 'iOS18'],
    ['int4', 'iOS18'],
  ] as const)(
    '%s at %s hands its integers to the writer one byte each (no int32 copy: peak memory)',
    (mode, target) => {
      const cw = new CompressedWeights(
        inner,
        compressSpec({ mode, target, weights: 'fp16', ...(mode === 'int4' ? { blockSize: 8 } : {}) }),
      );
      const g = compressGraph(
        twoConvs(() => w.slice(), target),
        cw,
      );
      const ints = [...g.consts.values()].filter(
        (c) => c.type.dtype === mode && c.type.shape.reduce<number>((a, b) => a * (b as number), 1) === 64 * 32,
      );
      expect(ints).toHaveLength(2);
      for (const c of ints) expect(c.load()).toBeInstanceOf(Int8Array);
    },
  );
});

describe('convert --compress on the command line', () => {
  const tiny = join(FX, 'tiny-mlm');
  const out = (name: string) => join(tempDir(), name);
  it('refuses impossible choices with one line, exit 2', async () => {
    expectOneLineError(
      await cli('convert', tiny, '--out', out('a.mlpackage'), '--compress', 'pal5'),
      /valid: pal8, pal6, pal4, pal3, pal2, int8, int4/,
    );
    expectOneLineError(
      await cli('convert', tiny, '--out', out('b.mlpackage'), '--compress', 'pal3'),
      /pal3 needs --target iOS18/,
    );
    expectOneLineError(
      await cli(
        'convert',
        tiny,
        '--out',
        out('c.mlpackage'),
        '--compress',
        'pal4',
        '--target',
        'iOS18',
        '--group-size',
        '7',
        '--no-fidelity',
      ),
      /--group-size 7 does not divide .*valid: 1, 2, 4, 8, 16, 32, 64/,
    );
    expectOneLineError(
      await cli(
        'convert',
        tiny,
        '--out',
        out('d.mlpackage'),
        '--compress',
        'int4',
        '--target',
        'iOS18',
        '--block-size',
        '48',
        '--no-fidelity',
      ),
      /--block-size 48 does not divide the 64 inputs of .*; valid: 1, 2, 4, 8, 16, 32$/m,
    );
    expectOneLineError(await cli('convert', tiny, '--out', out('e.mlpackage'), '--keep', '*'), /apply to --compress/);
  });

  it('--max-kl fails (exit 1) and writes nothing when the report exceeds it; the report and inspect show the mode and sizes', async () => {
    const gated = out('g.mlpackage');
    const r = await cli(
      'convert',
      tiny,
      '--out',
      gated,
      '--compress',
      'pal2',
      '--seq-len',
      '16',
      '--max-kl',
      '1e-4',
      '--random',
      '8',
    );
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/^error: fidelity gate: KL .* exceeds --max-kl 0.0001; nothing was written\n$/);
    expect(existsSync(gated)).toBe(false);
    expect(readdirSync(join(gated, '..'))).toEqual([]);
    const ok = out('ok.mlpackage');
    const report = json(
      await cli(
        'convert',
        tiny,
        '--out',
        ok,
        '--compress',
        'pal4',
        '--seq-len',
        '16',
        '--max-kl',
        '10',
        '--random',
        '8',
        '--keep',
        '*.Wo.weight',
        '--json',
      ),
    ) as {
      variant: string;
      compression: { mode: string; tensors: number; fp16Bytes: number; compressedBytes: number };
    };
    expect(report.compression.mode).toBe('pal4');
    expect(report.variant).toMatch(/hadamard/); // the default rotation for palettes (docs/FIDELITY.md)
    // Folded tiny-mlm: 4 layers x (Wqkv, attn Wo, Wi, mlp Wo), head.dense, the embeddings, the decoder (no
    // longer the embeddings once folded), layer 0's residual and the final unrotate matrices = 21; --keep
    // leaves out the 8 Wo.
    expect(report.compression.tensors).toBe(13);
    expect(report.compression.compressedBytes / report.compression.fp16Bytes).toBeLessThan(0.27);
    const int8 = json(
      await cli(
        'convert',
        tiny,
        '--out',
        out('int8.mlpackage'),
        '--compress',
        'int8',
        '--seq-len',
        '16',
        '--no-fidelity',
        '--json',
      ),
    ) as { variant: string };
    expect(int8.variant).toBe('folded');
    const inspect = await cli('inspect', ok);
    expect(inspect.stdout).toMatch(/^compression\s+pal4: 13 tensors, 0\.\d MB float16 -> 0\.\d MB \(0\.2\d\dx\)$/m);
    // Parameters count the decompressed tensors, as for the float16 package.
    const fp16 = out('fp16.mlpackage');
    expect((await cli('convert', tiny, '--out', fp16, '--seq-len', '16', '--no-fidelity')).code).toBe(0);
    const count = async (p: string) => (json(await cli('inspect', p, '--json')) as { parameters: number }).parameters;
    expect(await count(ok)).toBe(await count(fp16));
    expect(inspect.stdout).toMatch(/weights\s+pal4 \(compressed/);
  });

  it('outliers --weights costs each tensor, costliest first, with its largest weights', async () => {
    type Costs = {
      mode: string;
      tensors: {
        name: string;
        shape: number[];
        relError: number;
        maxAbs: number;
        largest: { index: number[]; value: number }[];
      }[];
    };
    const pal2 = json(await cli('outliers', tiny, '--weights', '--compress', 'pal2', '--json')) as Costs;
    const pal8 = json(await cli('outliers', tiny, '--weights', '--compress', 'pal8', '--json')) as Costs;
    expect(pal2.tensors).toHaveLength(21);
    const errs = pal2.tensors.map((t) => t.relError);
    expect(errs).toEqual([...errs].sort((a, b) => b - a));
    for (const t of pal2.tensors) {
      expect(t.largest[0]!.index).toHaveLength(t.shape.length);
      expect(Math.abs(t.largest[0]!.value)).toBe(t.maxAbs);
      expect(pal8.tensors.find((u) => u.name === t.name)!.relError).toBeLessThan(t.relError / 4);
    }
    expectOneLineError(
      await cli('outliers', tiny, '--weights', '--compress', 'int4', '--block-size', '5'),
      /--block-size 5 does not divide/,
    );
  });
});

describe('the split decoder (a 70,000-token vocabulary, above the ANE channel limit) under --compress', () => {
  const tinyLong = (
    JSON.parse(readFileSync(join(FX, 'synth-tiny-long', 'golden.json'), 'utf8')) as { config: Record<string, unknown> }
  ).config;
  const config = parseConfig({ ...tinyLong, vocab_size: 70000 }, 'vocab70000');
  const synth = new SynthWeights(config);
  const tensors = synth.names().map((name) => ({ name, shape: synth.shape(name) }));
  const cases: [string, Target, Partial<CompressSpec>, string][] = [
    ['pal4', 'iOS17', {}, 'constexpr_lut_to_dense'],
    ['pal4', 'iOS18', { groupSize: 8 }, 'constexpr_lut_to_dense'],
    ['int4', 'iOS18', { blockSize: 16 }, 'constexpr_blockwise_shift_scale'],
  ];
  it.each(cases)(
    '%s at %s: each chunk is stored compressed and decompresses to the rows the report ran',
    async (mode, target, more, op) => {
      const spec = compressSpec({ mode, target, weights: 'fp16', ...more });
      checkShapes(spec, tensors);
      const cw = new CompressedWeights(synth, spec);
      const opts = { seqLen: 8, maskFrom: 'ids' as const, positions: [0, 5], target };
      const graph = compressGraph(buildModel({ config, weights: cw }, opts), cw);
      for (const k of [0, 1]) {
        expect(graph.consts.has(`decoder_w${k}`), `decoder_w${k} stays float16`).toBe(false);
        expect(graph.ops.find((o) => o.outputs[0]!.name === `decoder_w${k}`)?.op).toBe(op);
      }
      const path = join(tempDir(), 'v70k.mlpackage');
      await writeMLPackage(path, { graph, target });
      // What the fidelity report runs (the decompressed table, chunked by the model) against the package read back.
      const ids = Int32Array.from({ length: 8 }, (_, i) => (i * 7919) % 69000);
      const x = { dtype: 'int32' as const, shape: [1, 8], data: ids };
      const plain = buildModel({ config, weights: cw }, opts);
      const [got, want] = await Promise.all([
        new Interpreter(readMLPackage(path).graph, 'fp16').run({ input_ids: x }),
        new Interpreter(plain, 'fp16').run({ input_ids: x }),
      ]);
      expect([...got.get('logits')!.data]).toEqual([...want.get('logits')!.data]);
      // The chunks hold the table once more in compressed form, not in float16 (70,000 x 64 x 2 bytes): the
      // weights are about twice the compressed table (the body and the blobs' alignment: under 3 MB).
      const bin = statSync(join(path, 'Data/com.apple.CoreML/weights/weight.bin')).size;
      expect(bin).toBeLessThan(2 * compressedBytes(cw.compressed('model.embeddings.tok_embeddings.weight')!) + 3e6);
    },
    60_000,
  );

  it('refuses a group size that splits a chunk, naming the ones that fit', () => {
    const spec = compressSpec({ mode: 'pal4', target: 'iOS18', weights: 'fp16', groupSize: 16 });
    expect(() => checkShapes(spec, tensors)).toThrow(
      /`groupSize: 16` does not fit the decoder's chunks of 35000 rows .*; valid: 1, 2, 4, 8$/,
    );
  });
});
