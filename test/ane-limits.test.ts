// The Neural Engine's tensor limits: the static lint, the decoder split for vocabularies above 65,536, the
// lint in convert and `inspect --lint`, and the bound on --mask-input.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.js';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { PackageRunner } from '../src/run/package-runner.js';
import { Engine } from '../src/run/engine.js';
import { aneShapeProblems, lintAneLimits } from '../src/graph/ane-limits.js';
import { GraphBuilder, i32 } from '../src/graph/builder.js';
import { buildModel } from '../src/model/model.js';
import { MAX_CHANNELS } from '../src/model/decoder.js';
import { SYNTH_PRESETS } from '../src/synth/presets.js';
import { SynthWeights } from '../src/synth/synth.js';
import { cli, expectOneLineError } from './helpers/cli.js';
import { cleanupTempDirs, FX, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const tinyLong = (
  JSON.parse(readFileSync(join(FX, 'synth-tiny-long', 'golden.json'), 'utf8')) as { config: Record<string, unknown> }
).config;

describe('ANE limits lint', () => {
  it('maps rank-r shapes onto the last r of N, D, C, H, W and names each broken axis', () => {
    expect(aneShapeProblems([1, 65536, 1, 16384])).toEqual([]);
    expect(aneShapeProblems([1, 70000, 1, 8])).toEqual(['C = 70000 > 65536']);
    expect(aneShapeProblems([70000, 64, 1, 1])).toEqual(['N = 70000 > 65536']);
    expect(aneShapeProblems([1, 20000])).toEqual(['W = 20000 > 16384']);
    expect(aneShapeProblems([1, 1, 1, 1, 1, 1])).toEqual(['rank 6 > 5']);
  });

  it('lists each op with the tensor and shape that break a limit, symbolic lengths at their largest', () => {
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [1, 8, 1, 'S']);
    g.output(g.op('reshape', { x, shape: i32([1, 8, 1, 1, 1, -1]) }, 'six'), 'y');
    const issues = lintAneLimits(g.graph, { S: 20000 });
    expect(issues.map((i) => `${i.op}/${i.tensor}: ${i.problem}`)).toEqual([
      'six/x: W = 20000 > 16384',
      'six/output: rank 6 > 5',
    ]);
    expect(lintAneLimits(g.graph, { S: 100 }).map((i) => i.problem)).toEqual(['rank 6 > 5']);
  });
});

describe('ModernBERT-base within the limits at every length', () => {
  const base = parseConfig(SYNTH_PRESETS.base);
  const source = { config: base, weights: new SynthWeights(base) };
  it.each([
    ['8,192 tokens', { seqLen: 8192, maskFrom: 'ids' }, 8192],
    ['enumerated 512, 2,048, 8,192', { seqLen: [512, 2048, 8192], maskFrom: 'ids' }, 8192],
    ['--mask-input at 2,048', { seqLen: 2048, maskFrom: 'input' }, 2048],
    ['embedding head at 8,192', { seqLen: 8192, maskFrom: 'ids', head: 'embedding' }, 8192],
  ] as const)('%s', (_, o, S) => {
    expect(
      lintAneLimits(buildModel(source, { dtype: 'fp16', ...o, seqLen: o.seqLen as number | number[] }), { S }),
    ).toEqual([]);
  });
});

describe('a model beyond the limits', () => {
  it('convert warns about each op and inspect --lint lists them with their shapes, exit 1', async () => {
    // An MLP of 2 x 33,000 channels: Wi's weight and output break the 65,536 limit of N and C.
    const tmp = tempDir('mbane-lint-');
    writeFileSync(
      join(tmp, 'config.json'),
      JSON.stringify({ ...tinyLong, intermediate_size: 33000, num_hidden_layers: 1 }),
    );
    expect((await cli('synth', join(tmp, 'config.json'), '--out', join(tmp, 'ckpt'))).code).toBe(0);
    const pkg = join(tmp, 'wide.mlpackage');
    const conv = await cli('convert', join(tmp, 'ckpt'), '--out', pkg, '--seq-len', '64', '--no-fidelity');
    expect(conv.code).toBe(0);
    expect(conv.stderr).toMatch(
      /warning: beyond the Neural Engine's limits .*conv "layers_0_mlp_in" input weight \[66000, 64, 1, 1\]: N = 66000 > 65536/,
    );
    const lint = await cli('inspect', '--lint', pkg);
    expect(lint.code).toBe(1);
    expect(lint.stdout).toMatch(/^conv "layers_0_mlp_in" output \[1, 66000, 1, 64\]: C = 66000 > 65536$/m);
    expect(lint.stdout).toMatch(/tensors beyond the Neural Engine's limits/);
  }, 60_000);
});

describe('a 70,000-token vocabulary (above the ANE channel limit)', () => {
  const config = parseConfig({ ...tinyLong, vocab_size: 70000 }, 'vocab70000');
  const weights = new SynthWeights(config);

  it('splits the decoder into channel chunks, so no tensor breaks a limit, and the logits are unchanged', async () => {
    const g = buildModel({ config, weights }, { seqLen: 300, maskFrom: 'ids', positions: [0, 7] });
    expect(lintAneLimits(g)).toEqual([]);
    const parts = g.ops.filter((o) => o.op === 'conv' && o.name.startsWith('decoder_'));
    expect(parts.map((o) => o.outputs[0]!.type.shape)).toEqual([
      [1, 35000, 1, 2],
      [1, 35000, 1, 2],
    ]);
    expect(35000).toBeLessThanOrEqual(MAX_CHANNELS);

    // Logit v = decoder row v . head_hidden + bias v, at rows on both sides of the split.
    const engine = new Engine({ config, weights });
    const ids = Array.from({ length: 300 }, (_, i) => (i * 7919) % 69000);
    const res = await engine.forward({ ids }, { positions: [0, 7], taps: ['head_hidden'] });
    const logits = res.outputs.get('logits')!;
    expect(logits.shape).toEqual([1, 70000, 1, 2]);
    const hid = res.taps.get('head_hidden')!.data;
    const W = weights.get('decoder.weight').data;
    const b = weights.get('decoder.bias').data;
    const C = config.hidden;
    for (const v of [0, 34999, 35000, 69999]) {
      for (let s = 0; s < 2; s++) {
        let want = b[v]!;
        for (let c = 0; c < C; c++) want += W[v * C + c]! * hid[c * 2 + s]!;
        expect(logits.data[v * 2 + s]!, `logit ${v} at column ${s}`).toBeCloseTo(want, 4);
      }
    }
  }, 60_000);

  it('converts to a package that inspect --lint passes; --mask-input above its bound is a one-line error', async () => {
    const tmp = tempDir('mbane-ane-');
    writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...tinyLong, vocab_size: 70000 }));
    expect((await cli('synth', join(tmp, 'config.json'), '--out', join(tmp, 'ckpt'))).code).toBe(0);
    const pkg = join(tmp, 'v70k.mlpackage');
    const conv = await cli('convert', join(tmp, 'ckpt'), '--out', pkg, '--seq-len', '256', '--no-fidelity');
    expect(conv.code).toBe(0);
    expect(conv.stderr).not.toMatch(/warning/);
    const lint = await cli('inspect', '--lint', pkg);
    expect(lint.code).toBe(0);
    expect(lint.stdout).toMatch(/every tensor is within the Neural Engine's limits/);
    // The package's (1, 35000, 2, S) logits come back as (1, 70000, 1, S), as the checkpoint gives them.
    const ids = Array.from({ length: 40 }, (_, i) => (i * 7919) % 69000);
    const ours = (await new PackageRunner(readMLPackage(pkg), pkg).forward({ ids }, { positions: [3] })).outputs.get(
      'logits',
    )!;
    const ref = (
      await new Engine({
        config: parseConfig({ ...tinyLong, vocab_size: 70000 }),
        weights: new SynthWeights(parseConfig({ ...tinyLong, vocab_size: 70000 })),
      }).forward({ ids }, { positions: [3] })
    ).outputs.get('logits')!;
    expect(ours.shape).toEqual([1, 70000, 1, 1]);
    let worst = 0;
    for (let v = 0; v < 70000; v++) worst = Math.max(worst, Math.abs(ours.data[v]! - ref.data[v]!));
    expect(worst).toBeLessThan(1e-2);
    expectOneLineError(
      await cli(
        'convert',
        join(tmp, 'ckpt'),
        '--out',
        join(tmp, 'm.mlpackage'),
        '--seq-len',
        '4096',
        '--mask-input',
        '--no-fidelity',
      ),
      /--mask-input .* limited to 2048 tokens: leave it out \(the default input_ids input/,
    );
    expectOneLineError(
      await cli(
        'convert',
        join(tmp, 'ckpt'),
        '--out',
        join(tmp, 'c.mlpackage'),
        '--seq-len',
        '256',
        '--attention-chunk',
        '20000',
        '--no-fidelity',
      ),
      /attention chunk 20000 does not fit/,
    );
    expectOneLineError(
      await cli('convert', join(tmp, 'ckpt'), '--out', join(tmp, 'l.mlpackage'), '--seq-len', '9000', '--no-fidelity'),
      /max_position_embeddings 8192/,
    );
  }, 120_000);
});
