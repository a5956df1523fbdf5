// Graph -> .mlpackage -> Graph: a hand-built graph with fp16 and fp32 weights, literals of several dtypes,
// a multi-output split, an inline bool constant and a symbolic sequence dim with enumerated shapes comes back
// equal; and writing is atomic (a failing weight leaves nothing; an existing package needs force).

import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTarget } from '../src/ir/target.js';
import type { DescriptionOptions } from '../src/coreml/description.js';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { writeMLPackage, type WriteProgress } from '../src/coreml/mil-write.js';
import { literal, type Const, type Graph, type TensorData, type TensorType } from '../src/ir/graph.js';
import { f16round, roundToF16 } from '../src/numeric/fp16.js';
import { ModernBertError } from '../src/errors.js';

/** Deterministic pseudo-random floats (not float16-exact, so writing must round them). */
function floats(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    a[i] = (s / 2147483648 - 0.5) * 3.3;
  }
  return a;
}

function constant(name: string, type: TensorType, data: () => TensorData): Const {
  return { name, type, load: data };
}

const S = 'S';

/** A small graph in the model's layout (1, C, 1, S) exercising what the writer must carry. */
function sampleGraph(loads: string[] = []): Graph {
  const track = (name: string, data: () => TensorData) => () => {
    loads.push(name);
    return data();
  };
  const consts = [
    constant(
      'conv_w',
      { dtype: 'fp16', shape: [32, 8, 1, 1] },
      track('conv_w', () => floats(256, 1)),
    ),
    constant(
      'conv_b',
      { dtype: 'fp16', shape: [32] },
      track('conv_b', () => floats(32, 2)),
    ),
    constant(
      'scale',
      { dtype: 'fp32', shape: [1, 16, 1, 1] },
      track('scale', () => floats(16, 3)),
    ),
    constant(
      'keep',
      { dtype: 'bool', shape: [1, 16, 1, 1] },
      track('keep', () => Uint8Array.from({ length: 16 }, (_, i) => (i % 3 === 0 ? 0 : 1))),
    ),
  ];
  const t = (dtype: TensorType['dtype'], c: number | string): TensorType => ({ dtype, shape: [1, c, 1, S] });
  return {
    inputs: [{ name: 'x', type: t('fp16', 8) }],
    consts: new Map(consts.map((c) => [c.name, c])),
    ops: [
      {
        op: 'conv',
        name: 'proj',
        inputs: {
          x: 'x',
          weight: 'conv_w',
          bias: 'conv_b',
          strides: literal('int32', [1, 1]),
          pad_type: literal('string', 'valid'),
          pad: literal('int32', [0, 0, 0, 0]),
          dilations: literal('int32', [1, 1]),
          groups: literal('int32', 1),
        },
        outputs: [{ name: 'proj', type: t('fp16', 32) }],
      },
      {
        op: 'split',
        name: 'halves',
        inputs: { x: 'proj', split_sizes: literal('int32', [16, 16]), axis: literal('int32', 1) },
        outputs: [
          { name: 'halves_0', type: t('fp16', 16) },
          { name: 'halves_1', type: t('fp16', 16) },
        ],
      },
      {
        op: 'mul',
        name: 'glu',
        inputs: { x: 'halves_0', y: 'halves_1' },
        outputs: [{ name: 'glu', type: t('fp16', 16) }],
      },
      {
        op: 'layer_norm',
        name: 'norm',
        inputs: { x: 'glu', axes: literal('int32', [1]), epsilon: literal('fp16', f16round(1e-5)) },
        outputs: [{ name: 'norm', type: t('fp16', 16) }],
      },
      {
        op: 'cast',
        name: 'to_fp32',
        inputs: { x: 'norm', dtype: literal('string', 'fp32') },
        outputs: [{ name: 'to_fp32', type: t('fp32', 16) }],
      },
      {
        op: 'mul',
        name: 'scaled',
        inputs: { x: 'to_fp32', y: 'scale' },
        outputs: [{ name: 'scaled', type: t('fp32', 16) }],
      },
      {
        op: 'select',
        name: 'kept',
        inputs: { cond: 'keep', a: 'scaled', b: literal('fp32', -0.25) },
        outputs: [{ name: 'kept', type: t('fp32', 16) }],
      },
      {
        op: 'concat',
        name: 'both',
        inputs: { values: ['kept', 'scaled'], axis: literal('int32', -3), interleave: literal('bool', false) },
        outputs: [{ name: 'both', type: t('fp32', 32) }],
      },
      {
        op: 'reduce_l2_norm',
        name: 'l2',
        inputs: { x: 'both', axes: literal('int32', [1]), keep_dims: literal('bool', true) },
        outputs: [{ name: 'l2', type: t('fp32', 1) }],
      },
    ],
    outputs: ['l2', 'halves_1'],
    taps: new Map([['hidden_states.0', 'glu']]),
  };
}

const DESCRIPTION: DescriptionOptions = {
  inputs: {
    x: {
      description: 'activations (1, 8, 1, S)',
      enumeratedShapes: [
        [1, 8, 1, 64],
        [1, 8, 1, 16],
        [1, 8, 1, 64],
      ],
      defaultShape: [1, 8, 1, 16],
    },
  },
  outputs: { l2: { description: 'channel l2 norms' } },
  metadata: {
    shortDescription: 'round-trip sample',
    author: 'modernbert-ane tests',
    license: 'Apache-2.0',
    versionString: '0.1.0',
    userDefined: { source: 'hand-built', 'com.example.note': 'ü ∑' },
  },
};

describe('Graph -> .mlpackage -> Graph', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'coreml-roundtrip-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('comes back structurally equal, with float16-rounded fp16 weights and exact fp32 ones', async () => {
    const graph = sampleGraph();
    const out = join(dir, 'sample.mlpackage');
    const progress: WriteProgress[] = [];
    const stats = await writeMLPackage(out, {
      graph,
      description: DESCRIPTION,
      target: 'iOS17',
      onProgress: (p) => progress.push(p),
    });
    expect(stats).toMatchObject({
      target: 'iOS17',
      specificationVersion: 8,
      opset: 'CoreML7',
      consts: 4,
      blobs: 3,
      inlineConsts: 1,
      unusedConsts: 0,
    });
    expect(stats.literals).toBe(15);
    expect(stats.bytesWritten).toBe(stats.weightBytes + stats.modelBytes);
    expect(progress.map((p) => p.name)).toEqual(['conv_w', 'conv_b', 'scale', 'keep']);
    expect(progress.at(-1)).toMatchObject({ constsWritten: 4, constsTotal: 4, weightBytes: stats.weightBytes });

    const back = readMLPackage(out);
    expect(back.target).toBe('iOS17');
    expect(back.graph.inputs).toEqual(graph.inputs);
    expect(back.graph.ops).toEqual(graph.ops);
    expect(back.graph.outputs).toEqual(graph.outputs);
    expect(back.graph.taps).toEqual(graph.taps);
    expect([...back.graph.consts.keys()]).toEqual([...graph.consts.keys()]);
    for (const [name, c] of graph.consts) {
      const read = back.graph.consts.get(name)!;
      expect(read.type).toEqual(c.type);
      const original = c.load();
      const expected = c.type.dtype === 'fp16' ? roundToF16(Float32Array.from(original)) : original;
      expect(read.load()).toEqual(expected);
    }
    expect(back.description).toEqual({
      inputs: [
        {
          name: 'x',
          description: 'activations (1, 8, 1, S)',
          dtype: 'fp16',
          shape: [1, 8, 1, 16],
          enumeratedShapes: [
            [1, 8, 1, 16],
            [1, 8, 1, 64],
          ],
        },
      ],
      outputs: [
        { name: 'l2', description: 'channel l2 norms', dtype: 'fp32', shape: [] },
        { name: 'halves_1', dtype: 'fp16', shape: [] },
      ],
      metadata: DESCRIPTION.metadata,
    });
  });

  it('keeps several symbols apart, and static shapes static', async () => {
    const graph = sampleGraph();
    graph.inputs[0]!.type.shape = [1, 8, 1, 'S'];
    graph.ops[0]!.outputs[0]!.type.shape = [1, 32, 1, 'T']; // a second symbol, only to see it survive
    const out = join(dir, 'symbols.mlpackage');
    await writeMLPackage(out, {
      graph,
      description: {
        inputs: {
          x: {
            shapeRange: [
              { lower: 1, upper: 1 },
              { lower: 8, upper: 8 },
              { lower: 1, upper: 1 },
              { lower: 1, upper: -1 },
            ],
          },
        },
      },
    });
    const back = readMLPackage(out);
    expect(back.graph.ops[0]!.outputs[0]!.type.shape).toEqual([1, 32, 1, 'T']);
    expect(back.graph.ops[1]!.outputs[0]!.type.shape).toEqual([1, 16, 1, 'S']);
    expect(back.description.inputs[0]!.shapeRange).toEqual([
      { lower: 1, upper: 1 },
      { lower: 8, upper: 8 },
      { lower: 1, upper: 1 },
      { lower: 1, upper: -1 },
    ]);
    expect(back.description.inputs[0]!.shape).toEqual([1, 8, 1, 1]);
    expect(back.description.metadata).toEqual({});
  });

  it('writes constants of fewer than 10 elements inline, so they come back as literals (as coremltools prints them)', async () => {
    const graph = sampleGraph();
    graph.consts.set(
      'tiny',
      constant('tiny', { dtype: 'fp32', shape: [1, 2, 1, 1] }, () => Float32Array.from([0.5, -2])),
    );
    graph.ops.push({
      op: 'add',
      name: 'tiny_add',
      inputs: { x: 'l2', y: 'tiny' },
      outputs: [{ name: 'tiny_add', type: { dtype: 'fp32', shape: [1, 2, 1, S] } }],
    });
    graph.outputs = ['tiny_add'];
    const out = join(dir, 'tiny.mlpackage');
    const stats = await writeMLPackage(out, { graph, description: { inputs: DESCRIPTION.inputs } });
    expect(stats.inlineConsts).toBe(2);
    const back = readMLPackage(out);
    expect(back.graph.consts.has('tiny')).toBe(false);
    expect(back.graph.ops.at(-1)!.inputs.y).toEqual({
      kind: 'literal',
      dtype: 'fp32',
      shape: [1, 2, 1, 1],
      value: [0.5, -2],
    });
  });

  it('reads a compile-time input of more than 10 elements back as a literal: a split into 12 heads', async () => {
    const graph = sampleGraph();
    const heads = Array.from({ length: 12 }, (_, h) => ({
      name: `head_${h}`,
      type: { dtype: 'fp16' as const, shape: [1, 1, 1, S] },
    }));
    graph.ops.push({
      op: 'split',
      name: 'heads',
      inputs: {
        x: 'halves_0',
        split_sizes: literal('int32', [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 5]),
        axis: literal('int32', 1),
      },
      outputs: heads,
    });
    heads[11]!.type = { dtype: 'fp16', shape: [1, 5, 1, S] };
    graph.outputs = ['l2', 'head_11'];
    const out = join(dir, 'heads.mlpackage');
    await writeMLPackage(out, { graph, description: { inputs: DESCRIPTION.inputs } });
    const back = readMLPackage(out); // validated and typed: split_sizes must be a compile-time constant
    expect(back.graph.ops.at(-1)!.inputs.split_sizes).toEqual(literal('int32', [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 5]));
    expect(back.graph.ops.at(-1)!.outputs.map((o) => o.type.shape[1])).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 5]);
    expect([...back.graph.consts.keys()]).toEqual([...graph.consts.keys()]);
  });

  it('loads each weight exactly once, one after another, and skips unused ones', async () => {
    const loads: string[] = [];
    const graph = sampleGraph(loads);
    graph.consts.set(
      'unused',
      constant('unused', { dtype: 'fp16', shape: [64] }, () => {
        throw new Error('an unused constant must not be loaded');
      }),
    );
    const stats = await writeMLPackage(join(dir, 'once.mlpackage'), { graph, description: DESCRIPTION });
    expect(loads).toEqual(['conv_w', 'conv_b', 'scale', 'keep']);
    expect(stats.unusedConsts).toBe(1);
  });

  it('refuses value names MIL cannot hold and our reserved metadata keys; op names are free-form', async () => {
    const badValue = sampleGraph();
    badValue.ops[2]!.outputs[0]!.name = 'glu.out';
    badValue.ops[3]!.inputs.x = 'glu.out';
    badValue.taps.clear();
    await expect(
      writeMLPackage(join(dir, 'bad-name.mlpackage'), { graph: badValue, description: DESCRIPTION }),
    ).rejects.toThrow(/value name "glu\.out" is not a MIL identifier/);
    const reserved = { ...DESCRIPTION, metadata: { userDefined: { 'modernbert-ane.symbols': '[]' } } };
    await expect(
      writeMLPackage(join(dir, 'reserved.mlpackage'), { graph: sampleGraph(), description: reserved }),
    ).rejects.toThrow(/metadata key "modernbert-ane\.symbols" is reserved/);
    const freeName = sampleGraph();
    freeName.ops[3]!.name = 'layers.0/norm';
    const out = join(dir, 'free-name.mlpackage');
    await writeMLPackage(out, { graph: freeName, description: DESCRIPTION });
    expect(readMLPackage(out).graph.ops[3]!).toEqual(freeName.ops[3]!);
    expect(existsSync(join(dir, 'bad-name.mlpackage')) || existsSync(join(dir, 'reserved.mlpackage'))).toBe(false);
  });

  it('writes other targets with their specification version and opset', async () => {
    for (const [target, spec, opset] of [
      ['iOS16', 7, 'CoreML6'],
      ['macOS15', 9, 'CoreML8'],
    ] as const) {
      const out = join(dir, `${target}.mlpackage`);
      const stats = await writeMLPackage(out, {
        graph: sampleGraph(),
        description: DESCRIPTION,
        target: parseTarget(target),
      });
      expect([stats.specificationVersion, stats.opset]).toEqual([spec, opset]);
      const back = readMLPackage(out);
      expect([back.specificationVersion, back.opset]).toEqual([spec, opset]);
      expect(back.graph.ops).toEqual(sampleGraph().ops);
    }
  });
});

describe('atomic writing', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'coreml-atomic-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('leaves no package and no temporary folder when a weight fails to load midway', async () => {
    const parent = mkdtempSync(join(dir, 'fail-'));
    const graph = sampleGraph();
    graph.consts.set(
      'scale',
      constant('scale', { dtype: 'fp32', shape: [1, 16, 1, 1] }, () => {
        throw new ModernBertError('FILE_NOT_FOUND', 'checkpoint shard vanished');
      }),
    );
    const out = join(parent, 'model.mlpackage');
    await expect(writeMLPackage(out, { graph, description: DESCRIPTION })).rejects.toThrow('checkpoint shard vanished');
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(parent)).toEqual([]);
  });

  it('leaves nothing when the graph is invalid, before writing anything', async () => {
    const parent = mkdtempSync(join(dir, 'invalid-'));
    const graph = sampleGraph();
    graph.ops[2]!.op = 'frobnicate';
    await expect(writeMLPackage(join(parent, 'model.mlpackage'), { graph, description: DESCRIPTION })).rejects.toThrow(
      /unknown MIL op type "frobnicate"/,
    );
    expect(readdirSync(parent)).toEqual([]);
  });

  it('refuses an existing output unless forced, and then replaces it whole', async () => {
    const parent = mkdtempSync(join(dir, 'exists-'));
    const out = join(parent, 'model.mlpackage');
    await writeMLPackage(out, { graph: sampleGraph(), description: DESCRIPTION });
    const err = await writeMLPackage(out, { graph: sampleGraph(), description: DESCRIPTION }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModernBertError);
    expect((err as ModernBertError).code).toBe('OUTPUT_EXISTS');
    expect(readMLPackage(out).description.metadata.versionString).toBe('0.1.0');

    // A failing forced write keeps the old package.
    const failing = sampleGraph();
    failing.consts.set(
      'keep',
      constant('keep', { dtype: 'bool', shape: [1, 16, 1, 1] }, () => {
        throw new Error('disk full');
      }),
    );
    await expect(writeMLPackage(out, { graph: failing, description: DESCRIPTION, force: true })).rejects.toThrow(
      'disk full',
    );
    expect(readMLPackage(out).description.metadata.versionString).toBe('0.1.0');

    await writeMLPackage(out, {
      graph: sampleGraph(),
      description: { ...DESCRIPTION, metadata: { versionString: '2' } },
      force: true,
    });
    expect(readMLPackage(out).description.metadata).toEqual({ versionString: '2' });
    expect(readdirSync(parent)).toEqual(['model.mlpackage']);
  });
});
