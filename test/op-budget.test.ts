// The Neural Engine's op budget (docs/ANE.md, "The op budget"): synth-base (ModernBERT-base's shape) as
// `convert` builds it stays within 3,000 non-constant ops at 1,024 tokens and 6,000 at 8,192, because each
// attention head costs only its four ops (q, k and v are split into heads once per layer), and packed cls
// pooling is a matrix product, so no variant leaves the Neural Engine inside the body.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { predictPlacement, opBudget } from '../src/ane/placement.js';
import { parseConfig, type ModernBertConfig } from '../src/model/config.js';
import { buildModel } from '../src/model/model.js';
import { ANE_ATTENTION_CHUNK, type BuildOptions } from '../src/model/options.js';
import { prepareVariant } from '../src/model/variants.js';
import { SYNTH_PRESETS } from '../src/synth/presets.js';
import { SynthWeights } from '../src/synth/synth.js';
import { cli } from './helpers/cli.js';
import { cleanupTempDirs, ROOT, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const base = parseConfig(SYNTH_PRESETS.base);

/** synth-base's graph as convert builds it by default: folded, l2 norm, float16, padding from the ids. */
function convertGraph(config: ModernBertConfig, o: Partial<BuildOptions> & { seqLen: number }) {
  const v = prepareVariant(
    { config, weights: new SynthWeights(config) },
    { fold: true, rotation: 'none', norm: 'l2', seed: 0 },
  );
  return buildModel(v.source, {
    dtype: 'fp16',
    norm: v.norm,
    maskFrom: 'ids',
    attentionChunk: ANE_ATTENTION_CHUNK,
    ...o,
  });
}

describe('the op budget', () => {
  it('is 3,000 up to 1,024 tokens and grows by a third per doubling to 6,000 at 8,192', () => {
    expect([null, 512, 1024, 2048, 4096, 8192, 16384].map((S) => opBudget(3000, S))).toEqual([
      3000, 3000, 3000, 4000, 5000, 6000, 6000,
    ]);
    expect(opBudget(100, 8192)).toBe(200);
  });

  it.each([
    [1024, 3000, 'one text', undefined],
    [8192, 6000, 'one text', undefined],
    [1024, 3000, 'packed', 8],
    [8192, 6000, 'packed', 8],
  ])(
    'synth-base at %i tokens: within %i ops, nothing off the Neural Engine inside the body (%s)',
    (S, most, _, pack) => {
      const p = predictPlacement(convertGraph(base, { seqLen: S, head: 'mlm', ...(pack ? { pack } : {}) }), {
        sizes: S,
      });
      expect(p.budget).toBe(most);
      expect(p.opCount).toBeLessThanOrEqual(most);
      expect(p.findings.find((f) => f.rule === 'op-count')).toBeUndefined();
      expect(p.boundaries.body).toBe(0);
    },
  );

  it('a head costs its four attention ops per query block and nothing more: q, k and v are split into heads once per layer', () => {
    const withHeads = (H: number) => parseConfig({ ...SYNTH_PRESETS.base, num_attention_heads: H });
    for (const S of [1024, 8192]) {
      const count = (H: number) =>
        convertGraph(withHeads(H), { seqLen: S, head: 'mlm' }).ops.filter((op) => !op.op.startsWith('constexpr'))
          .length;
      const chunks = Math.ceil(S / ANE_ATTENTION_CHUNK);
      const globals = base.layerTypes.filter((t) => t === 'global').length;
      const locals = base.numLayers - globals;
      // Per head: 4 ops per query chunk of a global layer (and a concat of its chunks when there are several), 4 per local layer.
      const perHead = globals * (4 * chunks + (chunks > 1 ? 1 : 0)) + locals * 4;
      expect(count(12) - count(6), `${S} tokens`).toBe(6 * perHead);
    }
  });

  it('convert warns in one line above the budget, and inspect counts against it', async () => {
    const dir = tempDir('mbane-op-budget-');
    const rules = join(dir, 'rules.json');
    writeFileSync(rules, JSON.stringify({ rules: { 'op-count': { threshold: 300 } } }));
    const pkg = join(dir, 'mini.mlpackage');
    const over = await cli(
      'convert',
      join(ROOT, 'models', 'mini-trained'),
      '--out',
      pkg,
      '--seq-len',
      '64',
      '--no-fidelity',
      '--ane-rules',
      rules,
    );
    expect(over.code, over.stderr).toBe(0);
    const count = Number(/(\d+) non-constant ops, above/.exec(over.stderr)?.[1]);
    expect(over.stderr.trim().split('\n')).toEqual([
      `warning: Neural Engine (predicted): op-count [G]: ${count} non-constant ops, above the budget of 300: load and compile time grow with the count`,
    ]);
    expect(over.stdout).toMatch(
      new RegExp(`^Neural Engine \\(predicted\\): \\d+ of ${count} ops \\(budget 300\\)`, 'm'),
    );
    const within = await cli(
      'convert',
      join(ROOT, 'models', 'mini-trained'),
      '--out',
      join(dir, 'mini2.mlpackage'),
      '--seq-len',
      '64',
      '--no-fidelity',
    );
    expect(within.stderr).toBe('');
    const inspect = await cli('inspect', pkg);
    expect(inspect.stdout).toMatch(
      new RegExp(`^ops +\\d+ \\(${count} non-constant, budget 3,000; inspect --ane places them\\)`, 'm'),
    );
  }, 60_000);

  it("packed cls pooling picks each text's first token by a matrix product on the Neural Engine, not a gather", () => {
    const config = parseConfig({
      ...SYNTH_PRESETS.base,
      architectures: ['ModernBertForSequenceClassification'],
      classifier_pooling: 'cls',
      id2label: { 0: 'no', 1: 'yes' },
    });
    const g = convertGraph(config, { seqLen: 1024, pack: 8 });
    const p = predictPlacement(g, { sizes: 1024 });
    expect(p.ops.find((o) => o.name === 'pool_cls')).toMatchObject({ op: 'matmul', device: 'ane' });
    expect(p.boundaries.body).toBe(0);
    expect(p.islands.every((i) => i.region === 'head')).toBe(true);
  });
});
