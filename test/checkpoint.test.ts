import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/run/engine.js';
import { readGolden } from '../src/eval/golden.js';
import { verify } from '../src/eval/verify.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import type { Tensor } from '../src/io/weights.js';
import {
  cleanupTempDirs,
  FX,
  fromF16Bits,
  readFixtureJson,
  readTensors,
  tempDir,
  toBF16Bits,
  toF16Bits,
  writeCheckpoint,
  type Json,
} from './helpers/fixtures.js';
import { bareBody, expectedEmbedding, sentenceTransformers } from './helpers/embedding.js';
import { referenceForward } from './helpers/reference.js';
import { expectError, goldenHidden, goldenRow, lookup, maxDiff, maxDiffTokens } from './helpers/run.js';

afterAll(cleanupTempDirs);

const TINY_MLM = join(FX, 'tiny-mlm');
const mlmTensors = readTensors(join(TINY_MLM, 'model.safetensors'));
const mlmConfig = readFixtureJson('tiny-mlm');

/** A copy of the tensors with some removed, renamed or replaced. */
function edit(
  tensors: Map<string, Tensor>,
  f: (name: string, t: Tensor) => Array<[string, Tensor]>,
): Map<string, Tensor> {
  return new Map([...tensors].flatMap(([n, t]) => f(n, t)));
}

async function folder(spec: {
  config?: Json;
  tensors?: Map<string, Tensor>;
  shards?: number;
  dtype?: 'F32' | 'F16' | 'BF16';
}): Promise<string> {
  return writeCheckpoint(tempDir('mbane-ckpt-'), {
    config: spec.config ?? mlmConfig,
    tensors: spec.tensors ?? mlmTensors,
    shards: spec.shards,
    dtype: spec.dtype,
    tokenizerFrom: TINY_MLM,
  });
}

/** Logits of every token of the golden rows (but the 4 x 104 batch), for exact comparisons between two loads. */
async function allLogits(dir: string, fixture = 'tiny-mlm'): Promise<number[]> {
  const ckpt = loadCheckpoint(dir);
  const engine = new Engine(ckpt);
  const out: number[] = [];
  try {
    for (const gc of readGolden(join(FX, fixture, 'golden.safetensors')).filter((c) => c.name !== 'batch_padded')) {
      for (let b = 0; b < gc.inputIds.shape[0]; b++) {
        const { ids, attention } = goldenRow(gc, b);
        const res = await engine.forward({ ids, attention });
        out.push(...res.outputs.get('logits')!.data);
      }
    }
  } finally {
    ckpt.close();
  }
  return out;
}

describe('sharded checkpoints', () => {
  it('tiny-mlm as 2 shards + model.safetensors.index.json gives identical outputs and passes its golden', async () => {
    const dir = await folder({ shards: 2 });
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as {
      weight_map: Record<string, string>;
    };
    expect(new Set(Object.values(index.weight_map)).size).toBe(2);
    const ckpt = loadCheckpoint(dir);
    const report = await verify(new Engine(ckpt), readGolden(join(TINY_MLM, 'golden.safetensors')), 1e-4);
    ckpt.close();
    expect(report.passed).toBe(true);
    expect(await allLogits(dir)).toEqual(await allLogits(TINY_MLM));
  });

  it('a shard that is missing is FILE_NOT_FOUND naming it', async () => {
    const dir = await folder({ shards: 2 });
    rmSync(join(dir, 'model-00002-of-00002.safetensors'));
    const e = await expectError(() => loadCheckpoint(dir), 'FILE_NOT_FOUND');
    expect(e.message).toContain('model-00002-of-00002.safetensors');
  });

  it('an index that puts a tensor in the wrong shard, or has no weight_map, is CORRUPT_FILE', async () => {
    const dir = await folder({ shards: 2 });
    const path = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(path, 'utf8')) as { weight_map: Record<string, string> };
    const [first] = Object.keys(index.weight_map);
    writeFileSync(
      path,
      JSON.stringify({ weight_map: { ...index.weight_map, [first!]: 'model-00002-of-00002.safetensors' } }),
    );
    const e = await expectError(() => loadCheckpoint(dir), 'CORRUPT_FILE');
    expect(e.message).toContain(`"${first}"`);
    writeFileSync(path, JSON.stringify({ metadata: {} }));
    expect((await expectError(() => loadCheckpoint(dir), 'CORRUPT_FILE')).message).toContain('weight_map');
  });
});

describe('folders that are not checkpoints', () => {
  it('a missing folder, a file, a missing or broken config.json', async () => {
    expect((await expectError(() => loadCheckpoint(join(FX, 'no-such-model')), 'FILE_NOT_FOUND')).message).toContain(
      'no-such-model',
    );
    await expectError(() => loadCheckpoint(join(TINY_MLM, 'config.json')), 'BAD_INPUT');
    const dir = tempDir();
    copyFileSync(join(TINY_MLM, 'model.safetensors'), join(dir, 'model.safetensors'));
    expect((await expectError(() => loadCheckpoint(dir), 'FILE_NOT_FOUND')).message).toContain('config.json');
    writeFileSync(join(dir, 'config.json'), '{"hidden_size": 64,');
    expect((await expectError(() => loadCheckpoint(dir), 'CORRUPT_FILE')).message).toContain(
      'config.json is not valid JSON',
    );
  });

  it('no weights at all, or only pytorch_model.bin', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'config.json'), JSON.stringify(mlmConfig));
    const e = await expectError(() => loadCheckpoint(dir), 'FILE_NOT_FOUND');
    expect(e.message).toContain('has no model.safetensors or model.safetensors.index.json');
    expect(e.message).not.toContain('pytorch_model.bin');
    writeFileSync(join(dir, 'pytorch_model.bin'), 'PK');
    const bin = await expectError(() => loadCheckpoint(dir), 'FILE_NOT_FOUND');
    expect(bin.message).toContain('pytorch_model.bin is not supported');
  });
});

describe('config and weights that disagree', () => {
  it('a different hidden size is SHAPE_MISMATCH naming the tensor and both shapes', async () => {
    const dir = await folder({ config: { ...mlmConfig, hidden_size: 32 } });
    const e = await expectError(() => loadCheckpoint(dir), 'SHAPE_MISMATCH');
    expect(e.message).toContain(
      '"model.embeddings.tok_embeddings.weight" has shape [1024, 64] but the config implies [1024, 32]',
    );
  });

  it('a different intermediate or vocabulary size', async () => {
    const inter = await expectError(
      async () => loadCheckpoint(await folder({ config: { ...mlmConfig, intermediate_size: 128 } })),
      'SHAPE_MISMATCH',
    );
    expect(inter.message).toContain(
      '"model.layers.0.mlp.Wi.weight" has shape [192, 64] but the config implies [256, 64]',
    );
    const vocab = await expectError(
      async () => loadCheckpoint(await folder({ config: { ...mlmConfig, vocab_size: 1010 } })),
      'SHAPE_MISMATCH',
    );
    expect(vocab.message).toContain('tok_embeddings');
  });

  it('a missing tensor is named', async () => {
    const dir = await folder({
      tensors: edit(mlmTensors, (n, t) => (n === 'model.layers.2.mlp.Wo.weight' ? [] : [[n, t]])),
    });
    const e = await expectError(() => loadCheckpoint(dir), 'BAD_CONFIG');
    expect(e.message).toContain('"model.layers.2.mlp.Wo.weight" [64, 96], which the weights do not have');
  });

  it('an extra tensor is named; so are the layers a config with fewer layers leaves over', async () => {
    const extra = await expectError(
      async () =>
        loadCheckpoint(
          await folder({
            tensors: new Map([
              ...mlmTensors,
              ['model.layers.0.attn.rotary.inv_freq', { shape: [8], data: new Float32Array(8) }],
            ]),
          }),
        ),
      'BAD_CONFIG',
    );
    expect(extra.message).toContain('model.layers.0.attn.rotary.inv_freq');
    const fewer = await expectError(
      async () =>
        loadCheckpoint(
          await folder({
            config: {
              ...mlmConfig,
              num_hidden_layers: 3,
              layer_types: ['full_attention', 'sliding_attention', 'sliding_attention'],
            },
          }),
        ),
      'BAD_CONFIG',
    );
    expect(fewer.message).toContain('model.layers.3.');
  });

  it('bias flags that the weights contradict', async () => {
    const missing = await expectError(
      async () => loadCheckpoint(await folder({ config: { ...mlmConfig, attention_bias: true } })),
      'BAD_CONFIG',
    );
    expect(missing.message).toContain('"model.layers.0.attn.Wqkv.bias"');
    const extra = await expectError(
      async () => loadCheckpoint(await folder({ config: { ...mlmConfig, decoder_bias: false } })),
      'BAD_CONFIG',
    );
    expect(extra.message).toContain('decoder.bias');
  });

  it('an untied config without a decoder weight', async () => {
    const e = await expectError(
      async () => loadCheckpoint(await folder({ config: { ...mlmConfig, tie_word_embeddings: false } })),
      'BAD_CONFIG',
    );
    expect(e.message).toContain('"decoder.weight"');
  });

  it('a stored decoder.weight is used as it is (untied)', async () => {
    const decoder = {
      shape: [1024, 64],
      data: Float32Array.from({ length: 1024 * 64 }, (_, i) => ((i * 7919) % 200) / 1000 - 0.1),
    };
    const dir = await folder({
      config: { ...mlmConfig, tie_word_embeddings: false },
      tensors: new Map([...mlmTensors, ['decoder.weight', decoder]]),
    });
    const ckpt = loadCheckpoint(dir);
    expect(ckpt.weights.get('decoder.weight').data).toEqual(decoder.data);
    const gc = readGolden(join(TINY_MLM, 'golden.safetensors')).find((c) => c.name === 'single')!;
    const { ids, real } = goldenRow(gc, 0);
    const res = await new Engine(ckpt).forward({ ids });
    const ref = referenceForward(ckpt.config, lookup(ckpt.weights), ids);
    expect(maxDiffTokens(res.outputs.get('logits')!, ref.logits!, real)).toBeLessThan(3e-5);
    ckpt.close();
  });

  it('the body stored both with and without the "model." prefix is CORRUPT_FILE', async () => {
    const dir = await folder({
      tensors: new Map([...mlmTensors, ['final_norm.weight', mlmTensors.get('model.final_norm.weight')!]]),
    });
    expect((await expectError(() => loadCheckpoint(dir), 'CORRUPT_FILE')).message).toContain(
      '"model.final_norm.weight" is stored twice',
    );
  });
});

describe('stored element types', () => {
  it('float16 weights read as the float32 checkpoint holding the same rounded values', async () => {
    const rounded = edit(mlmTensors, (n, t) => [
      [n, { shape: t.shape, data: Float32Array.from(t.data, (v) => fromF16Bits(toF16Bits(v))) }],
    ]);
    const f16 = await folder({ dtype: 'F16' });
    const f32 = await folder({ tensors: rounded });
    const ckpt = loadCheckpoint(f16);
    expect(ckpt.storedDtypes).toEqual(['F16']);
    ckpt.close();
    const a = await allLogits(f16);
    expect(a).toEqual(await allLogits(f32));
    // Rounding the weights to float16 moves the outputs, but not far.
    const exact = await allLogits(TINY_MLM);
    const d = maxDiff(a, exact);
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(0.05);
  });

  it('bfloat16 likewise', async () => {
    const bf16 = await folder({ dtype: 'BF16' });
    const toBF = (v: number) => new Float32Array(new Uint32Array([toBF16Bits(v) << 16]).buffer)[0]!;
    const f32 = await folder({
      tensors: edit(mlmTensors, (n, t) => [[n, { shape: t.shape, data: Float32Array.from(t.data, toBF) }]]),
    });
    expect(await allLogits(bf16)).toEqual(await allLogits(f32));
  });
});

describe('ModernBertModel checkpoints (no head, no "model." prefix)', () => {
  it('load, and output the golden last hidden state', async () => {
    const dir = await bareBody();
    const ckpt = loadCheckpoint(dir);
    expect(ckpt.config.head).toBe('none');
    expect(ckpt.weights.has('model.layers.0.attn.Wqkv.weight')).toBe(true);
    const engine = new Engine(ckpt);
    for (const gc of readGolden(join(TINY_MLM, 'golden.safetensors'))) {
      for (let b = 0; b < gc.inputIds.shape[0]; b++) {
        const { ids, attention, real } = goldenRow(gc, b);
        const res = await engine.forward({ ids, attention });
        expect(maxDiffTokens(res.outputs.get('hidden_states')!, goldenHidden(gc, 4, b), real)).toBeLessThan(1e-4);
      }
    }
    ckpt.close();
  });
});

describe('sentence-transformers folders', () => {
  for (const [pooling, normalize] of [
    ['mean', true],
    ['cls', true],
    ['mean', false],
  ] as const) {
    it(`${pooling} pooling${normalize ? ' + Normalize' : ''}: the embedding is the pooled golden last hidden state (padded rows too)`, async () => {
      const ckpt = loadCheckpoint(await sentenceTransformers(pooling, normalize));
      expect(ckpt.embedding).toEqual({ pooling, normalize });
      const engine = new Engine(ckpt);
      for (const gc of readGolden(join(TINY_MLM, 'golden.safetensors'))) {
        for (let b = 0; b < gc.inputIds.shape[0]; b++) {
          const { ids, attention, real } = goldenRow(gc, b);
          const res = await engine.forward({ ids, attention });
          const emb = res.outputs.get('embedding')!;
          expect(emb.shape).toEqual([1, 64]);
          const want = expectedEmbedding(goldenHidden(gc, 4, b), real, pooling, normalize);
          expect(maxDiff(emb.data, want), `${gc.name}[${b}]`).toBeLessThan(1e-4);
          if (normalize) expect(Math.hypot(...emb.data)).toBeCloseTo(1, 5);
        }
      }
      ckpt.close();
    });
  }

  it('unsupported pooling, unknown modules and a missing Pooling module are errors', async () => {
    const dir = await sentenceTransformers('mean', false);
    const poolPath = join(dir, '1_Pooling', 'config.json');
    const pool = JSON.parse(readFileSync(poolPath, 'utf8')) as Json;
    writeFileSync(
      poolPath,
      JSON.stringify({ ...pool, pooling_mode_mean_tokens: false, pooling_mode_max_tokens: true }),
    );
    expect((await expectError(() => loadCheckpoint(dir), 'UNSUPPORTED')).message).toContain('pooling_mode_max_tokens');
    writeFileSync(poolPath, JSON.stringify(pool));
    const modules = JSON.parse(readFileSync(join(dir, 'modules.json'), 'utf8')) as Json[];
    writeFileSync(
      join(dir, 'modules.json'),
      JSON.stringify([...modules, { idx: 2, name: '2', path: '2_Dense', type: 'sentence_transformers.models.Dense' }]),
    );
    expect((await expectError(() => loadCheckpoint(dir), 'UNSUPPORTED')).message).toContain('Dense');
    writeFileSync(join(dir, 'modules.json'), JSON.stringify([modules[0]]));
    expect((await expectError(() => loadCheckpoint(dir), 'CORRUPT_FILE')).message).toContain('no Pooling module');
    // A module that is not an object, and a Pooling path out of the folder: clear errors, not TypeErrors.
    writeFileSync(join(dir, 'modules.json'), JSON.stringify([null, ...modules]));
    await expectError(() => loadCheckpoint(dir), 'UNSUPPORTED');
    writeFileSync(
      join(dir, 'modules.json'),
      JSON.stringify(modules.map((m) => (String(m.type).endsWith('.Pooling') ? { ...m, path: '../elsewhere' } : m))),
    );
    expect((await expectError(() => loadCheckpoint(dir), 'CORRUPT_FILE')).message).toContain(
      'the Pooling module\'s path "../elsewhere" is not a folder inside',
    );
  });
});

/** Deterministic values in [-0.3, 0.3). */
function filler(n: number, seed: number): Float32Array {
  let x = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return (x / 2 ** 32 - 0.5) * 0.6;
  });
}

describe('other head counts and label counts', () => {
  const cases: Array<[string, number, number]> = [
    ['tiny-cls-mean', 2, 4],
    ['tiny-token', 8, 7],
  ];
  for (const [fixture, heads, labels] of cases) {
    it(`${fixture} with ${heads} heads and ${labels} labels (classifier resized) follows the reference`, async () => {
      const tensors = readTensors(join(FX, fixture, 'model.safetensors'));
      const w = tensors.get('classifier.weight')!;
      const b = tensors.get('classifier.bias')!;
      const old = w.shape[0]!;
      const cw = new Float32Array(labels * 64);
      cw.set(w.data.subarray(0, Math.min(old, labels) * 64));
      cw.set(filler((labels - old) * 64, 7), old * 64);
      const cb = new Float32Array(labels);
      cb.set(b.data.subarray(0, Math.min(old, labels)));
      cb.set(filler(labels - old, 11), old);
      tensors.set('classifier.weight', { shape: [labels, 64], data: cw });
      tensors.set('classifier.bias', { shape: [labels], data: cb });
      const names = Array.from({ length: labels }, (_, i) => `class-${i}`);
      const config = {
        ...readFixtureJson(fixture),
        num_attention_heads: heads,
        id2label: Object.fromEntries(names.map((n, i) => [String(i), n])),
        label2id: Object.fromEntries(names.map((n, i) => [n, i])),
      };
      const dir = await writeCheckpoint(tempDir(), { config, tensors, tokenizerFrom: join(FX, fixture) });
      const ckpt = loadCheckpoint(dir);
      expect(ckpt.config).toMatchObject({ numHeads: heads, headDim: 64 / heads, labels: names });
      const engine = new Engine(ckpt);
      const gc = readGolden(join(FX, fixture, 'golden.safetensors')).find((c) => c.name === 'long_random')!;
      const { ids, attention, real } = goldenRow(gc, 0);
      const res = await engine.forward({ ids, attention }, { taps: 'all' });
      const ref = referenceForward(ckpt.config, lookup(ckpt.weights), ids, attention);
      const logits = res.outputs.get('logits')!;
      if (fixture === 'tiny-cls-mean') {
        expect(logits.shape).toEqual([1, labels]);
        expect(maxDiff(logits.data, ref.logits![0]!)).toBeLessThan(3e-5);
      } else {
        expect(logits.shape).toEqual([1, labels, 1, ids.length]);
        expect(maxDiffTokens(logits, ref.logits!, real)).toBeLessThan(3e-5);
      }
      for (let i = 0; i <= ckpt.config.numLayers; i++)
        expect(maxDiffTokens(res.taps.get(`hidden_states.${i}`)!, ref.hidden[i]!, real)).toBeLessThan(3e-5);
      // The head count matters: the same weights with the fixture's own head count give other hidden states.
      const own = referenceForward({ ...ckpt.config, numHeads: 4, headDim: 16 }, lookup(ckpt.weights), ids, attention);
      expect(maxDiffTokens(res.taps.get('hidden_states.1')!, own.hidden[1]!, real)).toBeGreaterThan(1e-3);
      ckpt.close();
    });
  }
});

describe('inputs the model cannot take', () => {
  it('longer than max_position_embeddings, or ids outside the vocabulary, are BAD_INPUT', async () => {
    const ckpt = loadCheckpoint(TINY_MLM);
    const engine = new Engine(ckpt);
    const long = await expectError(() => engine.forward({ ids: new Array(513).fill(5) }), 'BAD_INPUT');
    expect(long.message).toContain('513 tokens');
    expect(long.message).toContain('512');
    expect((await expectError(() => engine.forward({ ids: [1001, 1024, 1002] }), 'BAD_INPUT')).message).toContain(
      'token id 1024 at position 1',
    );
    // 512 itself is allowed.
    const res = await engine.forward({ ids: new Array(512).fill(5) }, { positions: [0] });
    expect(res.outputs.get('logits')!.shape).toEqual([1, 1024, 1, 1]);
    ckpt.close();
  });
});
