// onnxruntime set up once per model (ort-executor.ts, onnx/write.ts sessionModel, engine.ts LengthPlan): the
// checkpoint's own bytes read in place (float32, bfloat16 and float16 storage, a package's weight.bin, a
// symbolic link as the Hugging Face cache makes them), products reading the stored layout, one session for
// every length, padded static lengths that change nothing for real tokens, and embed's choice of strategy.

import { copyFileSync, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/run/engine.js';
import type { ExecutorFactory } from '../src/run/runner.js';
import { Interpreter } from '../src/graph/interpreter.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { openModel } from '../src/run/load.js';
import { buildModel } from '../src/model/model.js';
import { lowerGraph } from '../src/onnx/lower.js';
import { sessionModel } from '../src/onnx/write.js';
import { chooseRuntime, executorFor, ortLengthPlan } from '../src/run/runtime-choice.js';
import { prefersOnePerPass } from '../src/run/runtime-cost.js';
import type { Precision } from '../src/runtime/numerics.js';
import type { RtTensor } from '../src/runtime/tensor.js';
import { runTokenized } from '../src/tasks/batch.js';
import { TASKS } from '../src/tasks/task-table.js';
import { cli, json } from './helpers/cli.js';
import { cleanupTempDirs, FX, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const ortFactory = async (precision: Precision = 'fp32'): Promise<ExecutorFactory> =>
  executorFor(await chooseRuntime({ runtime: 'ort', precision }))!;
const maxDiff = (a: RtTensor, b: RtTensor) =>
  Array.from(a.data).reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i]!)), 0);
const SEQ = { ids: [1001, 5, 17, 300, 44, 9, 12, 1002] };

describe('the weights read in place', () => {
  it("every weight of a checkpoint points into its safetensors file, at the tensor's own offset", () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    try {
      const g = buildModel(ckpt, { seqLen: 8, maskFrom: 'attention', head: 'mlm' });
      const low = lowerGraph(g, { float32: true, inPlace: true, storedLayout: true });
      const file = SafetensorsFile.open(join(FX, 'tiny-mlm', 'model.safetensors'));
      try {
        const inFile = low.initializers.filter((t) => t.file);
        expect(inFile.length).toBe(file.tensors.size); // the tied decoder reads the embedding table's initializer
        for (const t of inFile) {
          expect(t.file!.path).toBe(realpathSync(join(FX, 'tiny-mlm', 'model.safetensors')));
          expect([...file.tensors.keys()].map((n) => file.location(n)!.offset)).toContain(t.file!.offset);
        }
        // Nothing large is copied: what is not in the file is the graph's own small tables.
        expect(low.initializers.filter((t) => !t.file).every((t) => t.byteLength < 64 * 1024)).toBe(true);
        // Products read the stored (out, in) layout transposed, with no transposed copy.
        const m = sessionModel(low, { name: 't' }, { fusedMatMul: true });
        expect(m.folder).toBe(realpathSync(join(FX, 'tiny-mlm')));
        expect(m.buffers).toEqual([]);
      } finally {
        file.close();
      }
    } finally {
      ckpt.close();
    }
  });

  it('a session writes no file, and float32, bfloat16 and symbolically linked checkpoints run as on our engine', async () => {
    const dir = tempDir('mbane-ort-tmp-');
    const linked = tempDir('mbane-ort-link-');
    const blobs = join(linked, 'blobs');
    mkdirSync(blobs);
    copyFileSync(join(FX, 'tiny-mlm', 'model.safetensors'), join(blobs, 'abc123'));
    const snap = join(linked, 'snapshot');
    mkdirSync(snap);
    symlinkSync(join(blobs, 'abc123'), join(snap, 'model.safetensors'));
    copyFileSync(join(FX, 'tiny-mlm', 'config.json'), join(snap, 'config.json'));
    const before = process.env.TMPDIR;
    process.env.TMPDIR = dir; // os.tmpdir() reads it on every call
    try {
      for (const path of [join(FX, 'tiny-mlm'), join(FX, 'tiny-mlm-bf16'), snap]) {
        const ckpt = loadCheckpoint(path);
        try {
          const [a, b] = [
            await new Engine(ckpt, {}, await ortFactory()).forward(SEQ),
            await new Engine(ckpt).forward(SEQ),
          ];
          expect(maxDiff(a.outputs.get('logits')!, b.outputs.get('logits')!), path).toBeLessThan(1e-5);
        } finally {
          ckpt.close();
        }
      }
      // (This sandbox's own process wrapper leaves these two in every TMPDIR; nothing else may appear.)
      expect(readdirSync(dir).filter((f) => !/^(\.ses|mat-debug-\d+\.log)$/.test(f))).toEqual([]);
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
    }
  });

  it('a float16 package runs from its weight.bin in place, at float32 and in float16 emulation, as on our engine', async () => {
    const pkg = join(tempDir('mbane-ort-pkg-'), 'm.mlpackage');
    expect((await cli('convert', join(FX, 'tiny-mlm'), '--out', pkg, '--no-fidelity', '--seq-len', '16')).code).toBe(0);
    for (const precision of ['fp32', 'fp16'] as const) {
      const ours = await openModel(pkg, { precision });
      const theirs = await openModel(pkg, { precision, executor: await ortFactory(precision) });
      const seq = { ids: SEQ.ids };
      const [a, b] = [
        (await theirs.runner.forward(seq)).outputs.get('logits')!,
        (await ours.runner.forward(seq)).outputs.get('logits')!,
      ];
      expect(maxDiff(a, b), precision).toBeLessThan(precision === 'fp32' ? 1e-5 : 2e-2);
    }
  });
});

describe("onnxruntime's profiler, on request", () => {
  it("MODERNBERT_ANE_ORT_PROFILE=PREFIX writes every node's time to PREFIX_*.json when the session is released, and nothing without it", async () => {
    const dir = tempDir('mbane-ort-profile-');
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    try {
      process.env.MODERNBERT_ANE_ORT_PROFILE = join(dir, 'run');
      const engine = new Engine(ckpt, {}, await ortFactory());
      await engine.forward(SEQ);
      await engine.release();
      const files = readdirSync(dir);
      expect(files).toHaveLength(1);
      expect(files[0]).toMatch(/^run_.*\.json$/);
      const events = JSON.parse(readFileSync(join(dir, files[0]!), 'utf8')) as {
        cat: string;
        args: { op_name?: string };
      }[];
      expect(events.some((e) => e.cat === 'Node' && e.args.op_name === 'FusedMatMul')).toBe(true);
      delete process.env.MODERNBERT_ANE_ORT_PROFILE;
      const quiet = new Engine(ckpt, {}, await ortFactory());
      await quiet.forward(SEQ);
      await quiet.release();
      expect(readdirSync(dir)).toHaveLength(1);
    } finally {
      delete process.env.MODERNBERT_ANE_ORT_PROFILE;
      ckpt.close();
    }
  });
});

describe('one setup for many lengths', () => {
  it('at float32 one graph (and session) serves every length up to 1,024 tokens; taps and outputs as on our engine', async () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    try {
      const ort = await ortFactory();
      let graphs = 0;
      const counting: ExecutorFactory = Object.assign(
        (g: Parameters<ExecutorFactory>[0], p: Precision) => (graphs++, ort(g, p)),
        { plan: ort.plan },
      );
      const e = new Engine(ckpt, {}, counting);
      const ours = new Engine(ckpt);
      for (const n of [3, 8, 21, 40]) {
        const seq = { ids: [1001, ...Array.from({ length: n - 2 }, (_, i) => 5 + ((i * 31) % 900)), 1002] };
        const o = { positions: [0, n - 1], taps: ['hidden_states.1'] };
        const [a, b] = [await e.forward(seq, o), await ours.forward(seq, o)];
        expect(a.outputs.get('logits')!.shape).toEqual(b.outputs.get('logits')!.shape);
        expect(maxDiff(a.outputs.get('logits')!, b.outputs.get('logits')!)).toBeLessThan(1e-5);
        expect(maxDiff(a.taps.get('hidden_states.1')!, b.taps.get('hidden_states.1')!)).toBeLessThan(1e-5);
      }
      expect(graphs).toBe(1);
      expect(ortLengthPlan(1024, 'fp32')).toEqual({ len: 1024, shared: true });
      expect(ortLengthPlan(1025, 'fp32')).toEqual({ len: 2048, shared: false });
    } finally {
      ckpt.close();
    }
  });

  it('padded to a static length, real tokens see exactly what they see unpadded (float32 and float16)', async () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    try {
      for (const precision of ['fp32', 'fp16'] as const) {
        const padded: ExecutorFactory = Object.assign(
          (g: Parameters<ExecutorFactory>[0], p: Precision) => new Interpreter(g, p),
          { plan: () => ({ len: 64, shared: false }) },
        );
        const seq = { ids: [1001, 5, 17, 300, 44, 9, 12, 88, 1002] };
        const o = { positions: [1, 4, 8], taps: ['residual.2'] };
        const [a, b] = [
          await new Engine(ckpt, { precision }, padded).forward(seq, o),
          await new Engine(ckpt, { precision }).forward(seq, o),
        ];
        expect(Array.from(a.outputs.get('logits')!.data), precision).toEqual(Array.from(b.outputs.get('logits')!.data));
        expect(a.taps.get('residual.2')!.shape).toEqual(b.taps.get('residual.2')!.shape);
        expect(Array.from(a.taps.get('residual.2')!.data), precision).toEqual(
          Array.from(b.taps.get('residual.2')!.data),
        );
      }
      expect(ortLengthPlan(9, 'fp16')).toEqual({ len: 64, shared: false });
      expect(ortLengthPlan(300, 'fp16')).toEqual({ len: 512, shared: false });
    } finally {
      ckpt.close();
    }
  });
});

describe('embed picks packed windows or one text per pass, by the lengths', () => {
  it('short texts packed (in blocks), long ones alone; the embeddings the same either way', async () => {
    expect(prefersOnePerPass(new Array(300).fill(32), 19, 512)).toBe(false);
    expect(prefersOnePerPass(new Array(30).fill(307), 20, 512)).toBe(true);
    const model = await openModel(join(FX, 'tiny-mlm'), { executor: await ortFactory() });
    try {
      const text = (n: number, k: number) => [
        1001,
        ...Array.from({ length: n - 2 }, (_, i) => 5 + ((i * 7 + k * 13) % 900)),
        1002,
      ];
      const short = Array.from({ length: 40 }, (_, k) => text(6 + (k % 5), k));
      const long = Array.from({ length: 6 }, (_, k) => text(100 + k * 3, k));
      const plan = TASKS['feature-extraction'].plan(model, model.tokenizer!, {});
      const embed = (texts: number[][], pack?: number) =>
        runTokenized(
          model,
          texts.map((ids) => ({ text: '', ids })),
          plan,
          { window: 128, ...(pack ? { pack } : {}) },
        );
      const [s, l] = [await embed(short), await embed(long)];
      // Short texts pack, each inside one block of the local window (16 tokens here): the same as packed plainly.
      expect(s.stats.strategy).toBe('blocks');
      const plain = await embed(short, 64);
      expect(plain.stats.strategy).toBe('packed');
      for (const [i, a] of s.results.entries()) {
        const b = plain.results[i]!;
        expect(a.reduce((m, v, k) => Math.max(m, Math.abs(v - b[k]!)), 0)).toBeLessThan(1e-5);
      }
      expect(l.stats.strategy).toBe('single');
      expect(l.stats.windows).toBe(6);
      // --pack forces packing; the embeddings agree.
      const forced = await embed(long, 64);
      expect(forced.stats.strategy).toBe('packed');
      for (const [i, a] of l.results.entries()) {
        const b = forced.results[i]!;
        expect(a.reduce((m, v, k) => Math.max(m, Math.abs(v - b[k]!)), 0)).toBeLessThan(1e-5);
      }
    } finally {
      model.close();
    }
  });
});

describe("convert's fidelity report on onnxruntime", () => {
  it('reads the package it writes, reports what our engine reports, and its gate leaves nothing behind', async () => {
    const tmp = tempDir('mbane-ort-fid-');
    const report = async (runtime: string) => {
      const r = await cli(
        'convert',
        join(FX, 'tiny-mlm'),
        '--out',
        join(tmp, `${runtime}.mlpackage`),
        '--seq-len',
        '32',
        '--runtime',
        runtime,
        '--json',
      );
      expect(r.code, r.stderr).toBe(0);
      return (json(r) as { fidelity: { kl: number; top1: number; tokens: number } }).fidelity;
    };
    const [o, e] = [await report('ort'), await report('engine')];
    expect(o.tokens).toBe(e.tokens);
    expect(Math.abs(o.kl - e.kl) / e.kl).toBeLessThan(0.5);
    expect(Math.abs(o.top1 - e.top1)).toBeLessThan(0.05);
    const gated = await cli(
      'convert',
      join(FX, 'tiny-mlm'),
      '--out',
      join(tmp, 'gated.mlpackage'),
      '--seq-len',
      '32',
      '--runtime',
      'ort',
      '--max-kl',
      '0',
    );
    expect(gated.code).toBe(1);
    expect(readdirSync(tmp).sort()).toEqual(['engine.mlpackage', 'ort.mlpackage']);
    writeFileSync(join(tmp, 'unused'), ''); // the folder stays writable
  });
});
