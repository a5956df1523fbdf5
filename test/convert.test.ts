import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { convert } from '../src/convert/convert.js';
import type { ConvertOptions } from '../src/convert/convert-options.js';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { knownOps } from '../src/ops/index.js';
import { validateGraph } from '../src/ops/validate.js';
import { PackageRunner } from '../src/run/package-runner.js';
import { Engine } from '../src/run/engine.js';
import { ModernBertError } from '../src/errors.js';
import { readGolden } from '../src/eval/golden.js';
import { loadCheckpoint, type Checkpoint } from '../src/model/checkpoint.js';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { loadTokenizer } from '../src/tokenizer/tokenizer.js';
import { resolveInputs } from '../src/eval/inputs.js';

const FX = join(import.meta.dirname, 'fixtures');
const MINI = join(import.meta.dirname, '..', 'models', 'mini-trained');
const tmp = mkdtempSync(join(tmpdir(), 'mba-convert-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const dirOf = (name: string) => (name === 'mini-trained' ? MINI : join(FX, name));
const goldenOf = (name: string) => join(FX, name, 'golden.safetensors');

function options(out: string, over: ConvertOptions = {}): ConvertOptions {
  return { out, seqLens: [128], rotation: 'hadamard', tokenizer: false, maskInput: true, fidelity: false, ...over };
}

/** Max abs difference of two (1, V, 1, P) logits over all columns. */
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/** Runs every golden row that fits through the package and the checkpoint; returns the max logit difference. */
async function packageVsCheckpoint(
  pkgPath: string,
  ckpt: Checkpoint,
  golden: string,
  precision: 'fp32' | 'fp16' = 'fp32',
): Promise<number> {
  const runner = new PackageRunner(readMLPackage(pkgPath), pkgPath, precision);
  const engine = new Engine(ckpt);
  let worst = 0;
  for (const c of readGolden(golden)) {
    const [B, S] = c.inputIds.shape;
    if (S > runner.maxLen) continue;
    for (let b = 0; b < B; b++) {
      const ids = c.inputIds.data.subarray(b * S, (b + 1) * S);
      const att = c.attentionMask?.subarray(b * S, (b + 1) * S);
      const n = att ? att.reduce((s, v) => s + v, 0) : S;
      const seq = { ids: Array.from(ids.subarray(0, n)) };
      const positions = seq.ids.map((_, i) => i);
      const ours = (await runner.forward(seq, { positions })).outputs.get('logits')!;
      const ref = (await engine.forward(seq, { positions })).outputs.get('logits')!;
      worst = Math.max(worst, maxDiff(ours.data, ref.data));
    }
  }
  return worst;
}

describe('reference packages (written by coremltools) run in our interpreter', () => {
  for (const name of ['tiny-mlm-S32-norot', 'tiny-mlm-S32-rot', 'mini-trained-S64-rot']) {
    it(`${name}: float32 execution within 1e-3 of the reference interpreter, ours at least as close to the golden`, async () => {
      const dir = join(FX, 'coreml-reference', name);
      const io = SafetensorsFile.open(join(dir, 'io.safetensors'));
      const ids = io.readInt32('input_ids');
      const mask = io.readFloat32('mask');
      const expected = io.readFloat32('logits_fp32_exec');
      const golden = io.readFloat32('golden_logits');
      const n = io.readInt32('n_tokens')[0]!;
      io.close();
      const pkg = readMLPackage(join(dir, 'model.mlpackage'));
      const S = ids.length;
      const { Interpreter } = await import('../src/graph/interpreter.js');
      const out = await new Interpreter(pkg.graph, 'fp32').run({
        input_ids: { dtype: 'int32', shape: [1, S], data: ids },
        mask: { dtype: 'fp32', shape: [1, S, 1, S], data: mask },
      });
      const logits = out.get('logits')!;
      expect(maxDiff(logits.data, expected)).toBeLessThan(1e-3);

      // The same checkpoint converted by us, run on the same real tokens, against the float64 golden.
      const V = logits.shape[1]!;
      const goldenDiff = (data: ArrayLike<number>, P: number) => {
        let d = 0;
        for (let s = 0; s < n; s++)
          for (let v = 0; v < V; v++) d = Math.max(d, Math.abs(data[v * P + s]! - golden[s * V + v]!));
        return d;
      };
      const theirs = goldenDiff(logits.data, S);
      const ckpt = loadCheckpoint(dirOf(name.startsWith('mini') ? 'mini-trained' : 'tiny-mlm'));
      const out2 = join(tmp, `${name}-ours.mlpackage`);
      await convert(
        ckpt,
        options(out2, {
          seqLens: [S],
          rotation: name.endsWith('norot') ? 'none' : 'hadamard',
          fold: !name.endsWith('norot'),
        }),
      );
      const runner = new PackageRunner(readMLPackage(out2), out2, 'fp32');
      const ours = (await runner.forward({ ids: Array.from(ids.subarray(0, n)) })).outputs.get('logits')!;
      ckpt.close();
      expect(goldenDiff(ours.data, n)).toBeLessThanOrEqual(theirs * 1.05);
    });
  }
});

describe('round trip: convert, read back, run', () => {
  for (const name of ['tiny-mlm', 'tiny-mlm-bias', 'tiny-mlm-bf16', 'tiny-cls-mean', 'tiny-token', 'mini-trained']) {
    // Float16 weights: the plain model within 5e-3. Folded weights are products (W·diag(γ)·Q) that float16
    // rounds, where a bfloat16 checkpoint's own weights convert exactly: 8.4e-3 on mini-trained, so 1e-2.
    it(`${name}: float32 weights within 1e-4 of the checkpoint, float16 weights within 5e-3 (folded 1e-2)`, async () => {
      const ckpt = loadCheckpoint(dirOf(name));
      const golden = name === 'mini-trained' ? join(FX, 'mini-trained', 'golden.safetensors') : goldenOf(name);
      for (const fold of [false, true]) {
        const base = { fold, rotation: fold ? ('hadamard' as const) : ('none' as const) };
        const p32 = join(tmp, `${name}-${fold}-fp32.mlpackage`);
        await convert(ckpt, options(p32, { ...base, weights: 'fp32' }));
        expect(await packageVsCheckpoint(p32, ckpt, golden)).toBeLessThan(1e-4);
        const p16 = join(tmp, `${name}-${fold}-fp16.mlpackage`);
        await convert(ckpt, options(p16, base));
        expect(await packageVsCheckpoint(p16, ckpt, golden)).toBeLessThan(fold ? 1e-2 : 5e-3);
      }
      ckpt.close();
    });
  }

  it('padding read from the pad id gives the same logits as an explicit mask', async () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-cls-mean'));
    const a = join(tmp, 'ids-mask.mlpackage');
    await convert(ckpt, options(a, { maskInput: false, weights: 'fp32' }));
    const pkg = readMLPackage(a);
    expect(pkg.graph.inputs.map((v) => v.name)).toEqual(['input_ids']);
    // Mean pooling must ignore the padding the runner adds up to S = 128.
    expect(await packageVsCheckpoint(a, ckpt, goldenOf('tiny-cls-mean'))).toBeLessThan(1e-4);
    ckpt.close();
  });
});

describe('package structure', () => {
  it('enumerated lengths: one symbolic program that runs at each length', async () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    const out = join(tmp, 'enum.mlpackage');
    await convert(ckpt, options(out, { seqLens: [64, 16, 32], maskInput: false, weights: 'fp32' }));
    const pkg = readMLPackage(out);
    const ids = pkg.description.inputs.find((f) => f.name === 'input_ids')!;
    expect(ids.enumeratedShapes).toEqual([
      [1, 16],
      [1, 32],
      [1, 64],
    ]);
    expect(pkg.graph.inputs[0]!.type.shape[1]).toBeTypeOf('string');
    const runner = new PackageRunner(pkg, out, 'fp32');
    const engine = new Engine(ckpt);
    for (const n of [7, 16, 20, 50]) {
      const seq = { ids: Array.from({ length: n }, (_, i) => (i * 37 + 5) % 1000) };
      const positions = seq.ids.map((_, i) => i);
      const ours = (await runner.forward(seq, { positions })).outputs.get('logits')!;
      const ref = (await engine.forward(seq, { positions })).outputs.get('logits')!;
      expect(maxDiff(ours.data, ref.data)).toBeLessThan(1e-4);
    }
    await expect(runner.forward({ ids: new Array(65).fill(5) })).rejects.toThrow(/takes at most 64/);
    ckpt.close();
  });

  it('a mask input with several lengths needs iOS 18, and says so', async () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    await expect(convert(ckpt, options(join(tmp, 'm17.mlpackage'), { seqLens: [16, 32] }))).rejects.toThrow(
      ModernBertError,
    );
    await convert(ckpt, options(join(tmp, 'm18.mlpackage'), { seqLens: [16, 32], target: 'iOS18' }));
    expect(existsSync(join(tmp, 'm18.mlpackage', 'Manifest.json'))).toBe(true);
    ckpt.close();
  });

  it('every op of a converted model is a known MIL op that validates at iOS15..iOS18 (static lengths)', async () => {
    const ckpt = loadCheckpoint(MINI);
    const out = join(tmp, 'ops.mlpackage');
    await convert(ckpt, options(out, { seqLens: [32], target: 'iOS15' }));
    const pkg = readMLPackage(out);
    const known = new Set(knownOps());
    for (const op of pkg.graph.ops) expect(known.has(op.op), op.op).toBe(true);
    for (const t of ['iOS15', 'iOS16', 'iOS17', 'iOS18'] as const)
      expect(() => validateGraph(pkg.graph, t)).not.toThrow();
    ckpt.close();
  });

  it('metadata, tokenizer item and fidelity report', async () => {
    const ckpt = loadCheckpoint(MINI);
    const tok = await loadTokenizer(MINI);
    const c = ckpt.config;
    const texts = ['She opened the [MASK] and walked into the room.', 'The quick brown fox.'];
    const calibration = resolveInputs(
      { texts },
      { vocabSize: c.vocabSize, maxLen: 512, clsTokenId: c.clsTokenId, sepTokenId: c.sepTokenId, special: [] },
      tok,
    );
    const out = join(tmp, 'meta.mlpackage');
    const report = await convert(
      ckpt,
      options(out, {
        seqLens: [64],
        tokenizer: true,
        maskInput: false,
        calibration: texts,
        calibrationName: 'two texts',
        fidelity: 'fp16',
      }),
    );
    expect(report.fidelity!.tokens).toBe(calibration.reduce((s, q) => s + q.ids.length, 0));
    expect(report.fidelity!.kl).toBeLessThan(1e-4);
    expect(report.fidelity!.top1).toBeGreaterThan(0.9);
    const pkg = readMLPackage(out);
    const meta = pkg.description.metadata.userDefined!;
    expect(JSON.parse(meta.fidelity!).kl).toBeCloseTo(report.fidelity!.kl, 12);
    expect(JSON.parse(meta.special_token_ids!)).toEqual({
      pad: c.padTokenId,
      cls: c.clsTokenId,
      sep: c.sepTokenId,
      mask: 4095,
    });
    expect(meta.rotation).toBe('hadamard (seed 0)');
    const manifest = JSON.parse(readFileSync(join(out, 'Manifest.json'), 'utf8'));
    const paths = Object.values(manifest.itemInfoEntries).map((e) => (e as { path: string }).path);
    expect(paths).toContain('com.github.modernbert-ane/tokenizer');
    expect(readFileSync(join(out, 'Data', 'com.github.modernbert-ane', 'tokenizer', 'tokenizer.json'), 'utf8')).toBe(
      readFileSync(join(MINI, 'tokenizer.json'), 'utf8'),
    );
    ckpt.close();
  });

  it("the library call: every option optional, the command's defaults (length, tokenizer, fidelity), a Hub-style model named by its folder", async () => {
    const out = join(tmp, 'defaults.mlpackage');
    const report = await convert(join(FX, 'tiny-mlm'), { out });
    expect(report.seqLens).toEqual([512]);
    expect(report.weightForm).toEqual({ fold: true, rotation: 'none', norm: 'l2' });
    expect(report.fidelity!.precision).toBe('fp16');
    expect(existsSync(join(out, 'Data', 'com.github.modernbert-ane', 'tokenizer', 'tokenizer.json'))).toBe(true);
    const none = await convert(join(FX, 'tiny-mlm'), {
      out: join(tmp, 'no-tok.mlpackage'),
      tokenizer: false,
      fidelity: false,
      seqLens: 16,
    });
    expect(none.fidelity).toBeNull();
    expect(existsSync(join(tmp, 'no-tok.mlpackage', 'Data', 'com.github.modernbert-ane'))).toBe(false);
  });

  it("rotation 'learned' with nothing precomputed: learned on the calibration, reported and recorded", async () => {
    const out = join(tmp, 'learned.mlpackage');
    const report = await convert(join(FX, 'tiny-mlm'), { out, rotation: 'learned', learnSeconds: 1, seqLens: 32 });
    expect(report.learning).not.toBeNull();
    expect(['folded', 'hadamard', 'learned']).toContain(report.learning!.chosen);
    const meta = readMLPackage(out).description.metadata.userDefined!;
    expect(meta.rotation).toBe(`learned (seed 0, kept ${report.learning!.chosen})`);
    expect(JSON.parse(meta.rotation_learning!).chosen).toBe(report.learning!.chosen);
  }, 60_000);

  it('errors name the options, not the flags', async () => {
    const tiny = join(FX, 'tiny-mlm');
    await expect(convert(tiny, { fold: false, rotation: 'hadamard' })).rejects.toThrow(
      /^`fold: false` keeps the plain LayerNorm model and cannot be combined with `rotation: hadamard`$/,
    );
    await expect(convert(tiny, { seqLens: [16, 4096] })).rejects.toThrow(
      /`seqLens: 4096` is longer than the model allows/,
    );
    await expect(convert(tiny, { groupSize: 8 })).rejects.toThrow(
      /`groupSize`, `blockSize` and `keep` apply to `compress`/,
    );
    await expect(convert(tiny, { maxKl: 1, fidelity: false })).rejects.toThrow(/`maxKl` gates on the fidelity report/);
    await expect(convert(tiny, { functions: ['mlm'] })).rejects.toThrow(
      /needs specification version 9: give `target: iOS18`/,
    );
    await expect(convert(tiny, { target: 'iOS14' as 'iOS15' })).rejects.toThrow(/unknown deployment target "iOS14"/);
  });

  it('a failed conversion leaves nothing behind, and an existing package needs force', async () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    const out = join(tmp, 'fail.mlpackage');
    let reads = 0;
    const failing: Checkpoint = {
      ...ckpt,
      weights: {
        ...ckpt.weights,
        has: (n) => ckpt.weights.has(n),
        shape: (n) => ckpt.weights.shape(n),
        names: () => ckpt.weights.names(),
        get: (n) => {
          if (++reads > 10) throw new ModernBertError('CORRUPT_FILE', 'disk went away');
          return ckpt.weights.get(n);
        },
      },
    };
    await expect(convert(failing, options(out))).rejects.toThrow(/disk went away/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(tmp).filter((f) => f.includes('fail.mlpackage'))).toEqual([]);
    await convert(ckpt, options(out));
    await expect(convert(ckpt, options(out))).rejects.toThrow(/already exists/);
    await convert(ckpt, options(out, { force: true }));
    ckpt.close();
  });
});
