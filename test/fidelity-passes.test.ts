// How convert's fidelity report runs its passes (docs/PERFORMANCE.md, "The report's passes side by side"):
// the float32 reference pass in a worker thread beside the conversion (eval/reference-thread.ts), giving
// exactly what the pass gives in-process; measureFidelity taking that run instead of making its own;
// onnxruntime sessions that run once or twice left unoptimised (run/ort-executor.ts); and the WebAssembly
// sums of exponentials behind KL (runtime/kernels/exp-sums.ts).

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as OrtModule from 'onnxruntime-common';
import { describe, expect, it } from 'vitest';
import { ModernBertError } from '../src/errors.js';
import { measureFidelity, runReference, type FidelityForm, type ReferenceRun } from '../src/eval/fidelity.js';
import type { ProbeSequence } from '../src/eval/inputs.js';
import { startReferenceThread } from '../src/eval/reference-thread.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { buildModel } from '../src/model/model.js';
import { lowerGraph } from '../src/onnx/lower.js';
import { prepareVariant } from '../src/model/variants.js';
import { loadOrt, OrtExecutor, ortSessionOptions } from '../src/run/ort-executor.js';
import { chooseRuntime, executorFor } from '../src/run/runtime-choice.js';
import { columnMaxima, expSums } from '../src/runtime/kernels/exp-sums.js';
import { splitmix32 } from '../src/numeric/prng.js';
import { Interpreter } from '../src/graph/interpreter.js';
import type { ExecutorFactory } from '../src/run/runner.js';
import { FX, ROOT } from './helpers/fixtures.js';

const DIR = join(FX, 'tiny-mlm');
const ort = (await loadOrt())!;

/** Calibration-like sequences of tiny-mlm's ids: packed by the report into two windows. */
function sequences(): ProbeSequence[] {
  const next = splitmix32(7);
  return [5, 12, 300, 9, 400].map((n, k) => ({
    ids: [1001, ...Array.from({ length: n }, () => 3 + (next() % 900)), 1002],
    label: `text ${k}`,
  }));
}

/** The module as built into dist/ (npm test builds first): only there does the worker's script exist. */
async function fromDist<T>(path: string): Promise<T> {
  return (await import(pathToFileURL(join(ROOT, 'dist', path)).href)) as T;
}

describe('the reference pass in a worker thread', () => {
  const form: FidelityForm = { head: 'mlm' };

  it("gives the in-process pass's vectors and maxima bit for bit", async () => {
    const thread = await fromDist<{ startReferenceThread: typeof startReferenceThread }>('eval/reference-thread.js');
    const started = thread.startReferenceThread(DIR, sequences(), form);
    expect(started).toBeDefined();
    const inWorker = (await started!.run)!;
    expect(inWorker).toBeDefined();
    const ckpt = loadCheckpoint(DIR);
    const here = await runReference(ckpt, sequences(), form, executorFor(await chooseRuntime({ runtime: 'ort' })));
    ckpt.close();
    expect(inWorker.outputs.length).toBe(here.outputs.length);
    expect(inWorker.outputs.length).toBeGreaterThan(1); // two windows of packed texts
    inWorker.outputs.forEach((o, i) => {
      const { data, ...shape } = here.outputs[i]!;
      expect(o).toMatchObject(shape);
      expect(Array.from(o.data)).toEqual(Array.from(data));
    });
    expect(inWorker.maxima).toEqual(here.maxima);
  });

  it("rejects with the worker's own error, code and message kept", async () => {
    const thread = await fromDist<{ startReferenceThread: typeof startReferenceThread }>('eval/reference-thread.js');
    const started = thread.startReferenceThread(join(FX, 'no-such-model'), sequences(), form)!;
    const err = (await started.run.catch((e: unknown) => e)) as ModernBertError;
    expect(err.name).toBe('ModernBertError');
    expect(err.code).toBe('FILE_NOT_FOUND');
    expect(err.message).toMatch(/no-such-model/);
  });

  it('gives undefined when the thread itself fails (here: stopped before it answers), for the caller to run the pass', async () => {
    const thread = await fromDist<{ startReferenceThread: typeof startReferenceThread }>('eval/reference-thread.js');
    const started = thread.startReferenceThread(DIR, sequences(), form)!;
    started.stop();
    expect(await started.run).toBeUndefined();
  });

  it('is not started from the TypeScript sources, where no worker script lies: the caller runs the pass', () => {
    expect(startReferenceThread(DIR, sequences(), form)).toBeUndefined();
  });
});

describe('measureFidelity with a reference run made beforehand', () => {
  it('reports what it reports when it runs the reference itself, and refuses a run of other passes', async () => {
    const ckpt = loadCheckpoint(DIR);
    try {
      const variant = prepareVariant(ckpt, { fold: true, rotation: 'hadamard', norm: 'l2', seed: 0 });
      const converted = { source: variant.source, norm: variant.norm };
      const seqs = sequences();
      const own = await measureFidelity(ckpt, converted, seqs, 'fp16', 'test texts');
      const run = runReference(ckpt, seqs, {});
      const given = await measureFidelity(ckpt, converted, seqs, 'fp16', 'test texts', undefined, {}, undefined, run);
      expect(given).toEqual(own);
      // A thread that failed gives no run: the reference runs here, as without one.
      const none = Promise.resolve(undefined);
      expect(
        await measureFidelity(ckpt, converted, seqs, 'fp16', 'test texts', undefined, {}, undefined, none),
      ).toEqual(own);
      const short: Promise<ReferenceRun> = run.then((r) => ({ ...r, outputs: r.outputs.slice(1) }));
      const err = (await measureFidelity(ckpt, converted, seqs, 'fp16', 't', undefined, {}, undefined, short).catch(
        (e: unknown) => e,
      )) as ModernBertError;
      expect(err.code).toBe('INTERNAL');
    } finally {
      ckpt.close();
    }
  });
});

describe("the report's packed windows", () => {
  it('run their texts only, not the padding to the window: every pass at the length of what it holds', async () => {
    const ckpt = loadCheckpoint(DIR);
    try {
      const lengths = new Set<number>();
      const recording: ExecutorFactory = (graph, precision) => {
        const ids = graph.inputs.find((i) => i.name === 'input_ids')!;
        lengths.add(Number(ids.type.shape.at(-1)));
        return new Interpreter(graph, precision);
      };
      const variant = prepareVariant(ckpt, { fold: true, rotation: 'hadamard', norm: 'l2', seed: 0 });
      const seqs = sequences();
      await measureFidelity(
        ckpt,
        { source: variant.source, norm: variant.norm },
        seqs,
        'fp16',
        't',
        undefined,
        {},
        recording,
      );
      // Two windows of 512: the 402-token text with the 14, 11 and 7 (434), and the 302 alone.
      expect([...lengths].sort((a, b) => a - b)).toEqual([302, 434]);
      expect(seqs.map((s) => s.ids.length).reduce((a, b) => a + b, 0)).toBe(302 + 434);
    } finally {
      ckpt.close();
    }
  });
});

describe('onnxruntime sessions that run once or twice', () => {
  it('are made without graph optimisation, and compute the float16 emulation exactly as optimised ones', async () => {
    const ckpt = loadCheckpoint(DIR);
    const g = buildModel(ckpt, { seqLen: 8, maskFrom: 'attention', head: 'mlm' });
    const levels: (string | undefined)[] = [];
    // onnxruntime itself, with the options of each session noted.
    const spy = {
      ...ort,
      InferenceSession: {
        create: (bytes: Uint8Array, o: OrtModule.InferenceSession.SessionOptions) => {
          levels.push(o.graphOptimizationLevel);
          return ort.InferenceSession.create(bytes, o);
        },
      },
    } as unknown as typeof ort;
    const inputs = {
      input_ids: { dtype: 'int32' as const, shape: [1, 8], data: Int32Array.from([1001, 5, 17, 300, 44, 9, 12, 1002]) },
      attention_mask: { dtype: 'int32' as const, shape: [1, 8], data: new Int32Array(8).fill(1) },
    };
    const once = await new OrtExecutor(g, spy, 'cpu', 'fp16', { runs: 1 }).run(inputs);
    const many = await new OrtExecutor(g, spy, 'cpu', 'fp16').run(inputs);
    ckpt.close();
    expect(levels).toEqual(['disabled', 'all']);
    expect(Array.from(once.get('logits')!.data)).toEqual(Array.from(many.get('logits')!.data));
    expect(ortSessionOptions('cpu', { fewRuns: true })).toMatchObject({
      graphOptimizationLevel: 'disabled',
      enableCpuMemArena: false,
    });
    expect(ortSessionOptions('cpu')).toMatchObject({ graphOptimizationLevel: 'all' });
    expect(ortSessionOptions('cpu').enableCpuMemArena).toBeUndefined();
  });

  it("are lowered with products in the graph's own layout (W @ x, no transpose), but for the tall vocabulary projection", () => {
    const ckpt = loadCheckpoint(DIR);
    const g = buildModel(ckpt, { seqLen: 8, maskFrom: 'attention', head: 'mlm' });
    ckpt.close();
    const fromTranspose = (channelsFirst: boolean) => {
      const { nodes } = lowerGraph(g, {
        io: 'ane',
        float32: true,
        storedLayout: true,
        precision: 'fp16',
        channelsFirst,
      });
      const producer = new Map(nodes.flatMap((n) => n.output.map((o) => [o, n] as const)));
      const products = nodes.filter(
        (n) => n.op_type === 'MatMul' && /_(qkv|attn_out|mlp_in|mlp_out)__|^decoder__/.test(n.name),
      );
      return products.map((n) => [n.name, n.input.some((i) => producer.get(i)?.op_type === 'Transpose')]);
    };
    const [own, moved] = [fromTranspose(true), fromTranspose(false)];
    expect(own.length).toBe(4 * ckpt.config.numLayers + 1);
    for (const [name, transposed] of own) expect(transposed, String(name)).toBe(String(name).startsWith('decoder'));
    expect(moved.every(([, transposed]) => transposed)).toBe(true);
  });
});

describe('sums of exponentials (WebAssembly)', () => {
  /** The three sums of column p of (V, P) x and y, directly. */
  const direct = (x: Float32Array, y: Float32Array, V: number, P: number, p: number, mx: number, my: number) => {
    let [sx, sy, sxy] = [0, 0, 0];
    for (let v = 0; v < V; v++) {
      const [a, b] = [x[v * P + p]!, y[v * P + p]!];
      const e = Math.exp(a - mx);
      sx += e;
      sy += Math.exp(b - my);
      sxy += e * (a - b);
    }
    return [sx, sy, sxy];
  };
  const column = (x: Float32Array, V: number, P: number, p: number) =>
    Array.from({ length: V }, (_, v) => x[v * P + p]!);

  it('equal the direct sums per column to double precision: odd and even column counts, every column or some', () => {
    const next = splitmix32(3);
    for (const [V, P, cols] of [
      [1, 1, [0]],
      [7, 2, [0, 1]],
      [64, 3, [0, 1, 2]],
      [5003, 9, [8, 0, 3]],
      [50_368, 4, [0, 1, 2, 3]],
    ] as const) {
      const x = Float32Array.from({ length: V * P }, () => ((next() / 2 ** 32) * 2 - 1) * 40);
      const y = x.map((a) => a + ((next() / 2 ** 32) * 2 - 1) * 1e-2);
      if (V > 7) [x[P], y[2 * P]] = [-700, -1e6]; // far below the largest: nothing, not NaN
      const at = Int32Array.from(cols);
      const mx = Float64Array.from(cols, (p) => Math.max(...column(x, V, P, p)));
      const my = Float64Array.from(cols, (p) => Math.max(...column(y, V, P, p)));
      const got = expSums(x, y, V, P, at, mx, my);
      cols.forEach((p, k) => {
        const [sx, sy, sxy] = direct(x, y, V, P, p, mx[k]!, my[k]!);
        const n = cols.length;
        expect(Math.abs(got[k]! / sx - 1), `V ${V} column ${p}`).toBeLessThan(1e-13);
        expect(Math.abs(got[n + k]! / sy - 1), `V ${V} column ${p}`).toBeLessThan(1e-13);
        expect(Math.abs(got[2 * n + k]! - sxy), `V ${V} column ${p}`).toBeLessThan(1e-13 * sx);
      });
    }
  });

  it('each exponential to within 1e-15 of Math.exp', () => {
    for (const t of [0, -1e-9, -0.3, -0.35, -1, -2.5, -10, -50.5, -300, -699]) {
      const [sum] = expSums(
        Float32Array.of(t),
        Float32Array.of(0),
        1,
        1,
        Int32Array.of(0),
        Float64Array.of(0),
        Float64Array.of(0),
      );
      expect(Math.abs(sum! / Math.exp(Math.fround(t)) - 1), `exp(${t})`).toBeLessThan(1e-15);
    }
  });

  it("column maxima: each side's largest value and the largest |difference|, not finite where a side is not", () => {
    // (4, 3): column 1 holds an infinity on one side, column 2 a NaN; an odd count of columns, one of them skipped.
    const x = Float32Array.of(1, 2, 3, -5, Infinity, 0, 4, 0, 1, 2, 2, Number.NaN);
    const y = Float32Array.of(1.5, 2, 3, -4, 1, 0, 3, 0, 7, 2.25, 2, 0);
    const m = columnMaxima(x, y, 4, 3, Int32Array.of(0, 1, 2));
    expect(Array.from(m.maxX.subarray(0, 1))).toEqual([4]);
    expect(Array.from(m.maxY.subarray(0, 1))).toEqual([3]);
    expect(m.maxAbs[0]).toBe(1);
    expect(m.maxAbs[1]).toBe(Infinity);
    expect(m.maxAbs[2]).toBeNaN();
    const two = columnMaxima(x, y, 4, 3, Int32Array.of(2, 0));
    expect(two.maxAbs[0]).toBeNaN();
    expect(Array.from(two.maxX.subarray(1))).toEqual([4]);
  });

  it('carry NaN through to their own column only', () => {
    const x = Float32Array.of(Number.NaN, 0, 1, 2);
    const got = expSums(
      x,
      new Float32Array(4),
      2,
      2,
      Int32Array.of(0, 1),
      Float64Array.of(1, 2),
      Float64Array.of(0, 0),
    );
    expect(got[0]).toBeNaN();
    expect(got[1]).toBeCloseTo(Math.exp(-2) + 1, 14);
  });
});
