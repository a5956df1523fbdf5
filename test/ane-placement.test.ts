// Predicted Neural Engine placement (src/ane/): the rules as data and their corrections, each placement rule
// on a small graph, the islands and boundaries it gives, the cost of ops, the time model's calibration, and
// the reference project's own packages, where the prediction must match what Apple reports for its
// DistilBERT: everything on the Neural Engine but the embedding lookup and its input casts.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GraphBuilder, i32, str } from '../src/graph/builder.js';
import { literal, type Graph, type Op } from '../src/ir/graph.js';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { predictPlacement } from '../src/ane/placement.js';
import { predictPackage } from '../src/ane/predict-package.js';
import { applyRuleOverrides, DEFAULT_RULES, defaultRules, readRulesFile, RULE_IDS } from '../src/ane/rules.js';
import { CALIBRATION, CHIPS, estimateTime } from '../src/ane/estimate.js';
import { convertLines, summaryLine } from '../src/ane/format.js';
import { opCost } from '../src/ane/cost.js';
import { parseConfig } from '../src/model/config.js';
import { buildModel } from '../src/model/model.js';
import { SYNTH_PRESETS } from '../src/synth/presets.js';
import { SynthWeights } from '../src/synth/synth.js';
import { ModernBertError } from '../src/errors.js';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import { cleanupTempDirs, FX, ROOT, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const REFERENCE = ['tiny-mlm-S32-norot', 'tiny-mlm-S32-rot', 'mini-trained-S64-rot'].map((n) =>
  join(FX, 'coreml-reference', n),
);

describe('the rules table', () => {
  it('has a rule for every row of the published checklist, each with a source and a confidence label', () => {
    expect(new Set(DEFAULT_RULES.map((r) => r.row).filter((r) => r > 0))).toEqual(
      new Set(Array.from({ length: 17 }, (_, i) => i + 1)),
    );
    expect(DEFAULT_RULES.map((r) => r.id)).toEqual([...RULE_IDS]);
    for (const r of DEFAULT_RULES) {
      expect(r.source.length, r.id).toBeGreaterThan(10);
      expect(['A', 'C', 'P', 'G'], r.id).toContain(r.confidence);
    }
    // Placement rules come first and name a device; the rest only warn or note.
    const firstWarnOnly = DEFAULT_RULES.findIndex((r) => r.device === null);
    expect(DEFAULT_RULES.slice(0, firstWarnOnly).every((r) => r.device !== null)).toBe(true);
    expect(DEFAULT_RULES.slice(firstWarnOnly).every((r) => r.device === null)).toBe(true);
    expect(defaultRules().get('op-count')!.threshold).toBe(3000);
  });

  it('is the table docs/ANE.md shows: each rule with its row, device, label and whether it warns', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'ANE.md'), 'utf8');
    const names = { ane: 'Neural Engine', cpu: 'CPU', 'gpu-or-cpu': 'GPU or CPU' };
    for (const r of DEFAULT_RULES) {
      const cells = r.device
        ? [r.row, names[r.device], `[${r.confidence}]`, r.warn ? 'yes' : 'no']
        : [r.row, `[${r.confidence}]`, r.warn ? 'yes' : 'no'];
      expect(doc, r.id).toContain(`| \`${r.id}\` | ${cells.join(' | ')} |`);
    }
  });

  it('takes corrections from a rules file, and refuses what it does not know in one line', () => {
    const dir = tempDir('mbane-rules-');
    const file = join(dir, 'rules.json');
    writeFileSync(
      file,
      JSON.stringify({
        rules: {
          gather: { device: 'gpu-or-cpu' },
          'op-count': { threshold: 100, warn: false },
          'small-graph': { enabled: false },
        },
      }),
    );
    const rules = readRulesFile(file);
    expect(rules.get('gather')).toMatchObject({
      device: 'gpu-or-cpu',
      confidence: 'M',
      source: `overridden in ${file}`,
    });
    expect(rules.get('op-count')).toMatchObject({ threshold: 100, warn: false });
    expect(rules.get('small-graph')!.enabled).toBe(false);
    expect(defaultRules().get('gather')!.device).toBe('cpu'); // the defaults are untouched
    const bad = (raw: unknown, pattern: RegExp) => {
      let err: unknown;
      try {
        applyRuleOverrides(raw, 'r.json');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ModernBertError);
      expect((err as Error).message).toMatch(pattern);
      expect((err as Error).message).not.toMatch(/\n/);
    };
    bad([], /a rules file is \{"rules"/);
    bad({ rules: {}, extra: 1 }, /unknown key "extra"/);
    bad({ rules: { gathr: { device: 'cpu' } } }, /unknown rule "gathr"; the rules: blocklist, /);
    bad({ rules: { gather: { devise: 'cpu' } } }, /field "devise" is unknown/);
    bad({ rules: { gather: { device: 'npu' } } }, /must be one of ane, cpu, gpu-or-cpu/);
    bad({ rules: { 'op-count': { device: 'cpu' } } }, /only warns; it places no op/);
    bad({ rules: { gather: { threshold: 3 } } }, /has no threshold/);
    bad({ rules: { 'op-count': { threshold: -1 } } }, /a number >= 0/);
    bad({ rules: { default: { enabled: false } } }, /cannot be switched off/);
  });
});

describe("the reference project's packages", () => {
  for (const dir of REFERENCE) {
    it(`${dir.split('/').at(-1)}: everything on the Neural Engine but the embedding lookup and its input casts`, () => {
      const pkg = join(dir, 'model.mlpackage');
      const [f] = predictPackage(pkg).functions;
      const p = f!.placement;
      // As many ops as coremltools prints (every op but the consts).
      const printed = readFileSync(join(dir, 'program.mil.txt'), 'utf8')
        .split('\n')
        .filter((l) => / = (?!const\()\w+\(/.test(l)).length;
      expect(p.opCount).toBe(printed);
      // The ops off the Neural Engine: the gather of the embedding table and the ops computing its indices
      // from input_ids (casts, index wrapping), found here from the program itself.
      const g = readMLPackage(pkg).graph;
      const gather = g.ops.find((op) => op.op === 'gather')!;
      const lookup = ancestors(g, gather);
      const off = p.ops.filter((o) => o.device !== 'ane');
      expect(off.map((o) => o.name).sort()).toEqual([...lookup].sort());
      expect(off.every((o) => o.op === 'cast' || o.op === 'gather' || o.rule === 'int-bool')).toBe(true);
      expect(off.filter((o) => o.op === 'gather')).toHaveLength(1);
      expect(p.devices['gpu-or-cpu']).toBe(0);
      expect(p.islands.map((i) => i.region)).toEqual(['head']);
      expect(p.boundaries).toEqual({ head: 1, body: 0, tail: 0 });
      expect(p.totals.aneFlops / p.totals.flops).toBeGreaterThan(0.9999); // the index arithmetic counts a few hundred
      expect(f!.time.partitions).toBe(1);
      expect(p.findings.filter((x) => x.warn)).toEqual([]);
      expect(summaryLine(f!)).toMatch(/off it: 7 at the head, 0 inside the body, 0 at the tail/);
    });
  }

  it('inspect --ane prints the same, and --json every op with its rule and confidence', async () => {
    const pkg = join(REFERENCE[2]!, 'model.mlpackage');
    const text = await cli('inspect', '--ane', pkg);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^prediction +from public rules .*not a measurement/m);
    expect(text.stdout).toMatch(/^ops +465 non-constant \(budget 3,000\): Neural Engine 458, CPU 7, GPU or CPU 0/m);
    expect(text.stdout).toMatch(/^boundaries +1 at the head, 0 inside the body, 0 at the tail/m);
    expect(text.stdout).toMatch(/^placed by +default \[A\] -> Neural Engine: 458 ops/m);
    expect(text.stdout).toMatch(/#\d+ gather "x_3_cast_fp16_cast_int16_cast_int16": cpu, rule gather, head/);
    expect(text.stdout).toMatch(/^time \(model\) +M1 [\d.]+ ms/m);
    const j = json(await cli('inspect', '--ane', '--json', pkg)) as {
      functions: {
        op_count: number;
        ops: { device: string; rule: string; confidence: string; region?: string }[];
        rules: { id: string; source: string }[];
      }[];
    };
    const f = j.functions[0]!;
    expect(f.ops).toHaveLength(465);
    expect(f.ops.filter((o) => o.device !== 'ane').every((o) => o.region === 'head' && o.confidence === 'A')).toBe(
      true,
    );
    expect(f.rules.find((r) => r.id === 'gather')!.source).toMatch(/ml-ane-transformers/);
  });

  it('a rules file moves the lookup; a bad one, a checkpoint, or --ane-rules alone is a one-line error', async () => {
    const dir = tempDir('mbane-rules-cli-');
    const rules = join(dir, 'rules.json');
    writeFileSync(
      rules,
      JSON.stringify({ rules: { gather: { device: 'gpu-or-cpu', source: 'MLComputePlan, M2', confidence: 'M' } } }),
    );
    const pkg = join(REFERENCE[0]!, 'model.mlpackage');
    const j = json(await cli('inspect', '--ane', '--json', '--ane-rules', rules, pkg)) as {
      functions: { ops: { op: string; device: string; confidence: string }[] }[];
    };
    expect(j.functions[0]!.ops.find((o) => o.op === 'gather')).toMatchObject({ device: 'gpu-or-cpu', confidence: 'M' });
    writeFileSync(rules, '{"rules": {"gather": {"device": "tpu"}}}');
    expectOneLineError(
      await cli('inspect', '--ane', '--ane-rules', rules, pkg),
      /rules\.json: rule "gather" field "device" must be one of/,
    );
    writeFileSync(rules, '{"rules": ');
    expectOneLineError(await cli('inspect', '--ane', '--ane-rules', rules, pkg), /not valid JSON/);
    expectOneLineError(
      await cli('inspect', '--ane', join(FX, 'tiny-mlm')),
      /--ane predicts where a Core ML package runs; .* is not one \(convert it first\)/,
    );
    expectOneLineError(await cli('inspect', '--ane-rules', rules, pkg), /--ane-rules corrects the rules of --ane/);
    expectOneLineError(await cli('inspect', '--ane', join(dir, 'none.mlpackage')), /does not exist/);
  });
});

/** Names of `op` and every op it depends on. */
function ancestors(g: Graph, op: Op): Set<string> {
  const producer = new Map(g.ops.flatMap((o) => o.outputs.map((v) => [v.name, o] as const)));
  const out = new Set<string>();
  const visit = (o: Op) => {
    if (out.has(o.name)) return;
    out.add(o.name);
    for (const a of Object.values(o.inputs))
      for (const n of typeof a === 'string' ? [a] : Array.isArray(a) ? a : [])
        if (producer.has(n)) visit(producer.get(n)!);
  };
  visit(op);
  return out;
}

/** A float16 body around `middle`: x (1, 64, 1, 32) -> conv -> middle -> conv -> out. */
function body(middle: (g: GraphBuilder, h: string) => string, dtype: 'fp16' | 'fp32' = 'fp16'): Graph {
  const g = new GraphBuilder(dtype, 'iOS17');
  const x = g.input('x', dtype, [1, 64, 1, 32]);
  const w = (n: string) => g.weight(n, [64, 64, 1, 1], () => new Float32Array(64 * 64));
  const h = g.op('conv', { x, weight: w('w0') }, 'first');
  g.output(g.op('conv', { x: middle(g, h), weight: w('w1') }, 'last'), 'out');
  return g.graph;
}

/** A graph as a package from elsewhere may hold it: ops the builder would refuse, types as given. */
const raw = (ops: Op[], shapes: Record<string, number[]> = {}): Graph => ({
  inputs: [
    { name: 'x', type: { dtype: 'fp16', shape: shapes.x ?? [1, 64, 1, 32] } },
    { name: 'b', type: { dtype: 'fp16', shape: [4] } },
  ],
  consts: new Map(),
  ops,
  outputs: [ops.at(-1)!.outputs[0]!.name],
  taps: new Map(),
});
/** A float16 op with one output of `shape`. */
const op = (type: string, name: string, inputs: Op['inputs'], shape: number[]): Op => ({
  op: type,
  name,
  inputs,
  outputs: [{ name, type: { dtype: 'fp16', shape } }],
});

const placedBy = (g: Graph, name: string) => predictPlacement(g).ops.find((o) => o.name === name)!;

describe('placement rules on small graphs', () => {
  it('float16 work is on the Neural Engine; float32 is on the GPU or CPU, with no islands', () => {
    const p = predictPlacement(body((g, h) => g.op('relu', { x: h }, 'mid')));
    expect(p.ops.map((o) => o.device)).toEqual(['ane', 'ane', 'ane']);
    expect(p.ops.every((o) => o.rule === 'default')).toBe(true);
    expect(p.segments).toEqual([{ device: 'ane', from: 0, to: 2 }]);
    const f32 = predictPlacement(body((g, h) => g.op('relu', { x: h }, 'mid'), 'fp32'));
    expect(f32.ops.every((o) => o.device === 'gpu-or-cpu' && o.rule === 'fp32')).toBe(true);
    expect(f32.islands).toEqual([]);
    expect(f32.findings.find((x) => x.rule === 'fp32')).toMatchObject({ warn: true, count: 3 });
    expect(summaryLine({ name: 'main', placement: f32, time: estimateTime(f32) })).toMatch(
      /^Neural Engine \(predicted\): none of 3 ops \(float32 runs on the GPU or CPU\)/,
    );
  });

  it('int32 work between float16 ops is an island inside the body: two boundaries, and a warning', () => {
    const g = body((b, h) => {
      const i = b.op('cast', { x: h, dtype: str('int32') }, 'to_int');
      const j = b.op('add', { x: i, y: i32(1) }, 'int_add');
      return b.op('cast', { x: j, dtype: str('fp16') }, 'to_float');
    });
    const p = predictPlacement(g);
    expect(p.ops.map((o) => [o.name, o.device, o.region ?? null])).toEqual([
      ['first', 'ane', null],
      ['to_int', 'cpu', 'body'],
      ['int_add', 'cpu', 'body'],
      ['to_float', 'cpu', 'body'],
      ['last', 'ane', null],
    ]);
    expect(p.islands).toHaveLength(1);
    expect(p.islands[0]).toMatchObject({ region: 'body', ops: 3, fromAne: ['first'], toAne: ['to_float'] });
    expect(p.boundaries).toEqual({ head: 0, body: 2, tail: 0 });
    const f = { name: 'main', placement: p, time: estimateTime(p) };
    expect(f.time.partitions).toBe(2);
    const lines = convertLines([{ path: 'x.mlpackage', functions: [f] }]);
    expect(lines.summary).toMatch(/off it: 0 at the head, 3 inside the body, 0 at the tail/);
    expect(lines.warnings[0]).toMatch(
      /^Neural Engine \(predicted\): off it inside the body, body: 3 ops \(cast x2, add\) at ops 1-3 .*a round trip per prediction/,
    );
  });

  it('input preparation off the Neural Engine is a head island; work after the last Neural Engine op a tail', () => {
    const g = new GraphBuilder('fp16', 'iOS17');
    const ids = g.input('ids', 'int32', [1, 8]);
    const pad = g.op('equal', { x: ids, y: i32(0) }, 'is_pad');
    const m = g.op('mul', { x: g.op('cast', { x: pad, dtype: str('fp16') }, 'pad_f'), y: g.f(-1e4) }, 'pad_mask');
    const table = g.weight('table', [100, 8], () => new Float32Array(800));
    const e = g.op('gather', { x: table, indices: ids, axis: i32(0) }, 'embed');
    const h = g.op(
      'add',
      {
        x: g.op('softmax', { x: e, axis: i32(-1) }, 'sm'),
        y: g.op('reshape', { x: m, shape: i32([1, 8, 1]) }, 'mask3'),
      },
      'h',
    );
    g.output(
      g.op(
        'cast',
        {
          x: g.op('reduce_max', { x: h, axes: i32([2]), keep_dims: literal('bool', false) }, 'mx'),
          dtype: str('int32'),
        },
        'out_i',
      ),
      'out',
    );
    const p = predictPlacement(g.graph);
    const region = Object.fromEntries(p.ops.map((o) => [o.name, `${o.device}${o.region ? `/${o.region}` : ''}`]));
    expect(region).toEqual({
      is_pad: 'cpu/head',
      pad_f: 'cpu/head',
      pad_mask: 'ane',
      embed: 'cpu/head',
      sm: 'ane',
      mask3: 'ane',
      h: 'ane',
      mx: 'ane',
      out_i: 'cpu/tail',
    });
    expect(p.ops.find((o) => o.name === 'out_i')!.rule).toBe('io-cast');
    expect(p.ops.find((o) => o.name === 'embed')!.rule).toBe('gather');
    expect(p.boundaries).toEqual({ head: 2, body: 0, tail: 1 });
    expect(p.findings.find((x) => x.rule === 'softmax-axis')).toMatchObject({ warn: true, ops: ['sm'] });
    expect(p.findings.find((x) => x.rule === 'io-last-axis')!.message).toMatch(/: ids \(32 B\), out \(32 B\)$/);
  });

  it('run-time slice bounds, rank 6, wide axes, blocked ops and fused attention are each placed off the Neural Engine', () => {
    // A run-time slice bound cannot be built here (MIL's const=True): such graphs come from elsewhere.
    expect(
      placedBy(
        raw([op('slice_by_index', 's', { x: 'x', begin: 'b', end: literal('int32', [1, 64, 1, 16]) }, [1, 64, 1, 16])]),
        's',
      ).rule,
    ).toBe('dynamic');
    expect(
      placedBy(
        raw([op('reshape', 'r6', { x: 'x', shape: literal('int32', [1, 2, 2, 16, 1, 32]) }, [1, 2, 2, 16, 1, 32])]),
        'r6',
      ),
    ).toMatchObject({ device: 'gpu-or-cpu', rule: 'rank' });
    expect(
      placedBy(raw([op('relu', 'wide', { x: 'x' }, [1, 70000, 1, 32])], { x: [1, 70000, 1, 32] }), 'wide'),
    ).toMatchObject({ device: 'gpu-or-cpu', rule: 'axis-size' });
    expect(placedBy(raw([op('lstm', 'rnn', { x: 'x' }, [1, 64, 1, 32])]), 'rnn')).toMatchObject({
      device: 'cpu',
      rule: 'blocklist',
    });
    const sdpa = (S: number) =>
      raw([op('scaled_dot_product_attention', 'att', { query: 'x', key: 'x', value: 'x' }, [1, 64, S, 64])], {
        x: [1, 64, S, 64],
      });
    expect(placedBy(sdpa(32), 'att')).toMatchObject({ device: 'gpu-or-cpu', rule: 'fused-attention' });
    expect(placedBy(sdpa(256), 'att')).toMatchObject({ device: 'ane', rule: 'fused-attention' }); // 64 x 256 x 256 scores >= 2^21
  });

  it('warns on masks of -inf, tiny epsilons, other einsums and too many ops; notes layout rewrites', () => {
    const g = body((b, h) => {
      const ln = b.op('layer_norm', { x: h, axes: i32([1]), epsilon: b.f(1e-12) }, 'ln');
      const masked = b.op('add', { x: ln, y: b.f(-Infinity) }, 'masked');
      const tr = b.op('transpose', { x: masked, perm: i32([0, 1, 3, 2]) }, 'tr'); // (1, 64, 32, 1)
      return b.op('reshape', { x: tr, shape: i32([1, 64, 1, 32]) }, 'back');
    });
    const rules = applyRuleOverrides({ rules: { 'op-count': { threshold: 4 } } }, 'test');
    const p = predictPlacement(g, { rules });
    const by = Object.fromEntries(p.findings.map((x) => [x.rule, x]));
    expect(by['norm-epsilon']).toMatchObject({ warn: true, ops: ['ln (1e-12)'] });
    expect(by['mask-constant']).toMatchObject({ warn: true, ops: ['masked'] });
    expect(by['einsum-form']).toBeUndefined();
    expect(by['op-count']).toMatchObject({ warn: true, count: 6 });
    expect(by['last-axis-layout']).toMatchObject({ warn: false, ops: ['tr', 'back'] });
    expect(by['small-graph']!.message).toMatch(/^\d+ FLOPs in all: so little work may be placed on the CPU/); // 0.5 MFLOP
    expect(predictPlacement(g).findings.find((x) => x.rule === 'op-count')).toBeUndefined();
    // Apple's einsums under other letters are Apple's einsums; the rank-3 form is not one of them.
    const einsum = (eq: string) =>
      predictPlacement(
        raw([op('einsum', 'e', { values: ['x', 'x'], equation: literal('string', eq) }, [1, 64, 1, 32])]),
      ).findings.find((x) => x.rule === 'einsum-form');
    expect(einsum('nkhc,nchq->nkhq')).toBeUndefined();
    expect(einsum('bchk,bkhq->bchq')).toBeUndefined();
    expect(einsum('abc,cbd->abd')).toMatchObject({ warn: true, ops: ['e (abc,cbd->abd)'] });
  });
});

describe('cost', () => {
  it('counts matrix products at 2 per multiply-add, elementwise per element, and the bytes each op moves', () => {
    const g = body((b, h) => b.op('relu', { x: h }, 'mid'));
    const p = predictPlacement(g);
    const [first, mid] = p.ops;
    expect(first!.flops).toBe(2 * 64 * 32 * 64);
    expect(first!.weightBytes).toBe(64 * 64 * 2);
    expect(first!.bytes).toBe(2 * (64 * 32) * 2); // reads x, writes its output, float16
    expect(mid!.flops).toBe(64 * 32);
    expect(p.totals.weightBytes).toBe(2 * 64 * 64 * 2);
    const types = new Map([
      ['a', { dtype: 'fp16' as const, shape: [1, 8, 1, 16] }],
      ['b', { dtype: 'fp16' as const, shape: [1, 8, 1, 4] }],
    ]);
    const e: Op = {
      op: 'einsum',
      name: 'e',
      inputs: { values: ['a', 'b'], equation: literal('string', 'bchk,bchq->bkhq') },
      outputs: [{ name: 'e', type: { dtype: 'fp16', shape: [1, 16, 1, 4] } }],
    };
    expect(opCost(e, types, {}, () => undefined).flops).toBe(2 * 16 * 4 * 8);
  });
});

describe('the time model', () => {
  it("is calibrated on the reference project's ModernBERT-base at 1,024 tokens: 378 GFLOP at 3.0 TFLOP/s", () => {
    const config = parseConfig(SYNTH_PRESETS.base);
    // The reference form: an additive mask input (every layer scores all pairs), one unchunked attention per head.
    const g = buildModel(
      { config, weights: new SynthWeights(config) },
      { seqLen: 1024, dtype: 'fp16', norm: 'layernorm', maskFrom: 'input', attentionChunk: 1024, head: 'mlm' },
    );
    const p = predictPlacement(g);
    const t = estimateTime(p);
    expect(t.matrixFlops / 378e9).toBeCloseTo(1, 2);
    const m1 = t.chips.find((c) => c.chip === CALIBRATION.chip)!;
    expect(m1.ms).toBeCloseTo(t.matrixFlops / 3.0e9 + 0.15, 6);
    expect(m1.ms / 126).toBeCloseTo(1, 2);
    for (const c of t.chips) {
      expect(c.ms * c.peakTflops).toBeCloseTo((m1.ms - 0.15) * CHIPS[0]!.peakTflops + 0.15 * c.peakTflops, 3);
      expect(c.boundMs).toBeLessThan(c.ms);
    }
    expect(t.note).toMatch(/^a model, not a measurement/);
  });
});
