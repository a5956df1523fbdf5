import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig, type ModernBertConfig } from '../src/model/config.js';
import { Engine } from '../src/run/engine.js';
import { readGolden } from '../src/eval/golden.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { cleanupTempDirs, copyFixture, FX, readFixtureJson, type Json } from './helpers/fixtures.js';
import { referenceForward } from './helpers/reference.js';
import { expectError, goldenHidden, goldenRow, lookup, maxDiff, maxDiffTokens, tokenColumn } from './helpers/run.js';

afterAll(cleanupTempDirs);

const TINY = ['tiny-mlm', 'tiny-mlm-bias', 'tiny-mlm-bf16', 'tiny-cls-mean', 'tiny-token'];

describe('config.json in transformers 4.x and 5.x field names', () => {
  for (const name of TINY) {
    it(`${name}: config.json (5.x) and config.v4.json (4.x) parse to the same configuration`, () => {
      const v5 = parseConfig(readFixtureJson(name));
      const v4 = parseConfig(readFixtureJson(name, 'config.v4.json'));
      expect(v4).toEqual(v5);
    });
  }

  it('reads the values the fixtures declare (not just the same wrong values from both)', () => {
    const mlm = parseConfig(readFixtureJson('tiny-mlm', 'config.v4.json'));
    expect(mlm).toMatchObject({
      architecture: 'ModernBertForMaskedLM',
      head: 'mlm',
      vocabSize: 1024,
      hidden: 64,
      intermediate: 96,
      numLayers: 4,
      numHeads: 4,
      headDim: 16,
      maxPositions: 512,
      localWindow: 16,
      layerTypes: ['global', 'local', 'local', 'global'],
      globalRopeTheta: 160000,
      localRopeTheta: 10000,
      normEps: 1e-5,
      normBias: false,
      decoderBias: true,
      tieWordEmbeddings: true,
      labels: [],
    });
    const bias = parseConfig(readFixtureJson('tiny-mlm-bias'));
    expect(bias).toMatchObject({
      numHeads: 2,
      headDim: 32,
      localWindow: 8,
      normEps: 1e-6,
      layerTypes: ['global', 'local', 'global'],
      normBias: true,
      attentionBias: true,
      mlpBias: true,
    });
    const bias4 = parseConfig(readFixtureJson('tiny-mlm-bias', 'config.v4.json'));
    expect(bias4.layerTypes).toEqual(['global', 'local', 'global']); // global_attn_every_n_layers 2
    expect(parseConfig(readFixtureJson('tiny-cls-mean'))).toMatchObject({
      head: 'seqcls',
      classifierPooling: 'mean',
      labels: ['neg', 'neu', 'pos'],
    });
    expect(parseConfig(readFixtureJson('tiny-token')).labels).toEqual([
      'LABEL_0',
      'LABEL_1',
      'LABEL_2',
      'LABEL_3',
      'LABEL_4',
    ]);
  });

  it('parses the released ModernBERT-base and -large configs', () => {
    const base = parseConfig(readFixtureJson('configs', 'modernbert-base.json'));
    expect(base).toMatchObject({
      hidden: 768,
      numLayers: 22,
      numHeads: 12,
      localWindow: 128,
      vocabSize: 50368,
      maxPositions: 8192,
      classifierPooling: 'mean',
    });
    expect(base.layerTypes.map((t) => (t === 'global' ? 'G' : 'L')).join('')).toBe('GLLGLLGLLGLLGLLGLLGLLG');
    const large = parseConfig(readFixtureJson('configs', 'modernbert-large.json'));
    expect(large).toMatchObject({ hidden: 1024, numLayers: 28, numHeads: 16, headDim: 64, intermediate: 2624 });
  });

  it('edited values agree across the two generations of names', () => {
    const v5 = readFixtureJson('tiny-mlm');
    const v4 = readFixtureJson('tiny-mlm', 'config.v4.json');
    const a = parseConfig({
      ...v5,
      layer_types: ['full_attention', 'sliding_attention', 'full_attention', 'sliding_attention'],
      rope_parameters: {
        full_attention: { rope_type: 'default', rope_theta: 1234 },
        sliding_attention: { rope_type: 'default', rope_theta: 56 },
      },
    });
    const b = parseConfig({ ...v4, global_attn_every_n_layers: 2, global_rope_theta: 1234, local_rope_theta: 56 });
    expect(b).toEqual(a);
    expect(a).toMatchObject({
      globalRopeTheta: 1234,
      localRopeTheta: 56,
      layerTypes: ['global', 'local', 'global', 'local'],
    });
  });

  it('layer_types wins over global_attn_every_n_layers; a missing rope_parameters entry or rope_theta falls back to the 4.x field', () => {
    const v5 = readFixtureJson('tiny-mlm');
    const c = parseConfig({
      ...v5,
      global_attn_every_n_layers: 1,
      layer_types: ['sliding_attention', 'full_attention', 'sliding_attention', 'sliding_attention'],
    });
    expect(c.layerTypes).toEqual(['local', 'global', 'local', 'local']);
    const partial = parseConfig({
      ...v5,
      rope_parameters: { full_attention: { rope_type: 'default' } },
      global_rope_theta: 999,
      local_rope_theta: 77,
    });
    expect([partial.globalRopeTheta, partial.localRopeTheta]).toEqual([999, 77]);
    const defaults = parseConfig({ ...v5, rope_parameters: { sliding_attention: { rope_theta: 5 } } });
    expect([defaults.globalRopeTheta, defaults.localRopeTheta]).toEqual([160000, 5]);
  });
});

describe('defaults for fields save_pretrained leaves out', () => {
  it('an empty config is ModernBertConfig() with a bare-model head', () => {
    const expected: ModernBertConfig = {
      architecture: 'ModernBertModel',
      head: 'none',
      vocabSize: 50368,
      hidden: 768,
      intermediate: 1152,
      numLayers: 22,
      numHeads: 12,
      headDim: 64,
      maxPositions: 8192,
      localWindow: 128,
      layerTypes: Array.from({ length: 22 }, (_, i) => (i % 3 === 0 ? 'global' : 'local')),
      globalRopeTheta: 160000,
      localRopeTheta: 10000,
      normEps: 1e-5,
      normBias: false,
      attentionBias: false,
      mlpBias: false,
      decoderBias: true,
      classifierBias: false,
      hiddenActivation: 'gelu',
      classifierActivation: 'gelu',
      classifierPooling: 'cls',
      tieWordEmbeddings: true,
      padTokenId: 50283,
      clsTokenId: 50281,
      sepTokenId: 50282,
      labels: [],
    };
    expect(parseConfig({})).toEqual(expected);
    expect(parseConfig({ model_type: 'modernbert', architectures: null, pad_token_id: null })).toEqual(expected);
  });

  it('a classifier without id2label has two labels; num_labels gives the count', () => {
    expect(parseConfig({ architectures: ['ModernBertForSequenceClassification'] }).labels).toEqual([
      'LABEL_0',
      'LABEL_1',
    ]);
    expect(parseConfig({ architectures: ['ModernBertForTokenClassification'], num_labels: 3 }).labels).toEqual([
      'LABEL_0',
      'LABEL_1',
      'LABEL_2',
    ]);
  });

  it('a 5.x config without global_attn_every_n_layers takes layer kinds from layer_types only', () => {
    const { global_attn_every_n_layers: _, ...v5 } = readFixtureJson('tiny-mlm');
    expect(parseConfig(v5).layerTypes).toEqual(['global', 'local', 'local', 'global']);
  });
});

describe('values it does not implement are UNSUPPORTED, naming the field', () => {
  const v5 = readFixtureJson('tiny-mlm');
  const cases: Array<[string, Json, string, string]> = [
    ['hidden_activation "foo"', { hidden_activation: 'foo' }, 'hidden_activation', '"foo"'],
    ['classifier_activation "tanh"', { classifier_activation: 'tanh' }, 'classifier_activation', '"tanh"'],
    [
      'rope_type "yarn"',
      {
        rope_parameters: {
          full_attention: { rope_type: 'yarn', rope_theta: 160000, factor: 4 },
          sliding_attention: { rope_type: 'default', rope_theta: 10000 },
        },
      },
      'rope_parameters',
      'yarn',
    ],
    [
      'rope_type "linear" on sliding layers',
      {
        rope_parameters: {
          full_attention: { rope_type: 'default', rope_theta: 1 },
          sliding_attention: { rope_type: 'linear', rope_theta: 10000 },
        },
      },
      'rope_parameters',
      'linear',
    ],
    [
      'a flat rope_parameters {rope_type: "yarn"}',
      { rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 8 } },
      'rope_parameters',
      'yarn',
    ],
    [
      'a rope parameter beyond rope_theta',
      { rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 1, factor: 2 } } },
      'rope_parameters',
      'factor',
    ],
    ['rope_scaling', { rope_scaling: { type: 'linear', factor: 2 } }, 'rope_scaling', 'rope_scaling'],
    ['classifier_pooling "max"', { classifier_pooling: 'max' }, 'classifier_pooling', '"max"'],
    [
      'an unknown architecture',
      { architectures: ['ModernBertForQuestionAnswering'] },
      'architectures',
      'ModernBertForQuestionAnswering',
    ],
    ['another model_type', { model_type: 'bert' }, 'model_type', '"bert"'],
    [
      'a layer type other than full/sliding',
      { layer_types: ['full_attention', 'chunked_attention', 'sliding_attention', 'full_attention'] },
      'layer_types',
      'chunked_attention',
    ],
  ];
  for (const [what, patch, field, shown] of cases) {
    it(what, async () => {
      const e = await expectError(() => parseConfig({ ...v5, ...patch }, 'm/config.json'), 'UNSUPPORTED');
      expect(e.context.field).toBe(field);
      expect(e.message).toContain(field);
      expect(e.message).toContain(shown);
      expect(e.message.startsWith('m/config.json: ')).toBe(true);
    });
  }
});

describe('unknown fields and invalid values are BAD_CONFIG, naming the field', () => {
  const v5 = readFixtureJson('tiny-mlm');
  it('an unknown field', async () => {
    const e = await expectError(() => parseConfig({ ...v5, sliding_window: 8 }), 'BAD_CONFIG');
    expect(e.context.field).toBe('sliding_window');
    expect(e.message).toContain('"sliding_window"');
  });
  it('several unknown fields are all named', async () => {
    const e = await expectError(() => parseConfig({ ...v5, foo: 1, bar: true }), 'BAD_CONFIG');
    expect(e.message).toContain('"foo"');
    expect(e.message).toContain('"bar"');
  });
  const cases: Array<[string, Json, string]> = [
    ['hidden_size not divisible by the heads', { num_attention_heads: 3 }, 'num_attention_heads'],
    ['an odd head dimension', { hidden_size: 60, num_attention_heads: 4 }, 'num_attention_heads'],
    ['layer_types of the wrong length', { layer_types: ['full_attention'] }, 'layer_types'],
    ['an odd local_attention', { local_attention: 15 }, 'local_attention'],
    ['a string where a number belongs', { hidden_size: '64' }, 'hidden_size'],
    ['a fractional layer count', { num_hidden_layers: 2.5 }, 'num_hidden_layers'],
    ['a zero vocabulary', { vocab_size: 0 }, 'vocab_size'],
    ['a non-boolean flag', { norm_bias: 'false' }, 'norm_bias'],
    [
      'a zero rope theta',
      { rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 0 } } },
      'rope_parameters',
    ],
    ['a negative 4.x rope theta', { rope_parameters: undefined, local_rope_theta: -1 }, 'local_rope_theta'],
    ['rope_parameters that is not an object', { rope_parameters: 10000 }, 'rope_parameters'],
    ['a negative norm_eps', { norm_eps: -1 }, 'norm_eps'],
    [
      'architectures listing two classes',
      { architectures: ['ModernBertForMaskedLM', 'ModernBertModel'] },
      'architectures',
    ],
    [
      'id2label with a gap',
      { architectures: ['ModernBertForSequenceClassification'], id2label: { 0: 'a', 2: 'c' } },
      'id2label',
    ],
    [
      'id2label that is not an object',
      { architectures: ['ModernBertForSequenceClassification'], id2label: 'ab' },
      'id2label',
    ],
    [
      'num_labels that is not a count',
      { architectures: ['ModernBertForSequenceClassification'], num_labels: 'three' },
      'num_labels',
    ],
  ];
  for (const [what, patch, field] of cases) {
    it(what, async () => {
      const e = await expectError(() => parseConfig({ ...v5, ...patch }), 'BAD_CONFIG');
      expect(e.context.field).toBe(field);
    });
  }
  it('a config that is not an object', async () => {
    await expectError(() => parseConfig([1, 2]), 'BAD_CONFIG');
    await expectError(() => parseConfig(null), 'BAD_CONFIG');
  });
});

describe('labels without id2label come from the classifier shape', () => {
  for (const name of ['tiny-cls-mean', 'tiny-token']) {
    it(name, () => {
      const dir = copyFixture(name, ({ id2label: _a, label2id: _b, ...c }) => c);
      const ckpt = loadCheckpoint(dir);
      try {
        expect(ckpt.config.labels).toEqual(
          Array.from({ length: name === 'tiny-token' ? 5 : 3 }, (_, i) => `LABEL_${i}`),
        );
      } finally {
        ckpt.close();
      }
    });
  }
});

// Every field that changes the math, changed in a copy of a tiny checkpoint: the engine must follow the
// independent float64 reference for the new value, and the output must actually move.
describe('every math field is honoured', () => {
  const TOL = 3e-5;

  it('the reference implementation reproduces every tiny golden (so it can judge other configurations)', () => {
    for (const name of TINY) {
      const ckpt = loadCheckpoint(join(FX, name));
      const cases = readGolden(join(FX, name, 'golden.safetensors'));
      try {
        for (const gc of cases.filter((c) => c.name !== 'batch_padded')) {
          for (let b = 0; b < gc.inputIds.shape[0]; b++) {
            const { ids, attention, real } = goldenRow(gc, b);
            const ref = referenceForward(ckpt.config, lookup(ckpt.weights), ids, attention);
            for (let i = 0; i <= ckpt.config.numLayers; i++) {
              const gold = goldenHidden(gc, i, b);
              for (const s of real)
                expect(maxDiff(ref.hidden[i]![s]!, gold[s]!), `${name}/${gc.name}[${b}] hidden ${i}`).toBeLessThan(TOL);
            }
            const g = gc.logits!;
            if (g.shape.length === 2) {
              expect(maxDiff(ref.logits![0]!, g.data.subarray(b * g.shape[1]!, (b + 1) * g.shape[1]!))).toBeLessThan(
                TOL,
              );
            } else {
              const [, S, V] = g.shape as [number, number, number];
              for (const s of real)
                expect(maxDiff(ref.logits![s]!, g.data.subarray((b * S + s) * V, (b * S + s + 1) * V))).toBeLessThan(
                  TOL,
                );
            }
          }
        }
      } finally {
        ckpt.close();
      }
    }
  });

  /** Runs golden rows through the engine and the reference; returns max diffs (vs reference, vs `baseline`). */
  async function compare(
    dir: string,
    fixture: string,
    rows: Array<[string, number]>,
    baseline?: Map<string, Float32Array>,
  ): Promise<{ vsRef: number; moved: number; outputs: Map<string, Float32Array> }> {
    const ckpt = loadCheckpoint(dir);
    const engine = new Engine(ckpt);
    const cases = readGolden(join(FX, fixture, 'golden.safetensors'));
    let vsRef = 0;
    let moved = 0;
    const outputs = new Map<string, Float32Array>();
    try {
      for (const [caseName, b] of rows) {
        const gc = cases.find((c) => c.name === caseName)!;
        const { ids, attention, real } = goldenRow(gc, b);
        const res = await engine.forward({ ids, attention }, { taps: 'all' });
        const ref = referenceForward(ckpt.config, lookup(ckpt.weights), ids, attention);
        for (let i = 0; i <= ckpt.config.numLayers; i++)
          vsRef = Math.max(vsRef, maxDiffTokens(res.taps.get(`hidden_states.${i}`)!, ref.hidden[i]!, real));
        const logits = res.outputs.get('logits')!;
        if (ckpt.config.head === 'seqcls') vsRef = Math.max(vsRef, maxDiff(logits.data, ref.logits![0]!));
        else vsRef = Math.max(vsRef, maxDiffTokens(logits, ref.logits!, real));
        // Real tokens only: padded positions carry no meaning.
        const key = `${caseName}[${b}]`;
        const kept =
          ckpt.config.head === 'seqcls'
            ? Float32Array.from(logits.data)
            : Float32Array.from(real.flatMap((s) => Array.from(tokenColumn(logits, s))));
        outputs.set(key, kept);
        const base = baseline?.get(key);
        if (base) moved = Math.max(moved, maxDiff(kept, base));
      }
    } finally {
      ckpt.close();
    }
    return { vsRef, moved, outputs };
  }

  // 42 real tokens padded to 99: longer than every window below, and padding in the way.
  const ROWS_MLM: Array<[string, number]> = [['long_random', 0]];
  let tinyBaseline: Map<string, Float32Array> | undefined;
  const baselineMlm = async () =>
    (tinyBaseline ??= (await compare(join(FX, 'tiny-mlm'), 'tiny-mlm', ROWS_MLM)).outputs);
  const rope = (full: number, sliding: number) => ({
    rope_parameters: {
      full_attention: { rope_type: 'default', rope_theta: full },
      sliding_attention: { rope_type: 'default', rope_theta: sliding },
    },
  });
  const variants: Array<[string, Json]> = [
    ['local_attention 16 -> 4', { local_attention: 4 }],
    ['local_attention 16 -> 64', { local_attention: 64 }],
    ['sliding rope theta 10000 -> 37', rope(160000, 37)],
    ['global rope theta 160000 -> 100', rope(100, 10000)],
    ['norm_eps 1e-5 -> 0.05', { norm_eps: 0.05 }],
    [
      'layer types: every layer sliding',
      { layer_types: ['sliding_attention', 'sliding_attention', 'sliding_attention', 'sliding_attention'] },
    ],
    [
      'layer types: every layer global',
      { layer_types: ['full_attention', 'full_attention', 'full_attention', 'full_attention'] },
    ],
    ['hidden_activation gelu_pytorch_tanh', { hidden_activation: 'gelu_pytorch_tanh' }],
    ['hidden_activation silu', { hidden_activation: 'silu' }],
    ['hidden_activation relu', { hidden_activation: 'relu' }],
    ['classifier_activation relu', { classifier_activation: 'relu' }],
  ];

  it('tiny-mlm as saved agrees with the reference', async () => {
    const { vsRef, outputs } = await compare(join(FX, 'tiny-mlm'), 'tiny-mlm', ROWS_MLM);
    expect(vsRef).toBeLessThan(TOL);
    tinyBaseline = outputs;
  });

  for (const [what, patch] of variants) {
    it(`tiny-mlm with ${what}: follows the reference, and the output moves`, async () => {
      const baseline = await baselineMlm();
      const dir = copyFixture('tiny-mlm', (c) => ({ ...c, ...patch }));
      const { vsRef, moved } = await compare(dir, 'tiny-mlm', ROWS_MLM, baseline);
      expect(vsRef).toBeLessThan(TOL);
      expect(moved).toBeGreaterThan(20 * TOL);
    });
  }

  it('the same edits through 4.x names (global_attn_every_n_layers, global/local_rope_theta) follow the reference', async () => {
    const baseline = await baselineMlm();
    const dir = copyFixture(
      'tiny-mlm',
      (c) => ({ ...c, global_attn_every_n_layers: 2, global_rope_theta: 500, local_rope_theta: 20 }),
      'config.v4.json',
    );
    const ckpt = loadCheckpoint(dir);
    expect(ckpt.config).toMatchObject({
      layerTypes: ['global', 'local', 'global', 'local'],
      globalRopeTheta: 500,
      localRopeTheta: 20,
    });
    ckpt.close();
    const { vsRef, moved } = await compare(dir, 'tiny-mlm', ROWS_MLM, baseline);
    expect(vsRef).toBeLessThan(TOL);
    expect(moved).toBeGreaterThan(20 * TOL);
  });

  it('classifier_pooling mean -> cls on tiny-cls-mean (padded rows included)', async () => {
    const rows: Array<[string, number]> = [
      ['long_random', 0],
      ['single', 0],
    ];
    const { outputs: baseline, vsRef: base } = await compare(join(FX, 'tiny-cls-mean'), 'tiny-cls-mean', rows);
    expect(base).toBeLessThan(TOL);
    const dir = copyFixture('tiny-cls-mean', (c) => ({ ...c, classifier_pooling: 'cls' }));
    const { vsRef, moved } = await compare(dir, 'tiny-cls-mean', rows, baseline);
    expect(vsRef).toBeLessThan(TOL);
    expect(moved).toBeGreaterThan(20 * TOL);
  });
});
