// Sequence packing (issue 9 part 3): a window holding several texts, told apart by segment ids, gives each
// text what a run of that text alone gives, for every head, banded and chunked attention, and packages.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.js';
import { convert } from '../src/convert/convert.js';
import type { ConvertOptions } from '../src/convert/convert-options.js';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { Engine } from '../src/run/engine.js';
import type { Sequence } from '../src/run/runner.js';
import { Interpreter } from '../src/graph/interpreter.js';
import { loadCheckpoint, type Checkpoint } from '../src/model/checkpoint.js';
import { buildModel } from '../src/model/model.js';
import { type OutputHead } from '../src/model/options.js';
import { checkPack } from '../src/model/packing.js';
import { packBlocks } from '../src/model/pack-texts.js';
import { PackageRunner } from '../src/run/package-runner.js';
import type { Precision } from '../src/runtime/numerics.js';
import type { RtTensor } from '../src/runtime/tensor.js';
import { synthIds } from '../src/numeric/prng.js';
import { SynthWeights } from '../src/synth/synth.js';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import { sentenceTransformers } from './helpers/embedding.js';
import { cleanupTempDirs, copyFixture, FX, readFixtureJson, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

/** Texts of the given lengths: [CLS] then ids from the fixtures' PRNG. */
function texts(lengths: number[], cls: number, vocab: number): number[][] {
  return lengths.map((n, t) => [cls, ...synthIds(n - 1, `pack-${t}`, 5, vocab - 1)]);
}

/** Texts packed one after another into a window of S tokens, the rest padding (segment 0). */
function packWindow(parts: number[][], S: number, pad: number): Sequence & { starts: number[] } {
  const ids = new Array<number>(S).fill(pad);
  const segments = new Array<number>(S).fill(0);
  const starts: number[] = [];
  let at = 0;
  parts.forEach((p, k) => {
    starts.push(at);
    p.forEach((id, j) => ((ids[at + j] = id), (segments[at + j] = k + 1)));
    at += p.length;
  });
  return { ids, segments, starts };
}

/** Columns [lo, lo + n) of a (1, N, 1, S) tensor, as rows of N. */
function cols(t: RtTensor, lo: number, n: number): number[][] {
  const [N, S] = [t.shape[1]!, t.shape[3]!];
  return Array.from({ length: n }, (_, j) => Array.from({ length: N }, (_, c) => t.data[c * S + lo + j]!));
}

/** Row k of a (1, K, N) tensor. */
const row = (t: RtTensor, k: number): number[] => Array.from(t.data.subarray(k * t.shape[2]!, (k + 1) * t.shape[2]!));

function maxDiff(a: number[][] | number[], b: number[][] | number[]): number {
  const fa = a.flat();
  const fb = b.flat();
  expect(fa.length).toBe(fb.length);
  return fa.reduce((m, v, i) => Math.max(m, Math.abs(v - fb[i]!)), 0);
}

interface Runner {
  forward: Engine['forward'];
}

/**
 * Runs `parts` packed into one window and each alone; returns the largest difference between the packed
 * output of each text and its own (pooled heads: row k; per-token heads: its columns).
 */
async function packedVsAlone(
  packed: Runner,
  alone: Runner,
  parts: number[][],
  S: number,
  pad: number,
  head: OutputHead,
  K: number,
): Promise<number> {
  const w = packWindow(parts, S, pad);
  const out = (await packed.forward(w, { head, pack: K })).outputs;
  const name = [...out.keys()][0]!;
  const t = out.get(name)!;
  let worst = 0;
  for (const [k, p] of parts.entries()) {
    const own = (await alone.forward({ ids: p }, { head })).outputs.get(name)!;
    if (t.shape.length === 3) {
      expect(t.shape).toEqual([1, K, own.shape[1]]);
      worst = Math.max(worst, maxDiff(row(t, k), Array.from(own.data)));
    } else {
      worst = Math.max(worst, maxDiff(cols(t, w.starts[k]!, p.length), cols(own, 0, p.length)));
    }
  }
  return worst;
}

const TINY: [string, OutputHead, (c: Record<string, unknown>) => Record<string, unknown>][] = [
  ['tiny-mlm', 'mlm', (c) => c],
  ['tiny-token', 'tokcls', (c) => c],
  ['tiny-cls-mean', 'seqcls', (c) => c],
  ['tiny-cls-mean', 'seqcls', (c) => ({ ...c, classifier_pooling: 'cls' })],
];

describe('a packed window equals each text run alone (float32, within 1e-4)', () => {
  // Window 16 in the tiny fixtures: texts of 11 to 23 tokens run their local layers banded.
  const lengths = [23, 11, 17, 5];
  const S = 64;
  for (const [name, head, edit] of TINY) {
    it(`${name} (${head}${head === 'seqcls' ? `, ${String(edit(readFixtureJson(name)).classifier_pooling)} pooling` : ''}), banded local layers, one absent text`, async () => {
      const ckpt = loadCheckpoint(copyFixture(name, edit));
      try {
        const engine = new Engine(ckpt);
        const parts = texts(lengths, ckpt.config.clsTokenId, ckpt.config.vocabSize);
        expect(await packedVsAlone(engine, engine, parts, S, ckpt.config.padTokenId, head, 5)).toBeLessThan(1e-4);
      } finally {
        ckpt.close();
      }
    });
  }

  for (const [pooling, normalize] of [
    ['mean', false],
    ['cls', false],
    ['mean', true],
  ] as const) {
    it(`sentence-transformers embedding (${pooling}${normalize ? ', normalized' : ''})`, async () => {
      const ckpt = loadCheckpoint(await sentenceTransformers(pooling, normalize));
      try {
        const engine = new Engine(ckpt);
        const parts = texts(lengths, ckpt.config.clsTokenId, ckpt.config.vocabSize);
        expect(await packedVsAlone(engine, engine, parts, S, ckpt.config.padTokenId, 'embedding', 4)).toBeLessThan(
          1e-4,
        );
      } finally {
        ckpt.close();
      }
    });
  }

  it('synth-tiny-long: window 128 smaller than the texts, global attention in chunks of 64', async () => {
    const golden = readFixtureJson('synth-tiny-long', 'golden.json') as { config: Record<string, unknown> };
    const config = parseConfig({ architectures: ['ModernBertForMaskedLM'], ...golden.config }, 'synth-tiny-long');
    const engine = new Engine({ config, weights: new SynthWeights(config) }, { attentionChunk: 64 });
    const parts = texts([150, 97, 40], config.clsTokenId, config.vocabSize);
    expect(await packedVsAlone(engine, engine, parts, 320, config.padTokenId, 'none', 3)).toBeLessThan(1e-4);
  }, 30_000);
});

describe('packed in blocks: each text within one block, every layer attending within its block', () => {
  // tiny fixtures: local window 16. Blocks of 8 (every pair of a text within the window) and of 16 (local
  // layers also mask the pairs more than 8 apart: texts of 9 to 16 tokens have some), 4 blocks a window.
  const cases = [
    { B: 8, lengths: [8, 3, 5, 2, 6, 4] },
    { B: 16, lengths: [16, 12, 9, 5, 3, 14, 2] },
  ];
  async function blocksVsAlone(engine: Engine, parts: number[][], pad: number, head: OutputHead, B: number) {
    let worst = 0;
    for (const w of packBlocks(parts, 4 * B, B, 8, pad)) {
      const out = (await engine.forward(w, { head, pack: 8, packBlocks: B })).outputs;
      const [name, t] = [...out.entries()][0]!;
      for (const [k, i] of w.texts.entries()) {
        const own = (await engine.forward({ ids: parts[i]! }, { head })).outputs.get(name)!;
        const got = t.shape.length === 3 ? row(t, k) : cols(t, w.starts[k]!, parts[i]!.length);
        worst = Math.max(
          worst,
          maxDiff(got, t.shape.length === 3 ? Array.from(own.data) : cols(own, 0, parts[i]!.length)),
        );
      }
    }
    return worst;
  }
  for (const { B, lengths } of cases) {
    for (const [name, head, edit] of TINY) {
      it(`${name} (${head}), blocks of ${B}: each text as it runs alone, within 1e-4`, async () => {
        const ckpt = loadCheckpoint(copyFixture(name, edit));
        try {
          const parts = texts(lengths, ckpt.config.clsTokenId, ckpt.config.vocabSize);
          expect(await blocksVsAlone(new Engine(ckpt), parts, ckpt.config.padTokenId, head, B)).toBeLessThan(1e-4);
        } finally {
          ckpt.close();
        }
      });
    }
    it(`sentence-transformers embedding, blocks of ${B}: each text as it runs alone, within 1e-4`, async () => {
      const ckpt = loadCheckpoint(await sentenceTransformers('mean', true));
      try {
        const parts = texts(lengths, ckpt.config.clsTokenId, ckpt.config.vocabSize);
        expect(await blocksVsAlone(new Engine(ckpt), parts, ckpt.config.padTokenId, 'embedding', B)).toBeLessThan(1e-4);
      } finally {
        ckpt.close();
      }
    });
  }

  it('refuses packBlocks without pack, a block size other than half or all the local window, and a length that is not whole blocks', () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    try {
      expect(() => buildModel(ckpt, { seqLen: 32, maskFrom: 'attention', packBlocks: 8 })).toThrow(
        /`packBlocks` goes with `pack`/,
      );
      expect(() => buildModel(ckpt, { seqLen: 30, pack: 4, packBlocks: 8 })).toThrow(
        /packed blocks are 8 or 16 tokens, in a length that is a multiple of them \(not 8 in 30\)/,
      );
      expect(() => buildModel(ckpt, { seqLen: 48, pack: 4, packBlocks: 12 })).toThrow(/not 12 in 48/);
    } finally {
      ckpt.close();
    }
  });
});

describe('the packed graph', () => {
  it('adds segment_ids, no mask input, and no constant that grows with S squared', () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    try {
      const g = buildModel(ckpt, { seqLen: 512, pack: 8, head: 'embedding' });
      expect(g.inputs.map((i) => [i.name, i.type.dtype, i.type.shape])).toEqual([
        ['input_ids', 'int32', [1, 512]],
        ['segment_ids', 'int32', [1, 512]],
      ]);
      expect(g.ops.map((o) => o.op)).toContain('reduce_min');
      for (const [name, c] of g.consts)
        expect(
          c.type.shape.reduce<number>((p, d) => p * Number(d), 1),
          name,
        ).toBeLessThan(512 * 512);
    } finally {
      ckpt.close();
    }
  });

  it('restarts rotary positions at 0 in every text (padding keeps its own), and finds each text start', async () => {
    // RoPE scores depend on relative positions only, so outputs cannot show this: read the graph's values.
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    try {
      const g = buildModel(ckpt, { seqLen: 12, pack: 4, head: 'embedding' });
      const w = packWindow(
        [
          [1, 2, 3],
          [4, 5],
          [6, 7, 8, 9],
        ],
        12,
        ckpt.config.padTokenId,
      );
      const out = await new Interpreter(g).run(Engine.inputs(w, true), { keep: ['pack_positions', 'pack_starts'] });
      expect(Array.from(out.get('pack_positions')!.data)).toEqual([0, 1, 2, 0, 1, 0, 1, 2, 3, 9, 10, 11]);
      expect(Array.from(out.get('pack_starts')!.data)).toEqual([0, 3, 5, 11]); // the absent fourth text: S - 1
    } finally {
      ckpt.close();
    }
  });

  it('kernels produce exactly the types that inference declares, in every pooled head and the banded layers', async () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-cls-mean'));
    try {
      for (const head of ['seqcls', 'embedding'] as const) {
        const g = buildModel(ckpt, { seqLen: 40, pack: 3, head, dtype: 'fp16' });
        const w = packWindow(texts([20, 9], ckpt.config.clsTokenId, ckpt.config.vocabSize), 40, ckpt.config.padTokenId);
        const keep = g.ops.flatMap((op) => op.outputs.map((v) => v.name));
        const out = await new Interpreter(g, 'fp16').run(Engine.inputs(w, true), { keep });
        for (const op of g.ops)
          for (const v of op.outputs)
            expect([out.get(v.name)!.dtype, out.get(v.name)!.shape], `${op.op} ${v.name}`).toEqual([
              v.type.dtype,
              v.type.shape,
            ]);
      }
    } finally {
      ckpt.close();
    }
  });

  it('refuses enumerated lengths, a mask input and a K outside 1..S, with one-line errors', () => {
    const ckpt = loadCheckpoint(join(FX, 'tiny-mlm'));
    try {
      expect(() => buildModel(ckpt, { seqLen: [16, 32], pack: 2 })).toThrow(/packing needs one sequence length/);
      expect(() => buildModel(ckpt, { seqLen: 16, pack: 2, maskFrom: 'input' })).toThrow(
        /`pack` cannot be combined with `maskInput`/,
      );
      expect(() => buildModel(ckpt, { seqLen: 16, pack: 17 })).toThrow(/`pack: 17` does not fit: give 1\.\.16/);
      expect(() => checkPack(2049, 4096, undefined)).toThrow(
        /`pack: 2049` does not fit: give 1\.\.2048 texts per window of 4096/,
      );
    } finally {
      ckpt.close();
    }
  });
});

describe('convert --pack with the body-and-heads layouts', () => {
  it('--split: refused with one line, exit 2, no package', async () => {
    const out = join(tempDir('mbane-pack-heads-'), 'p.mlpackage');
    expectOneLineError(
      await cli(
        'convert',
        join(FX, 'tiny-mlm'),
        '--out',
        out,
        '--pack',
        '2',
        '--seq-len',
        '16',
        '--split',
        '--no-fidelity',
      ),
      /--pack cannot yet be combined with --split/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('--functions: every function is packed, and runs as the one-head packed package does', async () => {
    const dir = tempDir('mbane-pack-fn-');
    const common = [
      '--pack',
      '2',
      '--seq-len',
      '16',
      '--target',
      'iOS18',
      '--weights',
      'fp32',
      '--no-fidelity',
      '--tokenizer',
    ];
    const one = await cli('convert', join(FX, 'tiny-mlm'), '--out', join(dir, 'one.mlpackage'), ...common);
    expect(one.code, one.stderr).toBe(0);
    const multi = await cli(
      'convert',
      join(FX, 'tiny-mlm'),
      '--out',
      join(dir, 'multi.mlpackage'),
      '--functions',
      'mlm,none',
      ...common,
    );
    expect(multi.code, multi.stderr).toBe(0);
    const pkg = readMLPackage(join(dir, 'multi.mlpackage'), 'none');
    expect(pkg.graph.inputs.map((v) => v.name)).toContain('segment_ids');
    const text = 'The capital of France is [MASK].';
    const a = json(await cli('predict', join(dir, 'one.mlpackage'), text, '--runtime', 'engine', '--json'));
    const b = json(
      await cli('predict', join(dir, 'multi.mlpackage'), text, '--function', 'mlm', '--runtime', 'engine', '--json'),
    );
    expect(b).toEqual(a);
  });
});

describe('converted with --pack, the package runs packed windows as the engine runs each text alone', () => {
  const base: ConvertOptions = { seqLens: [48], rotation: 'hadamard', tokenizer: false, fidelity: false };
  const cases: [string, () => Promise<Checkpoint>, OutputHead][] = [
    ['tiny-mlm', async () => loadCheckpoint(join(FX, 'tiny-mlm')), 'mlm'],
    ['tiny-cls-mean', async () => loadCheckpoint(join(FX, 'tiny-cls-mean')), 'seqcls'],
    ['embedding (cls, normalized)', async () => loadCheckpoint(await sentenceTransformers('cls', true)), 'embedding'],
  ];
  for (const [name, open, head] of cases) {
    it(`${name}: fp32 within 1e-4, fp16 weights in float16 emulation within 2e-2`, async () => {
      const ckpt = await open();
      try {
        const engine = new Engine(ckpt);
        const parts = texts([19, 12, 9], ckpt.config.clsTokenId, ckpt.config.vocabSize);
        for (const [weights, precision, atol] of [
          ['fp32', 'fp32', 1e-4],
          ['fp16', 'fp16', 2e-2],
        ] as const) {
          const out = join(tempDir('mbane-pack-'), `${weights}.mlpackage`);
          await convert(ckpt, { ...base, out, weights, pack: 4 });
          const runner = new PackageRunner(readMLPackage(out), out, precision as Precision);
          expect(runner.info.pack).toBe(4);
          expect(
            await packedVsAlone(runner, engine, parts, 48, ckpt.config.padTokenId, head, 4),
            `${weights}`,
          ).toBeLessThan(atol);
        }
      } finally {
        ckpt.close();
      }
    }, 30_000);
  }
});
