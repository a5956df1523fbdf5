// The library's pipeline() against the goldens: fill-mask (mini-trained), text classification (tiny-cls-mean),
// token classification with spans and entity grouping (tiny-token) and feature extraction (sentence-transformers
// folders), each as transformers.js shapes them; and the task table's softmax and top-k.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readGolden, type GoldenCase } from '../src/eval/golden.js';
import { DEFAULT_MODEL } from '../src/run/load.js';
import { pipeline } from '../src/tasks/pipeline.js';
import { softmaxColumn, topK } from '../src/tasks/task-table.js';
import { loadTokenizer } from '../src/tokenizer/tokenizer.js';
import { expectedEmbedding, sentenceTransformers } from './helpers/embedding.js';
import { cleanupTempDirs, FX } from './helpers/fixtures.js';
import { expectError, goldenHidden, goldenRow } from './helpers/run.js';

afterAll(cleanupTempDirs);

const texts = (fixture: string): string[] =>
  (JSON.parse(readFileSync(join(FX, fixture, 'golden.json'), 'utf8')) as { texts: string[] }).texts;

/** Softmax (float64) of golden logits of row b at token s ([B, S, V]), or of row b ([B, L]). */
function goldenProbs(gc: GoldenCase, b: number, s?: number): Float64Array {
  const g = gc.logits!;
  if (s === undefined) return softmaxColumn(g.data, g.shape[1]!, b * g.shape[1]!);
  const [, S, V] = g.shape as [number, number, number];
  return softmaxColumn(g.data, V, (b * S + s) * V);
}

// Our engine at float32: the goldens' tolerances are ours, whichever runtime is installed.
const ENGINE = { runtime: 'engine' } as const;

describe('softmax and top-k', () => {
  it('softmaxColumn reads a strided column and is stable for large logits', () => {
    const p = softmaxColumn([0, 9, 1, 9, 1000, 9, 1001, 9], 4, 0, 2); // 0, 1, 1000, 1001
    expect(p[0]).toBe(0);
    expect(p[2]! + p[3]!).toBeCloseTo(1, 12);
    expect(p[3]! / p[2]!).toBeCloseTo(Math.E, 10);
    const q = softmaxColumn([5, 1, 2, 3], 3, 1);
    const z = Math.exp(1) + Math.exp(2) + Math.exp(3);
    expect(q).toHaveLength(3);
    [1, 2, 3].forEach((v, i) => expect(q[i]).toBeCloseTo(Math.exp(v) / z, 14));
  });

  it('topK orders indices by value, largest first, and stops at the length', () => {
    expect(topK([0.1, 0.5, 0.2, 0.15], 2)).toEqual([1, 2]);
    expect(topK([3, 1, 2], 10)).toEqual([0, 2, 1]);
  });
});

describe("pipeline('fill-mask') on the built-in default model (mini-trained)", () => {
  it('"She opened the [MASK] and walked into the room." -> door, as { score, token, token_str, sequence }', async () => {
    const fill = await pipeline('fill-mask', undefined, ENGINE);
    try {
      expect(fill.model).toBe(DEFAULT_MODEL);
      const out = await fill('She opened the [MASK] and walked into the room.');
      expect(out).toHaveLength(5);
      expect(Object.keys(out[0]!)).toEqual(['score', 'token', 'token_str', 'sequence', 'mask']);
      expect(out[0]!.token_str).toBe(' door');
      expect(out[0]!.sequence).toBe('She opened the door and walked into the room.');
      expect(out[0]!.score).toBeCloseTo(0.178, 2);
      expect(out.map((t) => t.score)).toEqual([...out.map((t) => t.score)].sort((a, b) => b - a));
      expect((await fill('The sky is [MASK].', { top_k: 2 })).map((t) => t.mask)).toEqual([0, 0]);
    } finally {
      await fill.dispose();
    }
  });

  it('every [MASK] of the golden prompts: the golden probabilities, the same whether run alone or packed', async () => {
    const gc = readGolden(join(FX, 'mini-trained', 'golden.safetensors')).find((c) => c.name === 'prompts')!;
    const fill = await pipeline('fill-mask', undefined, ENGINE);
    const tok = await loadTokenizer(DEFAULT_MODEL);
    try {
      const prompts = texts('mini-trained');
      const packed = await fill(prompts); // one window
      expect(packed).toHaveLength(prompts.length);
      for (const [b, text] of prompts.entries()) {
        const ids = tok.encode(text).ids;
        expect(ids).toEqual(Array.from(goldenRow(gc, b).ids.subarray(0, ids.length)));
        const alone = await fill(text);
        const mask = ids.indexOf(tok.maskTokenId!);
        const gold = goldenProbs(gc, b, mask);
        expect(alone[0]!.token, text).toBe(topK(gold, 1)[0]);
        const top6 = topK(gold, 6); // near-ties may swap
        for (const [i, t] of alone.entries()) {
          expect(top6).toContain(t.token);
          expect(Math.abs(t.score - gold[t.token]!)).toBeLessThan(1e-5);
          expect(t.token_str).toBe(tok.decode([t.token], { skipSpecialTokens: false }));
          expect(Math.abs(packed[b]![i]!.score - t.score)).toBeLessThan(1e-5);
        }
      }
    } finally {
      await fill.dispose();
    }
  });

  it('several masks: top_k candidates for each, told apart by `mask`; top_k past the vocabulary is the vocabulary', async () => {
    const fill = await pipeline('fill-mask', undefined, ENGINE);
    try {
      const two = await fill('The [MASK] rises in the [MASK].', { top_k: 3 });
      expect(two.map((t) => t.mask)).toEqual([0, 0, 0, 1, 1, 1]);
      const all = await fill('The sky is [MASK].', { top_k: 100_000 });
      expect(all).toHaveLength(4096);
      expect(all.reduce((s, t) => s + t.score, 0)).toBeCloseTo(1, 6);
    } finally {
      await fill.dispose();
    }
  });

  it('text without [MASK], text longer than the model allows, no texts and a disposed pipeline are one-line errors', async () => {
    const fill = await pipeline('fill-mask', undefined, ENGINE);
    const none = await expectError(() => fill('No mask here.'), 'BAD_INPUT');
    expect(none.message).toContain('no [MASK] token');
    const long = await expectError(() => fill(`${'word '.repeat(600)}[MASK]`), 'BAD_INPUT');
    expect(long.message).toMatch(/the text is \d+ tokens long but the model allows at most 512 \(give `truncate`/);
    await expectError(() => fill([]), 'BAD_ARGUMENT');
    await fill.dispose();
    await expectError(() => fill('The sky is [MASK].'), 'BAD_ARGUMENT');
  });

  it('runs on the runtime the commands pick (onnxruntime when installed), on the threads asked for', async () => {
    const { chooseRuntime } = await import('../src/run/runtime-choice.js');
    const { kernelThreads, setKernelThreads } = await import('../src/runtime/kernels/index.js');
    const expected = (await chooseRuntime({})).runtime;
    const fill = await pipeline('fill-mask', undefined, { threads: 1 });
    try {
      expect(fill.runtime).toBe(expected);
      expect(kernelThreads()).toBe(1);
      expect((await fill('She opened the [MASK] and walked into the room.'))[0]!.token_str).toBe(' door');
    } finally {
      await fill.dispose();
      setKernelThreads(undefined);
    }
    await expect(pipeline('fill-mask', undefined, { threads: 0 })).rejects.toThrow(
      /`threads` must be a whole number from 1 to 1024/,
    );
    // fp16 lowers to onnxruntime; fp16-acc16 (float16 running sums) has no ONNX form.
    await expect(pipeline('fill-mask', undefined, { precision: 'fp16-acc16', runtime: 'ort' })).rejects.toThrow(
      /`precision: fp16-acc16` \(float16 running sums inside matrix products\) runs on our engine only/,
    );
    const half = await pipeline('fill-mask', undefined, { precision: 'fp16', runtime: 'ort' });
    try {
      expect((await half('She opened the [MASK] and walked into the room.'))[0]!.token_str).toBe(' door');
    } finally {
      await half.dispose();
    }
  });

  it('a task the model has no head for is BAD_ARGUMENT naming both', async () => {
    const e = await expectError(() => pipeline('text-classification', undefined, ENGINE), 'BAD_ARGUMENT');
    expect(e.message).toMatch(/has the mlm head; text-classification needs a sequence classifier/);
    await expectError(() => pipeline('translation' as 'fill-mask'), 'BAD_ARGUMENT');
  });
});

describe("pipeline('text-classification') (tiny-cls-mean)", () => {
  it('label probabilities are the softmax of the golden logits, best first; top_k 1 by default, null for all', async () => {
    const gc = readGolden(join(FX, 'tiny-cls-mean', 'golden.safetensors')).find((c) => c.name === 'batch_padded')!;
    const classify = await pipeline('text-classification', join(FX, 'tiny-cls-mean'), ENGINE);
    try {
      const all = await classify(texts('tiny-cls-mean'), { top_k: null });
      for (const [b, text] of texts('tiny-cls-mean').entries()) {
        const gold = goldenProbs(gc, b);
        const scores = all[b]!;
        expect(scores.map((s) => s.label).sort()).toEqual(['neg', 'neu', 'pos']);
        expect(scores.map((s) => s.score)).toEqual([...scores.map((s) => s.score)].sort((x, y) => y - x));
        for (const s of scores)
          expect(Math.abs(s.score - gold[['neg', 'neu', 'pos'].indexOf(s.label)]!)).toBeLessThan(1e-5);
        const one = await classify(text);
        expect(one).toEqual([{ label: scores[0]!.label, score: expect.closeTo(scores[0]!.score, 5) as number }]);
      }
    } finally {
      await classify.dispose();
    }
  });
});

describe("pipeline('token-classification') (tiny-token)", () => {
  it('each token but [CLS]/[SEP]: the argmax label of the golden logits, and a span that slices the text to its word', async () => {
    const gc = readGolden(join(FX, 'tiny-token', 'golden.safetensors')).find((c) => c.name === 'batch_padded')!;
    const ner = await pipeline('token-classification', join(FX, 'tiny-token'), ENGINE);
    const tok = await loadTokenizer(join(FX, 'tiny-token'));
    try {
      for (const [b, text] of texts('tiny-token').entries()) {
        const tokens = await ner(text, { ignore_labels: [] });
        const { real } = goldenRow(gc, b);
        const { ids, offsets } = tok.encodeWithOffsets(text);
        // No [CLS], [SEP] or [MASK], and no token of spaces only (its span is empty).
        const labelled = real.filter((s) => !tok.isSpecial(ids[s]!) && offsets[s]![1] > offsets[s]![0]);
        expect(tokens.map((t) => t.index)).toEqual(labelled);
        expect(labelled.length).toBeGreaterThan(
          real.length - 2 - ids.filter((id) => id === tok.maskTokenId).length - 3,
        );
        for (const t of tokens) {
          const gold = goldenProbs(gc, b, t.index);
          const best = topK(gold, 1)[0]!;
          expect(Object.keys(t)).toEqual(['entity', 'score', 'index', 'word', 'start', 'end']);
          expect(t.entity).toBe(`LABEL_${best}`);
          expect(Math.abs(t.score - gold[best]!)).toBeLessThan(1e-5);
          expect(t.word).toBe(text.slice(t.start, t.end));
          // The word is the token's own text (partial characters aside), without the space before it.
          const own = tok.decode([ids[t.index]!]);
          if (!own.includes('\ufffd')) expect(t.word).toBe(own.trim());
        }
      }
    } finally {
      await ner.dispose();
    }
  });

  it("groups tokens as transformers does: 'simple' by tag, 'first' / 'max' / 'average' by word, spans covering their parts", async () => {
    const ner = await pipeline('token-classification', join(FX, 'tiny-token'), ENGINE);
    try {
      const text = texts('tiny-token')[2]!;
      const tokens = await ner(text, { ignore_labels: [] });
      const simple = await ner(text, { aggregation_strategy: 'simple', ignore_labels: [] });
      // Labels have no B-/I- prefix, so each run of one label is one group, its score the mean of its tokens'.
      const runs: (typeof tokens)[] = [];
      for (const t of tokens) {
        if (runs.length > 0 && runs.at(-1)!.at(-1)!.entity === t.entity) runs.at(-1)!.push(t);
        else runs.push([t]);
      }
      expect(simple.map((g) => g.entity_group)).toEqual(runs.map((r) => r[0]!.entity));
      simple.forEach((g, i) => {
        expect(g.start).toBe(runs[i]![0]!.start);
        expect(g.end).toBe(runs[i]!.at(-1)!.end);
        expect(g.word).toBe(text.slice(g.start, g.end));
        expect(g.score).toBeCloseTo(runs[i]!.reduce((s, t) => s + t.score, 0) / runs[i]!.length, 6);
      });
      for (const strategy of ['first', 'max', 'average'] as const) {
        const words = await ner(text, { aggregation_strategy: strategy, ignore_labels: [] });
        for (const g of words) {
          expect(g.word).toBe(text.slice(g.start, g.end));
          // A group starts and ends at word boundaries: never inside a word.
          expect(g.start === 0 || /[\s\p{P}]/u.test(text[g.start - 1]!) || /\p{P}/u.test(text[g.start]!)).toBe(true);
        }
      }
      const first = await ner(text, { aggregation_strategy: 'first', ignore_labels: [] });
      expect(first.length).toBeLessThanOrEqual(simple.length + tokens.length);
      // ignore_labels leaves a label out, by default 'O' (which these labels never are).
      const some = await ner(text, { ignore_labels: [tokens[0]!.entity] });
      expect(some.every((t) => t.entity !== tokens[0]!.entity)).toBe(true);
    } finally {
      await ner.dispose();
    }
  });
});

describe("pipeline('feature-extraction')", () => {
  it('a sentence-transformers folder: [N, C] of the normalised masked mean of the golden last hidden state', async () => {
    const gc = readGolden(join(FX, 'tiny-mlm', 'golden.safetensors')).find((c) => c.name === 'batch_padded')!;
    const dir = await sentenceTransformers('mean', true);
    const extract = await pipeline('feature-extraction', dir, ENGINE);
    try {
      const all = texts('tiny-mlm');
      const out = await extract(all);
      expect(out.type).toBe('float32');
      expect(out.dims).toEqual([all.length, 64]);
      const list = out.tolist();
      for (const b of all.keys()) {
        const want = expectedEmbedding(goldenHidden(gc, 4, b), goldenRow(gc, b).real, 'mean', true);
        for (let j = 0; j < 64; j++) expect(Math.abs(list[b]![j]! - want[j]!)).toBeLessThan(1e-4);
      }
    } finally {
      await extract.dispose();
    }
  });

  it("pooling and normalize override the model's own: cls, mean, and every token with pooling none", async () => {
    const gc = readGolden(join(FX, 'tiny-mlm', 'golden.safetensors')).find((c) => c.name === 'single')!;
    const extract = await pipeline('feature-extraction', join(FX, 'tiny-mlm'), ENGINE);
    try {
      const text = texts('tiny-mlm')[0]!;
      const last = goldenHidden(gc, 4, 0);
      const real = goldenRow(gc, 0).real;
      for (const [pooling, normalize] of [
        ['mean', false],
        ['cls', true],
        ['mean', true],
      ] as const) {
        const out = await extract(text, { pooling, normalize });
        expect(out.dims).toEqual([1, 64]);
        const want = expectedEmbedding(last, real, pooling, normalize);
        for (let j = 0; j < 64; j++)
          expect(Math.abs(out.data[j]! - want[j]!), `${pooling} ${normalize}`).toBeLessThan(1e-4);
      }
      const tokens = await extract([text, 'Hi.'], { pooling: 'none' });
      expect(tokens.dims).toEqual([2, real.length, 64]);
      const rows = tokens.tolist();
      for (const s of real)
        for (let j = 0; j < 64; j++) expect(Math.abs(rows[0]![s]![j]! - last[s]![j]!)).toBeLessThan(1e-4);
      expect(rows[1]!.at(-1)!.every((v) => v === 0)).toBe(true); // the shorter text is padded with zeros
    } finally {
      await extract.dispose();
    }
  });
});
