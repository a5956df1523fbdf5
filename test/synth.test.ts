import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.js';
import { ModernBertError } from '../src/errors.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { parseOverride, type Override } from '../src/synth/overrides.js';
import { SYNTH_PRESETS } from '../src/synth/presets.js';
import { synthTensor } from '../src/numeric/prng.js';
import { SynthWeights, synthConfigJson, writeSynthCheckpoint } from '../src/synth/synth.js';

interface Golden {
  config: Record<string, unknown>;
  recipe: Array<{ name: string; shape: number[]; base: number; amp: number }>;
  overrides: Override[];
}
const golden = (name: string): Golden =>
  JSON.parse(readFileSync(`test/fixtures/${name}/golden.json`, 'utf8')) as Golden;
const base = golden('synth-base');
const massive = golden('synth-base-massive');
const dir = mkdtempSync(join(tmpdir(), 'mbane-synth-'));

const M = 2n ** 32n;
/** One element straight from FIXTURES.md, in BigInt arithmetic (independent of src/numeric/prng.ts). */
function referenceValue(name: string, i: number, baseValue: number, amp: number): number {
  let seed = 0x811c9dc5n;
  for (const b of Buffer.from(name, 'utf8')) seed = ((seed ^ BigInt(b)) * 0x01000193n) % M;
  let x = (BigInt(i) + seed * 0x9e3779b9n) % M;
  x ^= x >> 16n;
  x = (x * 0x7feb352dn) % M;
  x ^= x >> 15n;
  x = (x * 0x846ca68bn) % M;
  x ^= x >> 16n;
  const u = Number(x >> 8n) / 16777216;
  return Math.fround(baseValue + (2 * u - 1) * amp);
}

async function expectError(p: Promise<unknown> | (() => unknown), code: string): Promise<ModernBertError> {
  const e =
    typeof p === 'function'
      ? (() => {
          try {
            p();
            return undefined;
          } catch (err) {
            return err;
          }
        })()
      : await p.then(
          () => undefined,
          (err: unknown) => err,
        );
  expect(e).toBeInstanceOf(ModernBertError);
  expect((e as ModernBertError).code).toBe(code);
  return e as ModernBertError;
}

/** The header and float32 data of a safetensors file, read from its bytes. */
function readSafetensors(path: string): {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  tensor: (name: string) => Float32Array;
} {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const { __metadata__: _, ...header } = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const tensor = (name: string): Float32Array => {
    const [a, b] = header[name]!.data_offsets;
    const out = new Float32Array((b - a) / 4);
    for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(8 + n + a + 4 * i);
    return out;
  };
  return { header, tensor };
}

describe('synthetic recipe', () => {
  it('the base preset is the synth-base configuration, with a masked-LM head', () => {
    const preset = SYNTH_PRESETS.base;
    for (const [k, v] of Object.entries(base.config)) expect(preset[k], k).toEqual(v);
    expect(preset.architectures).toEqual(['ModernBertForMaskedLM']);
    expect(preset.model_type).toBe('modernbert');
    expect(preset.tie_word_embeddings).toBe(true);
  });

  it("the large preset is ModernBERT-large's architecture", () => {
    const released = JSON.parse(readFileSync('test/fixtures/configs/modernbert-large.json', 'utf8')) as Record<
      string,
      unknown
    >;
    for (const [k, v] of Object.entries(SYNTH_PRESETS.large)) {
      if (k in released) expect(v, k).toEqual(released[k]);
    }
    expect(parseConfig(SYNTH_PRESETS.large)).toEqual(parseConfig(released));
  });

  it('derives exactly the golden recipes (names, order, shapes, base, amp) from the base config', () => {
    const weights = new SynthWeights(parseConfig(SYNTH_PRESETS.base), massive.overrides);
    expect(weights.recipe).toEqual(base.recipe);
    expect(weights.recipe).toEqual(massive.recipe);
  });

  it('produces every synth-base tensor as the spec says (sampled elements) and applies the massive override', () => {
    const weights = new SynthWeights(parseConfig(SYNTH_PRESETS.base), massive.overrides);
    const scratch = new Float32Array(50368 * 768);
    for (const e of weights.recipe) {
      const n = e.shape.reduce((a, b) => a * b, 1);
      const data = weights.fill(e, scratch.subarray(0, n));
      const picks = [0, n - 1, ...Array.from({ length: 6 }, (_, k) => Math.floor(((k + 1) * 2654435761) % n))];
      for (const i of picks) {
        const overridden = e.name === 'model.layers.2.mlp.Wo.weight' && Math.floor(i / 1152) === 100;
        expect(data[i], `${e.name}[${i}]`).toBe(overridden ? 2000 : referenceValue(e.name, i, e.base, e.amp));
      }
    }
    const wo = weights.get('model.layers.2.mlp.Wo.weight');
    expect(wo.shape).toEqual([768, 1152]);
    expect(wo.data.subarray(100 * 1152, 101 * 1152).every((v) => v === 2000)).toBe(true);
    expect(wo.data[100 * 1152 - 1]).toBe(
      referenceValue('model.layers.2.mlp.Wo.weight', 100 * 1152 - 1, 0, 0.02 * Math.sqrt(3)),
    );
    expect(wo.data[101 * 1152]).toBe(
      referenceValue('model.layers.2.mlp.Wo.weight', 101 * 1152, 0, 0.02 * Math.sqrt(3)),
    );
  });

  it('serves the tied decoder as the embeddings', () => {
    const weights = new SynthWeights(
      parseConfig({
        ...SYNTH_PRESETS.base,
        num_hidden_layers: 1,
        vocab_size: 40,
        pad_token_id: 0,
        cls_token_id: 1,
        sep_token_id: 2,
        bos_token_id: 1,
        eos_token_id: 2,
      }),
    );
    expect(weights.names()).toContain('decoder.weight');
    expect(weights.has('decoder.weight')).toBe(true);
    expect(weights.get('decoder.weight')).toEqual(weights.get('model.embeddings.tok_embeddings.weight'));
    expect(weights.recipe.map((e) => e.name)).not.toContain('decoder.weight');
  });
});

describe('overrides', () => {
  it('parses NAME[i,...]=VALUE and NAME=VALUE', () => {
    expect(parseOverride('model.layers.2.mlp.Wo.weight[100]=2000')).toEqual({
      name: 'model.layers.2.mlp.Wo.weight',
      index: [100],
      value: 2000,
    });
    expect(parseOverride(' w [ 1, 2 ] = -1.5e-3 ')).toEqual({ name: 'w', index: [1, 2], value: -1.5e-3 });
    expect(parseOverride('head.norm.weight=0')).toEqual({ name: 'head.norm.weight', index: [], value: 0 });
    expect(parseOverride('w[]=1')).toEqual({ name: 'w', index: [], value: 1 });
  });

  it('rejects malformed specs', async () => {
    for (const spec of ['w[1]', 'w[1,x]=1', 'w[-1]=1', 'w[1]=abc', '=3', 'w[1]=1 2']) {
      await expectError(() => parseOverride(spec), 'BAD_ARGUMENT');
    }
  });

  it('rejects an override of a tensor that is not stored, or outside it', async () => {
    const config = parseConfig(SYNTH_PRESETS.base);
    await expectError(() => new SynthWeights(config, [parseOverride('nope.weight[0]=1')]), 'BAD_ARGUMENT');
    const tied = await expectError(
      () => new SynthWeights(config, [parseOverride('decoder.weight[0]=1')]),
      'BAD_ARGUMENT',
    );
    expect(tied.message).toContain('tied');
    await expectError(
      () => new SynthWeights(config, [parseOverride('model.layers.2.mlp.Wo.weight[768]=1')]),
      'BAD_ARGUMENT',
    );
    await expectError(
      () => new SynthWeights(config, [parseOverride('model.final_norm.weight[1,2]=1')]),
      'BAD_ARGUMENT',
    );
  });

  it('sets single elements, sub-tensors and whole tensors, later overrides winning', () => {
    const config = parseConfig({
      ...SYNTH_PRESETS.base,
      num_hidden_layers: 1,
      vocab_size: 40,
      pad_token_id: 0,
      cls_token_id: 1,
      sep_token_id: 2,
      bos_token_id: 1,
      eos_token_id: 2,
      hidden_size: 8,
      intermediate_size: 4,
      num_attention_heads: 2,
    });
    const weights = new SynthWeights(config, [
      parseOverride('model.layers.0.attn.Wqkv.weight[3]=7'),
      parseOverride('model.layers.0.attn.Wqkv.weight[3,5]=9'),
      parseOverride('head.norm.weight=0.5'),
    ]);
    const w = weights.get('model.layers.0.attn.Wqkv.weight');
    const fresh = synthTensor('model.layers.0.attn.Wqkv.weight', [24, 8], 0, 0.02 * Math.sqrt(3));
    expect(Array.from(w.data.subarray(24, 32))).toEqual([7, 7, 7, 7, 7, 9, 7, 7]);
    expect(w.data.subarray(0, 24)).toEqual(fresh.subarray(0, 24));
    expect(w.data.subarray(32)).toEqual(fresh.subarray(32));
    expect(Array.from(weights.get('head.norm.weight').data)).toEqual(new Array(8).fill(0.5));
  });
});

describe('writeSynthCheckpoint', () => {
  const tiny = {
    architectures: ['ModernBertForMaskedLM'],
    model_type: 'modernbert',
    vocab_size: 100,
    hidden_size: 64,
    intermediate_size: 96,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    local_attention: 16,
    pad_token_id: 3,
    cls_token_id: 1,
    sep_token_id: 2,
    norm_bias: true,
    attention_bias: true,
    mlp_bias: true,
    classifier_bias: true,
  };

  it('round-trips a tiny config with every bias: config.json, tensor order and values from the bytes', async () => {
    const configPath = join(dir, 'tiny-config.json');
    writeFileSync(configPath, JSON.stringify(tiny));
    const out = join(dir, 'tiny');
    const progress: Array<[number, number]> = [];
    const info = await writeSynthCheckpoint(
      configPath,
      out,
      [parseOverride('model.layers.1.mlp.Wo.bias[5]=3.5')],
      (d, t) => progress.push([d, t]),
    );

    const config = parseConfig(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')));
    expect(config).toEqual(info.config);
    expect(config.normBias && config.attentionBias && config.mlpBias && config.classifierBias).toBe(true);

    const recipe = new SynthWeights(config).recipe;
    expect(recipe.map((e) => e.name)).toContain('head.dense.bias');
    expect(recipe.map((e) => e.name)).toContain('model.layers.1.attn_norm.bias');
    const { header, tensor } = readSafetensors(join(out, 'model.safetensors'));
    expect(Object.keys(header)).toEqual(recipe.map((e) => e.name));
    let offset = 0;
    for (const e of recipe) {
      const bytes = 4 * e.shape.reduce((a, b) => a * b, 1);
      expect(header[e.name]).toEqual({ dtype: 'F32', shape: e.shape, data_offsets: [offset, offset + bytes] });
      offset += bytes;
      const expected = synthTensor(e.name, e.shape, e.base, e.amp);
      if (e.name === 'model.layers.1.mlp.Wo.bias') expected[5] = 3.5;
      expect(tensor(e.name), e.name).toEqual(expected);
    }
    expect(info).toMatchObject({ tensors: recipe.length, bytes: offset });
    expect(progress).toHaveLength(recipe.length);
    expect(progress.at(-1)).toEqual([offset, offset]);
    expect(progress.every(([d], i) => i === 0 || d >= progress[i - 1]![0])).toBe(true);

    // The project's own loader opens it as a checkpoint, with the decoder tied.
    const ckpt = loadCheckpoint(out);
    try {
      expect(ckpt.weights.get('decoder.weight').data).toEqual(tensor('model.embeddings.tok_embeddings.weight'));
      expect(ckpt.weights.get('head.dense.bias').data).toEqual(tensor('head.dense.bias'));
    } finally {
      ckpt.close();
    }
  });

  it('writes a preset with 4.x field names and refuses to overwrite unless asked', async () => {
    const out = join(dir, 'preset');
    const small = join(dir, 'small.json');
    writeFileSync(
      small,
      JSON.stringify({
        ...SYNTH_PRESETS.base,
        num_hidden_layers: 1,
        vocab_size: 64,
        pad_token_id: 0,
        cls_token_id: 1,
        sep_token_id: 2,
        bos_token_id: 1,
        eos_token_id: 2,
      }),
    );
    await writeSynthCheckpoint(small, out);
    const written = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(written).toMatchObject({
      model_type: 'modernbert',
      global_rope_theta: 160000,
      local_rope_theta: 10000,
      global_attn_every_n_layers: 3,
    });
    expect(written).not.toHaveProperty('layer_types');
    await expectError(writeSynthCheckpoint(small, out), 'OUTPUT_EXISTS');
    await writeSynthCheckpoint(small, out, [], undefined, { overwrite: true });
  });

  it('accepts a folder holding config.json, and gives a config without architectures a masked-LM head', () => {
    const folder = mkdtempSync(join(dir, 'folder-'));
    const { architectures: _, ...bare } = tiny;
    writeFileSync(join(folder, 'config.json'), JSON.stringify(bare));
    expect(synthConfigJson(folder).architectures).toEqual(['ModernBertForMaskedLM']);
    expect(synthConfigJson('base')).toEqual(SYNTH_PRESETS.base);
  });

  it('reports an unknown preset or config path, and writes nothing for a bad override', async () => {
    await expectError(writeSynthCheckpoint('huge', join(dir, 'x')), 'FILE_NOT_FOUND');
    const out = join(dir, 'bad-override');
    await expectError(
      writeSynthCheckpoint('base', out, [parseOverride('model.layers.99.mlp.Wo.weight[0]=1')]),
      'BAD_ARGUMENT',
    );
    expect(existsSync(out)).toBe(false);
  });
});
