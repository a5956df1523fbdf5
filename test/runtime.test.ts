// --runtime: by default the runtime that finishes the command's work sooner (runtime-cost.ts; said once on
// stderr), either on request, our engine for fp16-acc16 or when onnxruntime is missing; both give the same
// numbers on checkpoints and packages.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../src/run/engine.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { COREML_FLAGS, ortSessionOptions } from '../src/run/ort-executor.js';
import { chooseRuntime, executorFor } from '../src/run/runtime-choice.js';
import { prefersOrt, SYNTH_BASE_BYTES, textsWork, weightBytes } from '../src/run/runtime-cost.js';
import { inputsWork } from '../src/eval/inputs.js';
import { BUILTIN_SENTENCES } from '../src/eval/sentences.js';
import { DEFAULT_MODEL } from '../src/run/load.js';
import { main } from '../src/cli/main.js';
import { cli, expectOneLineError, json, type Run } from './helpers/cli.js';
import { cleanupTempDirs, FX, ROOT, tempDir } from './helpers/fixtures.js';
import { expectError } from './helpers/run.js';

afterAll(cleanupTempDirs);
afterEach(() => {
  delete process.env.MODERNBERT_ANE_NO_ORT;
});

const TEXT = 'The capital of France is [MASK].';

// The CLI as a person at a terminal runs it (the runtime's note is for them, as the progress bars are).
async function tty(...argv: string[]): Promise<Run> {
  let [stdout, stderr] = ['', ''];
  const code = await main(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), isTTY: true });
  return { code, stdout, stderr };
}

describe('installing onnxruntime-node offline', () => {
  it('is pinned exactly, optional, and its downloading install script is told to skip (npm passes .npmrc keys as npm_config_*)', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      optionalDependencies?: Record<string, string>;
    };
    expect(pkg.optionalDependencies?.['onnxruntime-node']).toBe('1.30.0');
    // script/install-utils.js parseInstallFlag reads ONNXRUNTIME_NODE_INSTALL or npm_config_onnxruntime_node_install.
    expect(readFileSync(join(ROOT, '.npmrc'), 'utf8')).toMatch(/^onnxruntime-node-install=skip$/m);
  });
});

describe('onnxruntime session options', () => {
  afterEach(() => {
    delete process.env['MODERNBERT_ANE_THREADS'];
  });
  it('run as many intra-op threads as our kernels (onnxruntime-node left at 0 ran one thread on 2 cores)', () => {
    expect(ortSessionOptions('cpu')).toMatchObject({
      intraOpNumThreads: availableParallelism(),
      executionProviders: ['cpu'],
    });
    process.env['MODERNBERT_ANE_THREADS'] = '1';
    expect(ortSessionOptions('cpu').intraOpNumThreads).toBe(1);
    expect(ortSessionOptions('coreml').executionProviders).toEqual([
      { name: 'coreml', coreMlFlags: COREML_FLAGS },
      'cpu',
    ]);
  });
});

describe('chooseRuntime', () => {
  it('by the work by default, each when asked; fp16-acc16 on our engine; our engine when onnxruntime is missing', async () => {
    const auto = await chooseRuntime({});
    expect(auto.runtime).toBe('auto');
    expect(auto.note).toBeUndefined(); // said when the work decides
    expect((await chooseRuntime({ runtime: 'ort' })).note).toBeUndefined();
    expect(await chooseRuntime({ runtime: 'engine' })).toEqual({
      runtime: 'engine',
      provider: 'cpu',
      precision: 'fp32',
    });
    expect((await chooseRuntime({ runtime: 'ort', precision: 'fp16-fused' })).runtime).toBe('ort');
    expect(await chooseRuntime({ precision: 'fp16-acc16' })).toEqual({
      runtime: 'engine',
      provider: 'cpu',
      precision: 'fp16-acc16',
    });
    expect(
      (await expectError(() => chooseRuntime({ runtime: 'ort', precision: 'fp16-acc16' }), 'BAD_ARGUMENT')).message,
    ).toMatch(/our engine only/);
    // The auto factory decides once, from the work, and says so.
    const notes: string[] = [];
    const say = (n: string) => notes.push(n);
    const short = executorFor(await chooseRuntime({ precision: 'fp16' }), { tokens: 12, passes: 1 }, say)!;
    const long = executorFor(await chooseRuntime({ precision: 'fp16' }), { tokens: 9601, passes: 19 }, say)!;
    const none = { tokens: 1, passes: 1 }; // the work the factories were told wins over this
    expect(short.readsFiles!(none)).toBe(prefersOrt({ tokens: 12, passes: 1 }, 'fp16'));
    expect(long.readsFiles!(none)).toBe(true);
    expect(short.plan!(12, 'fp16')).toEqual(short.readsFiles!(none) ? { len: 64, shared: false } : undefined);
    expect(notes).toHaveLength(2);
    expect(notes[1]).toMatch(/^note: running on onnxruntime-node 1\.30\.0 \(about 9601 tokens in 19 passes/);
    process.env.MODERNBERT_ANE_NO_ORT = '1';
    const fallback = await chooseRuntime({});
    expect(fallback.runtime).toBe('engine');
    expect(fallback.note).toMatch(/not installed/);
    expect((await expectError(() => chooseRuntime({ runtime: 'ort' }), 'BAD_ARGUMENT')).message).toMatch(
      /not installed/,
    );
  });

  it("diff's work is its inputs: the built-in sentences when it is given no texts (they once counted as none)", async () => {
    const builtin = textsWork(BUILTIN_SENTENCES);
    expect(builtin.passes).toBe(BUILTIN_SENTENCES.length);
    expect(inputsWork({})).toEqual(builtin);
    expect(inputsWork({ texts: [] })).toEqual(builtin);
    expect(inputsWork({ texts: [TEXT] })).toEqual(textsWork([TEXT]));
    expect(inputsWork({ random: 30 })).toEqual({ tokens: 32, passes: 1 });
    expect(inputsWork({ golden: 'g.safetensors' })).toBeUndefined(); // its first input decides
    // On a ModernBERT-base-sized model the sentences in float16 emulation are onnxruntime's work (our engine:
    // 179 s for diff /tmp/sb package --precision-b fp16, against 24 s).
    expect(prefersOrt({ ...builtin, bytes: SYNTH_BASE_BYTES }, 'fp16')).toBe(true);
    // The command says so, for the sentences it runs.
    const d = await tty('diff', DEFAULT_MODEL, DEFAULT_MODEL, '--precision-b', 'fp16');
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).toContain(`about ${builtin.tokens} tokens in ${builtin.passes} passes`);
  });

  it.runIf(process.platform !== 'darwin')('refuses the Core ML provider off macOS', async () => {
    expect((await expectError(() => chooseRuntime({ provider: 'coreml' }), 'BAD_ARGUMENT')).message).toMatch(
      /needs macOS/,
    );
    expectOneLineError(await cli('predict', '--ort-provider', 'coreml', TEXT), /needs macOS/);
  });
});

describe('onnxruntime and our engine agree', () => {
  it('on every head, with taps (hidden states), within 1e-5', async () => {
    for (const name of ['tiny-mlm', 'tiny-cls-mean', 'tiny-token']) {
      const ckpt = loadCheckpoint(join(FX, name));
      try {
        const ort = new Engine(ckpt, {}, executorFor(await chooseRuntime({ runtime: 'ort' })));
        const ours = new Engine(ckpt);
        const seq = { ids: [1001, 5, 17, 300, 44, 9, 1002, 0], attention: [1, 1, 1, 1, 1, 1, 1, 0] };
        const taps = ['hidden_states.2'];
        const [a, b] = [await ort.forward(seq, { taps }), await ours.forward(seq, { taps })];
        for (const [k, t] of b.outputs) {
          const o = a.outputs.get(k)!;
          expect(o.shape).toEqual(t.shape);
          for (let i = 0; i < t.data.length; i++)
            expect(Math.abs(o.data[i]! - t.data[i]!), `${name} ${k}[${i}]`).toBeLessThan(1e-5);
        }
        const [ha, hb] = [a.taps.get('hidden_states.2')!, b.taps.get('hidden_states.2')!];
        expect(ha.shape).toEqual(hb.shape);
        for (let i = 0; i < hb.data.length; i++) expect(Math.abs(ha.data[i]! - hb.data[i]!)).toBeLessThan(1e-5);
      } finally {
        ckpt.close();
      }
    }
  });

  it('predict says which runtime once on a terminal (not with --json, nor to scripts), and both print the same', async () => {
    const auto = await tty('predict', TEXT);
    expect(auto.code, auto.stderr).toBe(0);
    // The built-in model is small: onnxruntime's fixed setup outweighs what it saves on 9 tokens.
    const mini = loadCheckpoint(DEFAULT_MODEL);
    const bytes = weightBytes(mini.weights);
    mini.close();
    expect(prefersOrt({ tokens: 9, passes: 1, bytes }, 'fp32')).toBe(false);
    expect(auto.stderr).toMatch(
      /^note: running on our engine \(9 tokens: less than onnxruntime's setup would cost; --runtime ort to use it\)/,
    );
    expect(auto.stderr.trimEnd().split('\n')).toHaveLength(1);
    const engine = await tty('predict', '--runtime', 'engine', TEXT);
    expect(engine.stderr).toBe('');
    expect(auto.stdout).toBe(engine.stdout);
    expect((await tty('predict', '--json', TEXT)).stderr).toBe('');
    expect((await cli('predict', TEXT)).stderr).toBe('');
    process.env.MODERNBERT_ANE_NO_ORT = '1';
    const fallback = await tty('predict', TEXT);
    expect(fallback.stderr).toMatch(/^note: onnxruntime-node is not installed: running on our engine/);
    expect(fallback.stdout).toBe(engine.stdout);
    expectOneLineError(await cli('predict', '--runtime', 'ort', TEXT), /not installed/);
  });

  it('verify passes the goldens on onnxruntime; a package (float16 weights) runs the same on both', async () => {
    const golden = join(FX, 'tiny-mlm', 'golden.safetensors');
    const v = await cli(
      'verify',
      join(FX, 'tiny-mlm'),
      '--golden',
      golden,
      '--runtime',
      'ort',
      '--atol',
      '1e-5',
      '--json',
    );
    expect(v.code, v.stderr).toBe(0);
    expect(
      (json(v) as { cases: { hidden_states: number | null }[] }).cases.every((c) => c.hidden_states !== null),
    ).toBe(true);
    const pkg = join(tempDir('mbane-rt-'), 'm.mlpackage');
    expect((await cli('convert', join(FX, 'tiny-mlm'), '--out', pkg, '--no-fidelity', '--seq-len', '16')).code).toBe(0);
    const d = await cli('diff', pkg, pkg, '--random', '2', '--runtime', 'ort', '--precision-b', 'fp32', '--json');
    expect(d.code, d.stderr).toBe(0);
    const e = await cli('diff', join(FX, 'tiny-mlm'), pkg, '--random', '2', '--runtime', 'ort', '--json');
    const f = await cli('diff', join(FX, 'tiny-mlm'), pkg, '--random', '2', '--runtime', 'engine', '--json');
    const [re, rf] = [json(e) as { kl: number; max_abs_diff: number }, json(f) as { kl: number; max_abs_diff: number }];
    expect(re.max_abs_diff).toBeGreaterThan(0); // float16 weights against float32 ones
    expect(Math.abs(re.max_abs_diff - rf.max_abs_diff)).toBeLessThan(1e-5);
    expect(Math.abs(re.kl - rf.kl)).toBeLessThan(1e-7);
  });
});
