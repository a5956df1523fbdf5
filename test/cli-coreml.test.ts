// convert, diff, outliers and inspect on packages, through the command line.

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import { withOutlier } from './helpers/outlier.js';

const ROOT = join(import.meta.dirname, '..');
const FX = join(import.meta.dirname, 'fixtures');
const MINI = join(ROOT, 'models', 'mini-trained');
const DOOR = 'She opened the [MASK] and walked into the room.';
const tmp = mkdtempSync(join(tmpdir(), 'mba-cli-coreml-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('convert', () => {
  const pkg = join(tmp, 'mini.mlpackage');

  it('writes a package, prints the fidelity report, and the package predicts like the checkpoint', async () => {
    const r = await cli('convert', MINI, '--out', pkg, '--seq-len', '32,64', '--tokenizer', '--json');
    expect(r.code, r.stderr).toBe(0);
    const report = json(r) as {
      out: string;
      variant: string;
      seqLens: number[];
      fidelity: { kl: number; top1: number; precision: string; tokens: number };
      seconds: Record<string, number>;
    };
    expect(report.variant).toBe('folded');
    expect(report.seqLens).toEqual([32, 64]);
    expect(report.fidelity.precision).toBe('fp16');
    expect(report.fidelity.kl).toBeLessThan(1e-4);
    expect(report.fidelity.top1).toBeGreaterThan(0.95);
    for (const k of ['read', 'transform', 'write', 'fidelity', 'total'])
      expect(report.seconds[k]).toBeGreaterThanOrEqual(0);
    expect(JSON.parse(readMLPackage(pkg).description.metadata.userDefined!.fidelity!).kl).toBeCloseTo(
      report.fidelity.kl,
      12,
    );

    const human = await cli(
      'convert',
      MINI,
      '--out',
      join(tmp, 'mini2.mlpackage'),
      '--seq-len',
      '32',
      '--rotation',
      'none',
    );
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/wrote .*mini2\.mlpackage: folded, fp16 weights, S = 32/);
    expect(human.stdout).toMatch(/time: read [\d.]+ s, transform [\d.]+ s, encode\+write [\d.]+ s/);
    expect(human.stdout).toMatch(
      /fidelity of the mlm output \(fp16 emulation vs float32, \d+ tokens of built-in sentences\): KL [\d.e-]+, top-1 [\d.]+%/,
    );

    const ours = json(await cli('predict', pkg, DOOR, '--json')) as { token_str: string; score: number }[];
    const ref = json(await cli('predict', DOOR, '--json')) as typeof ours;
    expect(ours[0]!.token_str).toBe(' door');
    expect(Math.abs(ours[0]!.score - ref[0]!.score)).toBeLessThan(2e-3);
    const fp16 = json(await cli('predict', pkg, DOOR, '--json', '--precision', 'fp16')) as typeof ours;
    expect(fp16[0]!.token_str).toBe(' door');
  });

  it('inspect shows the package interface and metadata', async () => {
    const r = await cli('inspect', pkg, '--json');
    expect(r.code, r.stderr).toBe(0);
    const info = json(r) as {
      kind: string;
      target: string;
      sequence_lengths: number[];
      non_constant_ops: number;
      op_budget: number;
      inputs: { name: string; enumerated_shapes?: number[][] }[];
      outputs: { name: string }[];
      metadata: Record<string, string>;
      ops: Record<string, number>;
      tokenizer: boolean;
    };
    expect(info.kind).toBe('package');
    expect(info.target).toBe('iOS17');
    expect(info.sequence_lengths).toEqual([32, 64]);
    expect(info.inputs.map((f) => f.name)).toEqual(['input_ids']);
    expect(info.inputs[0]!.enumerated_shapes).toEqual([
      [1, 32],
      [1, 64],
    ]);
    expect(info.outputs.map((f) => f.name)).toEqual(['logits']);
    expect(info.metadata.rotation).toBe('none (folded)');
    expect(info.metadata.norm).toBe('folded, l2-norm RMSNorm (overflow-safe)');
    expect(info.ops.conv).toBe(6 * 4 + 1 + 2 + 1); // per layer qkv, out, mlp in, mlp out; layer-0 residual; unrotate, head dense; decoder
    expect(info.tokenizer).toBe(true);
    const text = await cli('inspect', pkg);
    expect(text.stdout).toMatch(/input\s+input_ids int32 \[1, 32\] \| \[1, 64\]/);
    // The ops against the Neural Engine's op budget, as inspect --ane counts them.
    const ane = json(await cli('inspect', '--ane', '--json', pkg)) as {
      functions: { op_count: number; budget: number }[];
    };
    expect(info).toMatchObject({ non_constant_ops: ane.functions[0]!.op_count, op_budget: 3000 });
    expect(text.stdout).toMatch(
      new RegExp(
        `^ops +\\d+ \\(${ane.functions[0]!.op_count} non-constant, budget 3,000; inspect --ane places them\\): `,
        'm',
      ),
    );
  });

  it('verify on a package compares logits and the last hidden state', async () => {
    const golden = join(FX, 'tiny-mlm', 'golden.safetensors');
    const p = join(tmp, 'tiny.mlpackage');
    expect(
      (await cli('convert', join(FX, 'tiny-mlm'), '--out', p, '--seq-len', '128', '--weights', 'fp32', '--no-fidelity'))
        .code,
    ).toBe(0);
    const r = await cli('verify', p, '--golden', golden, '--json');
    expect(r.code, r.stdout).toBe(0);
    const rep = json(r) as { passed: boolean; cases: { logits: number; hidden_states: number }[] };
    expect(rep.passed).toBe(true);
    for (const c of rep.cases) expect(c.hidden_states).not.toBeNull();
  });

  it('bad input: existing output, a package as input, unknown rotation, too long a length, an unwritable folder', async () => {
    expectOneLineError(await cli('convert', MINI, '--out', pkg), /already exists/);
    expectOneLineError(await cli('convert', pkg, '--out', join(tmp, 'x.mlpackage')), /already a Core ML package/);
    expectOneLineError(await cli('convert', MINI, '--out', join(tmp, 'y.mlpackage'), '--rotation', 'spin'), /spin/);
    expectOneLineError(
      await cli('convert', MINI, '--out', join(tmp, 'z.mlpackage'), '--seq-len', '4096'),
      /max_position_embeddings 512/,
    );
    expectOneLineError(
      await cli('convert', MINI, '--out', join(tmp, 'no', 'such', 'dir.mlpackage'), '--no-fidelity'),
      /does not exist/,
    );
    expectOneLineError(
      await cli('convert', MINI, '--out', join(tmp, 'w.mlpackage'), '--no-fold', '--rotation', 'hadamard'),
      /--no-fold/,
    );
    for (const name of ['x', 'y', 'z', 'w']) expect(existsSync(join(tmp, `${name}.mlpackage`))).toBe(false);
  });

  it('--no-fold shows the float16 failure on a model with a massive outlier; folding (the default) fixes it, and so does Hadamard', async () => {
    // tiny-mlm with row 7 of layer 1's MLP output projection set to 2000: channel 7 of the residual stream
    // carries ~49,000 from layer 2 on (synth-base-massive's construction at toy size).
    const dir = await withOutlier(join(FX, 'tiny-mlm'), 'model.layers.1.mlp.Wo.weight', 7, 2000, tmp);
    type Report = { fidelity: { kl: number | null; top1: number; non_finite?: { first_layer: number } } };
    const plain = json(
      await cli('convert', dir, '--out', join(tmp, 'plain.mlpackage'), '--no-fold', '--json'),
    ) as Report;
    expect(plain.fidelity.top1).toBeLessThan(0.5);
    for (const rotation of ['none', 'hadamard']) {
      const fixed = json(
        await cli('convert', dir, '--out', join(tmp, `fixed-${rotation}.mlpackage`), '--rotation', rotation, '--json'),
      ) as Report;
      expect(fixed.fidelity.top1).toBeGreaterThan(0.95);
      expect(fixed.fidelity.kl!).toBeLessThan(plain.fidelity.kl! / 100);
    }
  });

  it('a conversion whose float16 emulation gives NaN or infinity writes nothing: one error line naming the layer and op, exit 1', async () => {
    // 3000 puts ~74,000 into the residual stream: past float16's 65504 unless rotated.
    const dir = await withOutlier(join(FX, 'tiny-mlm'), 'model.layers.1.mlp.Wo.weight', 7, 3000, tmp);
    for (const extra of [[], ['--json']]) {
      const out = join(tmp, `inf${extra.length}.mlpackage`);
      const r = await cli('convert', dir, '--out', out, '--no-fold', ...extra);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(
        /^error: the converted model gives NaN or infinity in fp16 emulation on \d+ of \d+ tokens; the first appears after layer 2, at op \w+ "[^"]+" .*nothing was written$/m,
      );
      expect(existsSync(out)).toBe(false);
    }
  });
});

describe('diff', () => {
  it('compares a checkpoint with its package in float16 emulation (JSON shape, agreement)', async () => {
    const pkg = join(tmp, 'diff.mlpackage');
    expect((await cli('convert', MINI, '--out', pkg, '--seq-len', '64', '--no-fidelity')).code).toBe(0);
    const r = await cli('diff', MINI, pkg, '--precision-b', 'fp16', '--json');
    expect(r.code, r.stderr).toBe(0);
    const d = json(r) as { kl: number; top1: number; top5: number; max_abs_diff: number; tokens: number };
    expect(Object.keys(d)).toEqual(expect.arrayContaining(['kl', 'top1', 'top5', 'max_abs_diff', 'tokens']));
    expect(d.kl).toBeGreaterThan(0);
    expect(d.kl).toBeLessThan(1e-4);
    expect(d.top1).toBeGreaterThan(0.95);
    expect(d.tokens).toBeGreaterThan(20);
    const same = json(await cli('diff', MINI, MINI, DOOR, '--json')) as typeof d;
    expect(same).toMatchObject({ kl: 0, top1: 1, top5: 1, max_abs_diff: 0, tokens: 1 });
  });

  it('models without a tokenizer take --random or --golden', async () => {
    const tiny = join(FX, 'tiny-mlm');
    const synthDir = join(tmp, 'synth-tiny');
    writeFileSync(join(tmp, 'tiny-config.json'), readFileSync(join(tiny, 'config.v4.json')));
    expect((await cli('synth', join(tmp, 'tiny-config.json'), '--out', synthDir)).code).toBe(0);
    const r = json(await cli('diff', synthDir, synthDir, '--random', '40', '--precision-b', 'fp16', '--json')) as {
      tokens: number;
      kl: number;
    };
    expect(r.tokens).toBe(42); // [CLS] + 40 random ids + [SEP]
    expect(r.kl).toBeGreaterThan(0);
    const g = json(await cli('diff', tiny, tiny, '--golden', join(tiny, 'golden.safetensors'), '--json')) as {
      tokens: number;
    };
    expect(g.tokens).toBeGreaterThan(100);
    expectOneLineError(await cli('diff', synthDir, synthDir), /no tokenizer: give --golden FILE or --random N/);
  });
});

describe('outliers', () => {
  it('finds the planted outlier channel, and rotation shrinks it; --plot writes an SVG chart', async () => {
    const dir = await withOutlier(join(FX, 'tiny-mlm'), 'model.layers.1.mlp.Wo.weight', 7, 3000, tmp);
    const svg = join(tmp, 'o.svg');
    const r = await cli('outliers', dir, 'The sky is [MASK].', '--plot', svg, '--json');
    expect(r.code, r.stderr).toBe(0);
    const out = json(r) as { variants: Record<string, { layer: number; max: number; channel: number }[]> };
    const plain = out.variants.layernorm!;
    expect(plain.length).toBe(5);
    expect(plain[2]!.channel).toBe(7); // row 7 of layer 1's output projection writes channel 7
    expect(out.variants.hadamard![2]!.max).toBeLessThan(plain[2]!.max / 3);
    const chart = readFileSync(svg, 'utf8');
    expect(chart).toMatch(/^<svg/);
    expect(chart).toMatch(/log scale/);
    for (const name of ['layernorm', 'folded', 'hadamard']) expect(chart).toContain(`>${name}</text>`);
    // On onnxruntime when asked: the same layers, channels and tokens, the maxima to float32's rounding.
    const ort = json(await cli('outliers', dir, 'The sky is [MASK].', '--runtime', 'ort', '--json')) as typeof out;
    for (const [name, layers] of Object.entries(out.variants)) {
      const other = ort.variants[name]!;
      expect(other.map((l) => [l.layer, l.channel])).toEqual(layers.map((l) => [l.layer, l.channel]));
      other.forEach((l, k) => expect(Math.abs(l.max - layers[k]!.max)).toBeLessThan(1e-4 * layers[k]!.max));
    }
  });
});
