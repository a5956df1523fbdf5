// Body and heads apart (convert --split, --head-package), multifunction packages (--functions, --add-head)
// and shape buckets (--buckets): each against the whole single-head package, which the rest of the suite
// checks against the reference.

import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { encodeModel, decodeModel } from '../src/coreml/schema.js';
import { openModel } from '../src/run/load.js';
import { BucketRunner } from '../src/run/package-runner.js';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import {
  cleanupTempDirs,
  FX,
  ROOT,
  readFixtureJson,
  readTensors,
  tempDir,
  writeCheckpoint,
} from './helpers/fixtures.js';

const TINY = join(FX, 'tiny-mlm');
const dir = tempDir('mbane-heads-');
afterAll(cleanupTempDirs);

const converted = new Map<string, string>();

/** Converts tiny-mlm (no fidelity report: it is not what these tests check) with extra flags, once per name and flags; expects success. */
async function convert(out: string, ...flags: string[]): Promise<string> {
  const key = [out, ...flags].join(' ');
  if (converted.has(key)) return converted.get(key)!;
  const r = await cli('convert', TINY, '--out', join(dir, out), '--seq-len', '16', '--no-fidelity', ...flags);
  expect(r.code, r.stderr).toBe(0);
  converted.set(key, join(dir, out));
  return join(dir, out);
}

const IDS = [1001, 17, 250, 3, 999, 42, 1002]; // [CLS] ... [SEP], 7 tokens
const size = (pkg: string, file: string): number => statSync(join(pkg, 'Data', 'com.apple.CoreML', file)).size;
const maxDiff = (a: Float32Array, b: Float32Array): number => {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
};

/** The model's one output on IDS, every position. */
async function run(path: string, o: { headPackage?: string; function?: string } = {}): Promise<Float32Array> {
  const m = await openModel(path, o);
  try {
    const r = await m.runner.forward({ ids: IDS }, { positions: IDS.map((_, i) => i) });
    return Float32Array.from([...r.outputs.values()][0]!.data);
  } finally {
    m.close();
  }
}

/** A sequence classifier on tiny-mlm's body: the same `model.` tensors, a classifier of its own. */
async function classifier(
  edit: (t: Map<string, { shape: number[]; data: Float32Array }>) => void = () => {},
): Promise<string> {
  const tensors = new Map([...readTensors(join(TINY, 'model.safetensors'))].filter(([n]) => !n.startsWith('decoder.')));
  const C = 64;
  tensors.set('classifier.weight', {
    shape: [3, C],
    data: Float32Array.from({ length: 3 * C }, (_, i) => Math.sin(i * 0.37) * 0.2),
  });
  tensors.set('classifier.bias', { shape: [3], data: Float32Array.from([0.1, -0.2, 0.05]) });
  edit(tensors);
  const config = {
    ...readFixtureJson('tiny-mlm'),
    architectures: ['ModernBertForSequenceClassification'],
    classifier_pooling: 'mean',
    id2label: { 0: 'neg', 1: 'neutral', 2: 'pos' },
    label2id: { neg: 0, neutral: 1, pos: 2 },
  };
  return writeCheckpoint(tempDir('mbane-cls-'), { config, tensors, tokenizerFrom: TINY });
}

describe('convert --split: a body package and a package per head', () => {
  it('body + head computes what the whole package does, for a per-token and a pooled head', async () => {
    const body = await convert('split.mlpackage', '--split', 'mlm,embedding', '--weights', 'fp32');
    const whole = await convert('whole-mlm.mlpackage', '--weights', 'fp32');
    const wholeEmb = await convert('whole-emb.mlpackage', '--weights', 'fp32', '--head', 'embedding');
    expect(readMLPackage(body).graph.outputs).toEqual(['hidden_states']);
    expect(readMLPackage(join(dir, 'split-mlm.mlpackage')).graph.inputs.map((v) => v.name)).toEqual(['hidden_states']);
    // The pooled head reads which tokens are padding from the ids.
    expect(readMLPackage(join(dir, 'split-embedding.mlpackage')).graph.inputs.map((v) => v.name)).toEqual([
      'hidden_states',
      'input_ids',
    ]);
    expect(maxDiff(await run(body, { headPackage: join(dir, 'split-mlm.mlpackage') }), await run(whole))).toBeLessThan(
      1e-4,
    );
    expect(
      maxDiff(await run(body, { headPackage: join(dir, 'split-embedding.mlpackage') }), await run(wholeEmb)),
    ).toBeLessThan(1e-4);
    const d = await cli(
      'diff',
      whole,
      body,
      '--head-package-b',
      join(dir, 'split-mlm.mlpackage'),
      '--random',
      '2',
      '--json',
    );
    expect(d.code, d.stderr).toBe(0);
    expect((json(d) as { max_abs_diff: number }).max_abs_diff).toBeLessThan(1e-4);
  });

  it('leaves no body behind when a head cannot be written', async () => {
    // A pooled head at several lengths has two enumerated inputs (hidden_states, input_ids): iOS 18 only.
    const r = await cli(
      'convert',
      TINY,
      '--out',
      join(dir, 'half.mlpackage'),
      '--seq-len',
      '8,16',
      '--split',
      'embedding',
      '--no-fidelity',
    );
    expectOneLineError(
      r,
      /inputs hidden_states, input_ids all have enumerated shapes; before iOS 18 only one input may/,
    );
    expect(existsSync(join(dir, 'half.mlpackage'))).toBe(false);
  });

  it('refuses a head whose body differs, and a head package given as the model', async () => {
    await convert('a.mlpackage', '--split');
    const other = await convert('b.mlpackage', '--split', '--rotation', 'hadamard');
    expectOneLineError(
      await cli('predict', other, 'a [MASK] b', '--head-package', join(dir, 'a-mlm.mlpackage'), '--tokenizer', TINY),
      /head-package .*a-mlm\.mlpackage belongs to another body than .*b\.mlpackage/,
    );
    expectOneLineError(
      await cli(
        'verify',
        other,
        '--golden',
        join(TINY, 'golden.safetensors'),
        '--head-package',
        join(dir, 'a-mlm.mlpackage'),
      ),
      /belongs to another body/,
    );
    expectOneLineError(
      await cli('predict', join(dir, 'a-mlm.mlpackage'), 'a [MASK] b', '--tokenizer', TINY),
      /is a head package .* give its body package as the model and this one as --head-package/,
    );
    expectOneLineError(
      await cli('predict', TINY, 'a [MASK] b', '--head-package', join(dir, 'a-mlm.mlpackage')),
      /--head-package runs a head on a body package/,
    );
    // The hash covers the weights: one changed byte in the body's weight.bin is another body.
    const weights = join(dir, 'a.mlpackage', 'Data', 'com.apple.CoreML', 'weights', 'weight.bin');
    const bytes = readFileSync(weights);
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(weights, bytes);
    expectOneLineError(
      await cli(
        'predict',
        join(dir, 'a.mlpackage'),
        'a [MASK] b',
        '--head-package',
        join(dir, 'a-mlm.mlpackage'),
        '--tokenizer',
        TINY,
      ),
      /belongs to another body/,
    );
  });

  it('verify runs a body with its head', async () => {
    const body = await convert('v.mlpackage', '--split', '--weights', 'fp32', '--no-fold', '--seq-len', '128');
    const r = await cli(
      'verify',
      body,
      '--golden',
      join(TINY, 'golden.safetensors'),
      '--head-package',
      join(dir, 'v-mlm.mlpackage'),
      '--atol',
      '1e-3',
      '--json',
    );
    expect(r.code, r.stderr).toBe(0);
    expect((json(r) as { passed: boolean }).passed).toBe(true);
  });
});

describe('convert --functions: one package, a function per head, the body stored once', () => {
  it('runs each function as its single-head package does, lists them, and stays the size of one body', async () => {
    const multi = await convert('multi.mlpackage', '--functions', 'mlm,embedding,none', '--target', 'iOS18');
    const single = await convert('single.mlpackage', '--target', 'iOS18');
    const emb = await convert('single-emb.mlpackage', '--target', 'iOS18', '--head', 'embedding');
    const pkg = readMLPackage(multi);
    expect(pkg.functions).toEqual(['mlm', 'embedding', 'none']);
    expect(pkg.specificationVersion).toBe(9);
    // A FunctionDescription per function and no top-level inputs or outputs, as coremltools writes them.
    const model = decodeModel(readFileSync(join(multi, 'Data', 'com.apple.CoreML', 'model.mlmodel')), 'model');
    expect(model.description?.defaultFunctionName).toBe('mlm');
    expect(model.description?.functions?.map((f) => f.name)).toEqual(['mlm', 'embedding', 'none']);
    expect(model.description?.input ?? []).toEqual([]);
    expect(model.description?.output ?? []).toEqual([]);
    expect(encodeModel(model).length).toBeGreaterThan(0);
    expect(maxDiff(await run(multi), await run(single))).toBe(0);
    expect(maxDiff(await run(multi, { function: 'embedding' }), await run(emb))).toBe(0);
    // The body's weights are written once: no more weight bytes than the one-head package.
    expect(size(multi, 'weights/weight.bin')).toBeLessThanOrEqual(size(single, 'weights/weight.bin'));
    const ins = await cli('inspect', multi, '--json');
    expect(ins.code, ins.stderr).toBe(0);
    expect(
      (json(ins) as { functions: { name: string; head: string }[] }).functions.map((f) => [f.name, f.head]),
    ).toEqual([
      ['mlm', 'mlm'],
      ['embedding', 'embedding'],
      ['none', 'none'],
    ]);
    const p = await cli(
      'predict',
      multi,
      'hello [MASK] there',
      '--function',
      'embedding',
      '--tokenizer',
      TINY,
      '--json',
    );
    expect(p.code, p.stderr).toBe(0);
    expect(json(p) as number[]).toHaveLength(64);
  });

  it('three heads cost at most 5% over the one-head package (mini-trained: its program no longer outweighs its weights)', async () => {
    const mini = join(ROOT, 'models', 'mini-trained');
    for (const [out, flags] of [
      ['mini-multi', ['--functions', 'mlm,embedding,none']],
      ['mini-single', []],
    ] as const) {
      const r = await cli(
        'convert',
        mini,
        '--out',
        join(dir, `${out}.mlpackage`),
        '--seq-len',
        '16',
        '--no-fidelity',
        '--target',
        'iOS18',
        ...flags,
      );
      expect(r.code, r.stderr).toBe(0);
    }
    const total = (p: string) => size(join(dir, p), 'weights/weight.bin') + size(join(dir, p), 'model.mlmodel');
    expect(total('mini-multi.mlpackage') / total('mini-single.mlpackage')).toBeLessThanOrEqual(1.05);
  });

  it('refuses a function that does not exist, and targets before iOS 18', async () => {
    const multi = join(dir, 'multi.mlpackage');
    expectOneLineError(
      await cli('predict', multi, 'a [MASK]', '--function', 'tokcls', '--tokenizer', TINY),
      /has no function "tokcls"; its functions: mlm, embedding, none/,
    );
    const r = await cli(
      'convert',
      TINY,
      '--out',
      join(dir, 'old.mlpackage'),
      '--functions',
      'mlm,embedding',
      '--target',
      'iOS17',
    );
    expectOneLineError(r, /multifunction package, which needs specification version 9: give --target iOS18 or macOS15/);
    expectOneLineError(
      await cli('convert', TINY, '--out', join(dir, 'x.mlpackage'), '--functions', 'mlm,bogus'),
      /"bogus" is not a head/,
    );
    expectOneLineError(
      await cli(
        'convert',
        TINY,
        '--out',
        join(dir, 'x.mlpackage'),
        '--functions',
        'mlm,seqcls',
        '--target',
        'iOS18',
        '--no-fidelity',
      ),
      /has no seqcls head \(no classifier\.weight; its head is mlm\).*--add-head/,
    );
  });
});

describe('convert --add-head: a head from a checkpoint with the same body', () => {
  it('adds a classifier trained on the same body as a function of its own', async () => {
    const cls = await classifier();
    const multi = await convert(
      'added.mlpackage',
      '--functions',
      'mlm',
      '--add-head',
      `sentiment=${cls}`,
      '--target',
      'iOS18',
    );
    expect(readMLPackage(multi).functions).toEqual(['mlm', 'sentiment']);
    const alone = join(dir, 'cls-alone.mlpackage');
    const r = await cli('convert', cls, '--out', alone, '--seq-len', '16', '--no-fidelity', '--target', 'iOS18');
    expect(r.code, r.stderr).toBe(0);
    expect(maxDiff(await run(multi, { function: 'sentiment' }), await run(alone))).toBe(0);
    const p = await cli('predict', multi, 'what a day', '--function', 'sentiment', '--tokenizer', TINY, '--json');
    expect(p.code, p.stderr).toBe(0);
    expect((json(p) as { label: string }[]).map((l) => l.label).sort()).toEqual(['neg', 'neutral', 'pos']);
  });

  it('refuses a checkpoint whose body differs, naming the first differing tensor', async () => {
    const cls = await classifier((t) => {
      const w = t.get('model.layers.1.mlp.Wo.weight')!;
      w.data[5] = w.data[5]! + 1e-6;
    });
    const r = await cli(
      'convert',
      TINY,
      '--out',
      join(dir, 'bad.mlpackage'),
      '--seq-len',
      '16',
      '--no-fidelity',
      '--target',
      'iOS18',
      '--add-head',
      cls,
    );
    expectOneLineError(
      r,
      /--add-head .*: its body differs: tensor model\.layers\.1\.mlp\.Wo\.weight is not bit-identical/,
    );
  });
});

describe('convert --buckets: one function per length', () => {
  it('writes a static function per length, and predict runs the smallest that fits', async () => {
    const r = await cli(
      'convert',
      TINY,
      '--out',
      join(dir, 'buckets.mlpackage'),
      '--seq-len',
      '8,16,32',
      '--buckets',
      '--no-fidelity',
      '--target',
      'iOS18',
    );
    expect(r.code, r.stderr).toBe(0);
    const path = join(dir, 'buckets.mlpackage');
    const pkg = readMLPackage(path, 's16');
    expect(pkg.functions).toEqual(['s8', 's16', 's32']);
    expect(pkg.graph.inputs[0]!.type.shape).toEqual([1, 16]);
    const m = await openModel(path);
    expect(m.runner).toBeInstanceOf(BucketRunner);
    const b = m.runner as BucketRunner;
    expect([b.bucketFor(7), b.bucketFor(8), b.bucketFor(9), b.bucketFor(32)]).toEqual(['s8', 's8', 's16', 's32']);
    expect(() => b.bucketFor(33)).toThrow(/takes at most 32 \(buckets 8,16,32\)/);
    const single = await convert('single.mlpackage', '--target', 'iOS18');
    expect(maxDiff(await run(path), await run(single))).toBeLessThan(1e-3);
    expectOneLineError(
      await cli(
        'convert',
        TINY,
        '--out',
        join(dir, 'b1.mlpackage'),
        '--seq-len',
        '16',
        '--buckets',
        '--target',
        'iOS18',
      ),
      /--buckets needs several lengths/,
    );
  });
});
