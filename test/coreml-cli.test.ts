// --runtime coreml, bench and plan through the command line. Off macOS they exit 2 with one line; with the
// helper's stand-in (test/helpers/coreml-standin.mjs: our engine at fp16 behind the same protocol) every macOS
// code path runs here, and what Core ML "computes" must equal our fp16 emulation exactly.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { matrixFlops } from '../src/ane/cost.js';
import type { BenchReport } from '../src/tasks/coreml-bench.js';
import type { PlanReport } from '../src/run/coreml/plan.js';
import { pipeline } from '../src/tasks/pipeline.js';
import { cli, expectOneLineError, json, type Run } from './helpers/cli.js';
import { cleanupTempDirs, FX, ROOT, tempDir } from './helpers/fixtures.js';

const STANDIN = join(ROOT, 'test', 'helpers', 'coreml-standin.mjs');
const MINI = join(ROOT, 'models', 'mini-trained');
const DOOR = 'She opened the [MASK] and walked into the room.';
const ENV = ['MODERNBERT_ANE_COREML_HELPER', 'MODERNBERT_ANE_COREML_CACHE', 'MODERNBERT_ANE_COREML_TIMEOUT_S'] as const;
const saved = Object.fromEntries(ENV.map((k) => [k, process.env[k]]));
let dir = '';
let pkg = '';
let long = '';
let emb = '';

const useStandin = (...args: string[]) =>
  (process.env.MODERNBERT_ANE_COREML_HELPER = JSON.stringify([process.execPath, STANDIN, ...args]));

beforeAll(async () => {
  dir = tempDir('mbane-coreml-cli-');
  pkg = join(dir, 'mini.mlpackage');
  long = join(dir, 'long.mlpackage');
  emb = join(dir, 'emb.mlpackage');
  for (const [out, extra] of [
    [pkg, ['--seq-len', '16,32']],
    [long, ['--seq-len', '64,512']],
    [emb, ['--seq-len', '32', '--head', 'embedding']],
  ] as const) {
    const r = await cli('convert', MINI, '--out', out, '--tokenizer', '--no-fidelity', ...extra);
    expect(r.code, r.stderr).toBe(0);
  }
});
afterEach(() => {
  for (const k of ENV)
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
});
afterAll(cleanupTempDirs);

/** An internal error (exit 3): one line on stderr, nothing on stdout. */
function expectInternal(r: Run, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(3);
  expect(r.stdout).toBe('');
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
}

describe('off macOS', () => {
  it('--runtime coreml, bench and plan exit 2 with one line naming what they need', async () => {
    delete process.env.MODERNBERT_ANE_COREML_HELPER;
    const platform = Object.getOwnPropertyDescriptor(process, 'platform')!;
    Object.defineProperty(process, 'platform', { value: 'linux' });
    try {
      const need = /needs macOS with the Command Line Tools \(xcode-select --install\); this system is linux$/m;
      expectOneLineError(
        await cli('predict', pkg, DOOR, '--runtime', 'coreml'),
        /^error: --runtime coreml needs macOS/,
      );
      expectOneLineError(await cli('predict', pkg, DOOR, '--runtime', 'coreml'), need);
      expectOneLineError(
        await cli('verify', pkg, '--golden', join(FX, 'mini-trained', 'golden.safetensors'), '--runtime', 'coreml'),
        need,
      );
      expectOneLineError(await cli('diff', pkg, pkg, '--runtime', 'coreml', '--precision-b', 'fp16'), need);
      writeFileSync(join(dir, 'one.txt'), 'one text\n');
      expectOneLineError(
        await cli('embed', emb, '--input', join(dir, 'one.txt'), '--out', join(dir, 'o.jsonl'), '--runtime', 'coreml'),
        need,
      );
      expectOneLineError(await cli('bench', pkg), /^error: bench needs macOS/);
      expectOneLineError(
        await cli('plan', pkg, '--json'),
        /^error: plan needs macOS with the Command Line Tools \(xcode-select --install\)/,
      );
    } finally {
      Object.defineProperty(process, 'platform', platform);
    }
  });
});

describe('with the stand-in helper', () => {
  beforeAll(() => {
    process.env.MODERNBERT_ANE_COREML_CACHE = join(dir, 'cache');
  });

  it('predict: Core ML (here our engine at fp16 behind the protocol) gives what the fp16 emulation gives', async () => {
    useStandin();
    process.env.MODERNBERT_ANE_COREML_CACHE = join(dir, 'cache');
    const ours = await cli('predict', pkg, DOOR, '--precision', 'fp16', '--json');
    const coreml = await cli('predict', pkg, DOOR, '--runtime', 'coreml', '--compute-units', 'cpu-and-ne', '--json');
    expect(coreml.code, coreml.stderr).toBe(0);
    expect(json(coreml)).toEqual(json(ours));
    expect((json(coreml) as { token_str: string }[])[0]!.token_str).toBe(' door');
    // The batch form too.
    const input = join(dir, 'texts.txt');
    writeFileSync(input, `${DOOR}\nThe [MASK] is blue.\n`);
    const batch = await cli('predict', pkg, '--input', input, '--runtime', 'coreml');
    expect(batch.code, batch.stderr).toBe(0);
    expect(batch.stdout).toBe((await cli('predict', pkg, '--input', input, '--precision', 'fp16')).stdout);
  });

  it("the library: pipeline(task, pkg, { runtime: 'coreml' }) gives what the fp16 emulation gives, and dispose() stops the helper", async () => {
    useStandin();
    process.env.MODERNBERT_ANE_COREML_CACHE = join(dir, 'cache');
    const coreml = await pipeline('fill-mask', pkg, { runtime: 'coreml', computeUnits: 'cpu-and-ne' });
    const fp16 = await pipeline('fill-mask', pkg, { precision: 'fp16' });
    try {
      expect(coreml.runtime).toBe('coreml');
      expect(await coreml([DOOR, 'The [MASK] is blue.'])).toEqual(await fp16([DOOR, 'The [MASK] is blue.']));
    } finally {
      await coreml.dispose();
      await fp16.dispose();
    }
    await expect(pipeline('fill-mask', pkg, { runtime: 'coreml', precision: 'fp16' })).rejects.toThrow(
      /`precision: fp16` is our float16 emulation/,
    );
    await expect(pipeline('fill-mask', pkg, { computeUnits: 'all' })).rejects.toThrow(
      /`computeUnits` goes with `runtime: 'coreml'`/,
    );
  });

  it('verify compares the logits (Core ML has no hidden states to give) and matches the fp16 emulation', async () => {
    useStandin();
    const golden = join(FX, 'mini-trained', 'golden.safetensors');
    const r = await cli('verify', long, '--golden', golden, '--runtime', 'coreml', '--atol', '0.25', '--json');
    expect(r.code, r.stderr).toBe(0);
    const ours = json(
      await cli('verify', long, '--golden', golden, '--precision', 'fp16', '--atol', '0.25', '--json'),
    ) as { cases: { name: string; logits: number; hidden_states: number | null }[] };
    const theirs = json(r) as typeof ours & { passed: boolean };
    expect(theirs.passed).toBe(true);
    expect(theirs.cases.map((c) => [c.name, c.logits, c.hidden_states])).toEqual(
      ours.cases.map((c) => [c.name, c.logits, null]),
    );
  });

  it('diff against the fp16 emulation is the hardware check: here KL 0 and top-1 100%; a checkpoint side runs on our engine', async () => {
    useStandin();
    const texts = [DOOR, 'The [MASK] barked at the mailman all morning.'];
    const same = json(
      await cli('diff', pkg, pkg, ...texts, '--runtime', 'coreml', '--precision-b', 'fp16', '--json'),
    ) as { kl: number; top1: number; tokens: number };
    expect(same).toMatchObject({ kl: 0, top1: 1, max_abs_diff: 0, tokens: 2 });
    const all = { kl: 0, top1: 1 };
    expect(
      json(await cli('diff', pkg, pkg, '--random', '30', '--runtime', 'coreml', '--precision-b', 'fp16', '--json')),
    ).toMatchObject({ ...all, tokens: 32 });
    const vsFloat = json(await cli('diff', MINI, pkg, ...texts, '--runtime', 'coreml', '--json')) as { kl: number };
    const vsEmulation = json(
      await cli('diff', MINI, pkg, ...texts, '--precision-b', 'fp16', '--runtime', 'engine', '--json'),
    ) as { kl: number };
    expect(vsFloat.kl).toBe(vsEmulation.kl);
    expect(vsFloat.kl).toBeGreaterThan(0);
  });

  it('embed writes what the fp16 emulation writes', async () => {
    useStandin();
    const input = join(dir, 'embed.txt');
    writeFileSync(input, 'the cat sat\na dog ran far away\n');
    const a = await cli('embed', emb, '--input', input, '--out', join(dir, 'a.jsonl'), '--runtime', 'coreml', '--json');
    expect(a.code, a.stderr).toBe(0);
    expect((await cli('embed', emb, '--input', input, '--out', join(dir, 'b.jsonl'), '--precision', 'fp16')).code).toBe(
      0,
    );
    expect(readFileSync(join(dir, 'a.jsonl'), 'utf8')).toBe(readFileSync(join(dir, 'b.jsonl'), 'utf8'));
  });

  it("bench: load times and latency per length for each choice of compute units, with the graph's FLOPs", async () => {
    useStandin();
    const r = await cli('bench', pkg, '--runs', '3', '--warmup', '0', '--json');
    expect(r.code, r.stderr).toBe(0);
    const b = json(r) as BenchReport;
    expect(b.os).toMatch(/^stand-in for Core ML/);
    expect(b.results.map((x) => x.compute_units)).toEqual(['all', 'cpu-and-ne', 'cpu-only', 'cpu-and-gpu']);
    const graph = readMLPackage(pkg).graph;
    for (const u of b.results) {
      expect(u.rows.map((row) => row.length)).toEqual([16, 32]);
      for (const row of u.rows) {
        expect(row.function).toBe('main');
        expect(row.runs).toBe(3);
        expect(row.flops).toBe(matrixFlops(graph, { S: row.length }));
        expect(row.first_load_ms).toBeGreaterThan(0);
        expect(row.cached_load_ms).toBeGreaterThan(0);
        expect(row.p50_ms).toBeGreaterThan(0);
        expect(row.p50_ms).toBeLessThanOrEqual(row.p90_ms);
        expect(row.p90_ms).toBeLessThanOrEqual(row.p99_ms);
        expect(row.tokens_per_s).toBeCloseTo(row.length / (row.p50_ms / 1000), 6);
        expect(row.tflops).toBeCloseTo(row.flops / (row.p50_ms / 1000) / 1e12, 12);
      }
    }
    // The compile was recorded in the cache entry: a second bench reports the same time without compiling.
    const again = json(
      await cli(
        'bench',
        pkg,
        '--runs',
        '1',
        '--warmup',
        '0',
        '--compute-units',
        'cpu-only',
        '--lengths',
        '20',
        '--json',
      ),
    ) as BenchReport;
    expect(again).toMatchObject({ compiled_now: false, compile_ms: b.compiled_now ? b.compile_ms : again.compile_ms });
    expect(again.results[0]!.rows[0]).toMatchObject({ length: 20, flops: matrixFlops(graph, { S: 32 }) });
    const text = await cli('bench', pkg, '--runs', '1', '--warmup', '0', '--compute-units', 'all,cpu-only');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^16 tokens \(function main, [\d.]+ GFLOP\):$/m);
    expect(text.stdout).toMatch(/^ {2}cpu-only +\d+ ms +\d+ ms +[\d.]+ ms/m);
    expectOneLineError(
      await cli('bench', pkg, '--compute-units', 'all,gpu-only'),
      /"gpu-only" is not one of all, cpu-and-ne, cpu-only, cpu-and-gpu/,
    );
    expectOneLineError(await cli('bench', pkg, '--lengths', '64'), /--lengths 64: .* takes at most 32 tokens/);
    expectOneLineError(await cli('bench', MINI), /bench times a Core ML package; .* is not one/);
  });

  it('plan: shares per device and every op off the Neural Engine, joined to our graph op by op', async () => {
    useStandin();
    const r = await cli('plan', pkg, '--json');
    expect(r.code, r.stderr).toBe(0);
    const p = json(r) as PlanReport;
    const graph = readMLPackage(pkg).graph;
    expect(p.per_op).toHaveLength(graph.ops.length);
    expect(p.ops.const_ops).toBe(graph.consts.size);
    expect(p.ops.total).toBe(graph.ops.length);
    p.per_op.forEach((op) => {
      expect(graph.ops[op.index!]!.op).toBe(op.op);
      expect(graph.ops[op.index!]!.name).toBe(op.name);
      expect(op.outputs[0]!.shape).toEqual(graph.ops[op.index!]!.outputs[0]!.type.shape);
    });
    const gathers = graph.ops.flatMap((op, i) => (op.op === 'gather' ? [i] : []));
    expect(p.off_ane.map((o) => o.index)).toEqual(gathers);
    expect(p.off_ane.every((o) => o.device === 'cpu')).toBe(true);
    expect(p.ops.cpu).toBe(gathers.length);
    expect(p.op_share.ane + p.op_share.gpu + p.op_share.cpu).toBeCloseTo(1, 12);
    expect(p.cost_share!.ane + p.cost_share!.cpu).toBeCloseTo(1, 12);
    const text = await cli('plan', pkg, '--compute-units', 'cpu-and-ne');
    expect(text.stdout).toMatch(
      new RegExp(
        `^ops: ${graph.ops.length}: Neural Engine ${graph.ops.length - gathers.length} \\([\\d.]+%\\), GPU 0 \\(0\\.0%\\), CPU ${gathers.length} `,
        'm',
      ),
    );
    expect(text.stdout).toMatch(/^ {2}#\d+ gather -> embed \[1, S, 256\] fp16: CPU \(supported: CPU, GPU\)/m);
    expectOneLineError(await cli('plan', pkg, '--function', 'nope'), /no function "nope"|has no function/);
    useStandin('--os', '14.3.0');
    expectOneLineError(
      await cli('plan', pkg),
      /plan needs macOS 14\.4 or later \(MLComputePlan\); this is macOS 14\.3\.0/,
    );
  });

  it('a helper that dies, hangs or prints garbage: one line each', async () => {
    useStandin('--misbehave', 'die-on-load');
    expectOneLineError(
      await cli('predict', pkg, DOOR, '--runtime', 'coreml'),
      /^error: the Core ML helper was killed by SIGKILL during load; a failed Neural Engine compile can do this: try --compute-units cpu-only$/m,
    );
    useStandin('--misbehave', 'hang-on-predict');
    process.env.MODERNBERT_ANE_COREML_TIMEOUT_S = '2';
    expectOneLineError(
      await cli('bench', pkg, '--runs', '1'),
      /^error: the Core ML helper did not answer predict within 2 s \(stopped it\)/,
    );
    delete process.env.MODERNBERT_ANE_COREML_TIMEOUT_S;
    useStandin('--misbehave', 'garbage-on-predict');
    expectInternal(
      await cli('predict', pkg, DOOR, '--runtime', 'coreml'),
      /^internal error: the Core ML helper broke its protocol: it printed a line that is not a JSON reply: "Loading Neural Engine program\.\.\. done"/,
    );
  });

  it('options that do not go together', async () => {
    useStandin();
    expectOneLineError(
      await cli('predict', pkg, DOOR, '--compute-units', 'cpu-only'),
      /--compute-units goes with --runtime coreml/,
    );
    expectOneLineError(
      await cli('predict', pkg, DOOR, '--runtime', 'coreml', '--precision', 'fp16'),
      /--precision fp16 is our float16 emulation; --runtime coreml runs the package as Core ML computes it/,
    );
    expectOneLineError(
      await cli('predict', DOOR, '--runtime', 'coreml'),
      /--runtime coreml runs Core ML packages, and this model is a checkpoint: convert it first/,
    );
    expectOneLineError(
      await cli('predict', pkg, DOOR, '--runtime', 'coreml', '--ort-provider', 'cpu'),
      /--ort-provider goes with --runtime ort/,
    );
    expectOneLineError(
      await cli(
        'verify',
        pkg,
        '--golden',
        join(FX, 'mini-trained', 'golden.safetensors'),
        '--runtime',
        'coreml',
        '--compute-units',
        'gpu',
      ),
      /argument 'gpu' is invalid/,
    );
  });
});
