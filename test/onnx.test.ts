// ONNX export checked with onnxruntime itself: every fixture head and weight form, exported and run in
// onnxruntime-node, matches our interpreter running the same graph (float32, within 1e-5).

import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { exportGraph, exportOnnx, type ExportPlan } from '../src/convert/export-onnx.js';
import { Interpreter } from '../src/graph/interpreter.js';
import { loadCheckpoint, type Checkpoint } from '../src/model/checkpoint.js';
import { decodeOnnxModel } from '../src/onnx/schema.js';
import { ONNX_IR_VERSION, ONNX_OPSET } from '../src/onnx/lower.js';
import { readFileSync } from 'node:fs';
import { cli, expectOneLineError } from './helpers/cli.js';
import { sentenceTransformers } from './helpers/embedding.js';
import { cleanupTempDirs, FX, tempDir } from './helpers/fixtures.js';
import { expectError } from './helpers/run.js';
import { orthonormalizeRows } from './helpers/orthogonal.js';
import { resolveInputs } from '../src/eval/inputs.js';
import { learnRotation } from '../src/learn/learned.js';
import { DenseRotation } from '../src/rotation/dense-rotation.js';

afterAll(cleanupTempDirs);

type Form = Pick<ExportPlan, 'fold' | 'rotation' | 'norm'>;
const PLAIN: Form = { fold: false, rotation: 'none', norm: 'l2' };
const FOLDED: Form = { fold: true, rotation: 'none', norm: 'rms' };
const ROTATED: Form = { fold: true, rotation: 'hadamard', norm: 'l2' };

// Ids that avoid the pad id, the last 3 positions padding.
function inputs(S: number, V: number): { ids: Int32Array; att: Int32Array } {
  return {
    ids: Int32Array.from({ length: S }, (_, i) => 3 + ((i * 37) % (V - 3))),
    att: Int32Array.from({ length: S }, (_, i) => (i < S - 3 ? 1 : 0)),
  };
}

// Exports, runs the file in onnxruntime and the graph in our interpreter; returns the largest difference
// relative to the output's largest magnitude, after moving our (1, X, 1, S) to Hugging Face's (1, S, X).
async function compare(
  ckpt: Checkpoint,
  form: Form,
  S: number,
  extra: Partial<ExportPlan> = {},
): Promise<{ err: number; dims: readonly number[] }> {
  const out = join(tempDir('mbane-onnx-'), 'model.onnx');
  const o = { ...form, seed: 1, precision: 'fp32' as const, ...extra };
  await exportOnnx(ckpt, { ...o, out, force: false, externalData: false });
  const { graph } = exportGraph(ckpt, o);
  const { ids, att } = inputs(S, ckpt.config.vocabSize);
  const session = await ort.InferenceSession.create(out);
  const res = await session.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, S]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(att, BigInt), [1, S]),
  });
  const ours = (
    await new Interpreter(graph, 'fp32').run({
      input_ids: { dtype: 'int32', shape: [1, S], data: ids },
      attention_mask: { dtype: 'int32', shape: [1, S], data: att },
    })
  ).get(graph.outputs[0]!)!;
  const theirs = res[session.outputNames[0]!]!;
  const got = theirs.data as Float32Array;
  const want = ours.data as Float32Array;
  expect(got.length).toBe(want.length);
  const perToken = ours.shape.length === 4;
  const X = perToken ? ours.shape[1]! : 0;
  let err = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    const j = perToken ? (i % X) * S + Math.floor(i / X) : i; // (1, S, X) index i -> (1, X, 1, S)
    err = Math.max(err, Math.abs(got[i]! - want[j]!));
    scale = Math.max(scale, Math.abs(want[j]!));
  }
  return { err: err / Math.max(scale, 1), dims: theirs.dims };
}

describe('export-onnx matches our interpreter in onnxruntime', () => {
  const cases: [string, Form, string][] = [
    ['tiny-mlm', PLAIN, 'plain'],
    ['tiny-mlm', FOLDED, 'folded, x*x norm'],
    ['tiny-mlm', ROTATED, 'Hadamard-rotated, l2 norm'],
    ['tiny-cls-mean', PLAIN, 'plain'],
    ['tiny-cls-mean', ROTATED, 'rotated'],
    ['tiny-token', PLAIN, 'plain'],
    ['tiny-token', FOLDED, 'folded'],
  ];
  for (const [name, form, label] of cases) {
    it(`${name}, ${label}, any length`, async () => {
      const ckpt = loadCheckpoint(join(FX, name));
      try {
        for (const S of [5, 40]) {
          const { err, dims } = await compare(ckpt, form, S);
          expect(err, `S = ${S}`).toBeLessThan(1e-5);
          expect(dims[0]).toBe(1);
        }
      } finally {
        ckpt.close();
      }
    });
  }

  it('a static long length (banded local attention, chunked global attention) and the hidden-states head', async () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    try {
      const banded = await compare(ckpt, PLAIN, 100, { seqLen: 100, attentionChunk: 32 });
      expect(banded.err).toBeLessThan(1e-5);
      expect(banded.dims).toEqual([1, 100, ckpt.config.vocabSize]);
      const hidden = await compare(ckpt, ROTATED, 24, { head: 'none' });
      expect(hidden.err).toBeLessThan(1e-5);
      expect(hidden.dims).toEqual([1, 24, ckpt.config.hidden]);
    } finally {
      ckpt.close();
    }
  });

  it('a sentence-transformers embedding model, plain and rotated', async () => {
    const ckpt = loadCheckpoint(await sentenceTransformers('mean', true));
    try {
      for (const form of [PLAIN, ROTATED]) {
        const { err, dims } = await compare(ckpt, form, 20);
        expect(err).toBeLessThan(1e-5);
        expect(dims).toEqual([1, ckpt.config.hidden]);
      }
    } finally {
      ckpt.close();
    }
  });
});

describe('export-onnx --rotation learned', () => {
  it('a learned rotation (and any dense one) exported and run in onnxruntime matches our interpreter on the same weights', async () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    try {
      const c = ckpt.config;
      const ids = {
        vocabSize: c.vocabSize,
        maxLen: c.maxPositions,
        clsTokenId: c.clsTokenId,
        sepTokenId: c.sepTokenId,
        special: [c.padTokenId],
      };
      const calibration = [0, 1].map((seed) => resolveInputs({ random: 16, seed }, ids)[0]!);
      const learned = await learnRotation(ckpt, {
        seed: 1,
        calibration,
        norm: 'l2',
        precision: 'fp16',
        maxSteps: 4,
        budgetSeconds: 30,
      });
      // A random orthogonal Q as well, so that a dense rotation is checked whichever candidate learning keeps.
      const n = c.hidden;
      const q = orthonormalizeRows(
        Float64Array.from({ length: n * n }, (_, i) => (Math.sin(i * 12.9898) * 43758.5453) % 1),
        n,
      );
      for (const rotation of [learned.rotation, new DenseRotation(n, q)]) {
        const { err } = await compare(ckpt, { fold: true, rotation: 'learned', norm: 'l2' }, 40, { learned: rotation });
        expect(err).toBeLessThan(1e-5);
      }
    } finally {
      ckpt.close();
    }
  });

  it('the CLI learns the rotation as convert does and records it', async () => {
    const out = join(tempDir('mbane-onnx-'), 'learned.onnx');
    const r = await cli(
      'export-onnx',
      join(FX, 'tiny-mlm'),
      '--out',
      out,
      '--fold',
      '--rotation',
      'learned',
      '--random',
      '12',
      '--learn-seconds',
      '1',
      '--json',
    );
    expect(r.code, r.stderr).toBe(0);
    const m = decodeOnnxModel(readFileSync(out), out);
    expect(Object.fromEntries(m.metadata_props!.map((e) => [e.key, e.value]))).toMatchObject({
      weight_form: 'learned',
    });
    expectOneLineError(
      await cli(
        'export-onnx',
        join(FX, 'tiny-mlm'),
        '--out',
        join(tempDir('mbane-onnx-'), 'x.onnx'),
        '--rotation',
        'learned',
      ),
      /--fold/,
    );
  });
});

describe('export-onnx files', () => {
  it('records opset 17, IR 8 and the model in its metadata; float16 stays close to float32', async () => {
    const dir = tempDir('mbane-onnx-');
    const [f32, f16] = [join(dir, 'a.onnx'), join(dir, 'b.onnx')];
    expect((await cli('export-onnx', join(FX, 'tiny-mlm'), '--out', f32)).code).toBe(0);
    const r = await cli('export-onnx', join(FX, 'tiny-mlm'), '--out', f16, '--precision', 'fp16', '--json');
    expect(r.code, r.stderr).toBe(0);
    const m = decodeOnnxModel(readFileSync(f16), f16);
    expect(m.ir_version).toBe(ONNX_IR_VERSION);
    expect(m.opset_import).toEqual([{ domain: '', version: ONNX_OPSET }]);
    expect(Object.fromEntries(m.metadata_props!.map((e) => [e.key, e.value]))).toMatchObject({
      head: 'mlm',
      precision: 'fp16',
      weight_form: 'folded',
    });
    // float16 weights: a FLOAT16 (10) initializer for every matrix.
    expect(m.graph.initializer.some((t) => t.data_type === 10 && t.dims.length === 4)).toBe(true);
    const S = 12;
    const feeds = {
      input_ids: new ort.Tensor(
        'int64',
        BigInt64Array.from({ length: S }, (_, i) => BigInt(5 + i)),
        [1, S],
      ),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(S).fill(1n), [1, S]),
    };
    const [a, b] = await Promise.all(
      [f32, f16].map(
        async (f) => (await (await ort.InferenceSession.create(f)).run(feeds)).logits!.data as Float32Array,
      ),
    );
    let err = 0;
    for (let i = 0; i < a!.length; i++) err = Math.max(err, Math.abs(a![i]! - b![i]!));
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(0.05);
  });

  it('external data: refused past the one-file limit without it, written beside the model with it', async () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    const dir = tempDir('mbane-onnx-');
    try {
      const o = { ...PLAIN, seed: 0, precision: 'fp32' as const, force: false, maxInlineBytes: 100_000 };
      const e = await expectError(
        () => exportOnnx(ckpt, { ...o, out: join(dir, 'big.onnx'), externalData: false }),
        'BAD_ARGUMENT',
      );
      expect(e.message).toMatch(/--external-data/);
      expect(readdirSync(dir)).toEqual([]);
      const r = await exportOnnx(ckpt, { ...o, out: join(dir, 'big.onnx'), externalData: true });
      expect(r.data).toBe(join(dir, 'big.onnx.data'));
      expect(existsSync(r.data!)).toBe(true);
      const m = decodeOnnxModel(readFileSync(r.out), r.out);
      expect(m.graph.initializer.filter((t) => t.data_location === 1).length).toBeGreaterThan(5);
      const S = 8;
      const s = await ort.InferenceSession.create(r.out);
      const res = await s.run({
        input_ids: new ort.Tensor(
          'int64',
          BigInt64Array.from({ length: S }, (_, i) => BigInt(7 + i)),
          [1, S],
        ),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(S).fill(1n), [1, S]),
      });
      expect(res.logits!.dims).toEqual([1, S, ckpt.config.vocabSize]);
    } finally {
      ckpt.close();
    }
  });

  it('bad output paths are one-line errors (exit 2) that leave nothing behind', async () => {
    const dir = tempDir('mbane-onnx-');
    expectOneLineError(
      await cli('export-onnx', join(FX, 'tiny-mlm'), '--out', join(dir, 'missing', 'm.onnx')),
      /does not exist/,
    );
    writeFileSync(join(dir, 'taken.onnx'), 'x');
    expectOneLineError(
      await cli('export-onnx', join(FX, 'tiny-mlm'), '--out', join(dir, 'taken.onnx')),
      /already exists/,
    );
    expectOneLineError(await cli('export-onnx', join(FX, 'tiny-mlm'), '--out', dir), /is a folder/);
    expectOneLineError(
      await cli('export-onnx', join(FX, 'tiny-mlm'), '--out', join(dir, 'r.onnx'), '--rotation', 'hadamard'),
      /--fold/,
    );
    expect(readdirSync(dir)).toEqual(['taken.onnx']);
  });
});
