// What predict computes, against the goldens: fill-mask top-k (mini-trained), label probabilities
// (tiny-cls-mean), per-token labels (tiny-token) and sentence embeddings (a sentence-transformers folder).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readGolden, type GoldenCase } from '../src/eval/golden.js';
import { DEFAULT_MODEL, openModel, type LoadedModel } from '../src/run/load.js';
import { classify, embed, encodeText, fillMask, labelTokens, softmaxColumn, topK } from '../src/tasks/predict.js';
import { expectedEmbedding, sentenceTransformers } from './helpers/embedding.js';
import { cleanupTempDirs, FX } from './helpers/fixtures.js';
import { expectError, goldenHidden, goldenRow } from './helpers/run.js';

afterAll(cleanupTempDirs);

const texts = (fixture: string): string[] => (JSON.parse(readFileSync(join(FX, fixture, 'golden.json'), 'utf8')) as { texts: string[] }).texts;

/** Softmax (float64) of golden logits of row b at token s ([B, S, V]), or of row b ([B, L]). */
function goldenProbs(gc: GoldenCase, b: number, s?: number): Float64Array {
  const g = gc.logits!;
  if (s === undefined) return softmaxColumn(g.data, g.shape[1]!, b * g.shape[1]!);
  const [, S, V] = g.shape as [number, number, number];
  return softmaxColumn(g.data, V, (b * S + s) * V);
}

async function withModel<T>(path: string | undefined, f: (m: LoadedModel) => Promise<T>): Promise<T> {
  const m = await openModel(path);
  try {
    return await f(m);
  } finally {
    m.close();
  }
}

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

describe('fill-mask on the built-in default model (mini-trained)', () => {
  it('"She opened the [MASK] and walked into the room." -> door', async () => {
    await withModel(undefined, async (m) => {
      expect(m.path).toBe(DEFAULT_MODEL);
      const [pred] = await fillMask(m.runner, m.tokenizer!, 'She opened the [MASK] and walked into the room.', 5, m.maxLen);
      expect(pred!.top).toHaveLength(5);
      expect(pred!.top[0]!.token).toBe('door');
      expect(pred!.top[0]!.prob).toBeCloseTo(0.178, 2);
      expect(pred!.top.map((t) => t.prob)).toEqual([...pred!.top.map((t) => t.prob)].sort((a, b) => b - a));
    });
  });

  it('top-k ids and probabilities are those of the golden logits at every [MASK] of the golden prompts', async () => {
    const gc = readGolden(join(FX, 'mini-trained', 'golden.safetensors')).find((c) => c.name === 'prompts')!;
    await withModel(undefined, async (m) => {
      const tok = m.tokenizer!;
      for (const [b, text] of texts('mini-trained').entries()) {
        const { ids } = goldenRow(gc, b);
        const seq = encodeText(tok, text, m.maxLen);
        expect(seq.ids).toEqual(Array.from(ids.subarray(0, seq.ids.length)));
        const preds = await fillMask(m.runner, tok, text, 5, m.maxLen);
        const masks = seq.ids.flatMap((id, i) => (id === tok.maskTokenId ? [i] : []));
        expect(preds.map((p) => p.position)).toEqual(masks);
        for (const p of preds) {
          const gold = goldenProbs(gc, b, p.position);
          const want = topK(gold, 5);
          // Near-ties may swap; each listed token must carry its golden probability and be in the golden top 6.
          expect(p.top[0]!.id, text).toBe(want[0]);
          const top6 = topK(gold, 6);
          for (const t of p.top) {
            expect(top6).toContain(t.id);
            expect(Math.abs(t.prob - gold[t.id]!)).toBeLessThan(1e-5);
            expect(t.token).toBe(tok.decode([t.id], { skipSpecialTokens: false }).trim());
          }
        }
      }
    });
  });

  it('several masks each get their own predictions; --top-k larger than the vocabulary is the vocabulary', async () => {
    await withModel(undefined, async (m) => {
      const preds = await fillMask(m.runner, m.tokenizer!, 'The [MASK] rises in the [MASK].', 3, m.maxLen);
      expect(preds).toHaveLength(2);
      expect(preds[0]!.position).toBeLessThan(preds[1]!.position);
      for (const p of preds) expect(p.top).toHaveLength(3);
      const all = await fillMask(m.runner, m.tokenizer!, 'The sky is [MASK].', 100_000, m.maxLen);
      expect(all[0]!.top).toHaveLength(4096);
      expect(all[0]!.top.reduce((s, t) => s + t.prob, 0)).toBeCloseTo(1, 6);
    });
  });

  it('text without [MASK], and text longer than the model allows, are BAD_INPUT', async () => {
    await withModel(undefined, async (m) => {
      const none = await expectError(() => fillMask(m.runner, m.tokenizer!, 'No mask here.', 5, m.maxLen), 'BAD_INPUT');
      expect(none.message).toContain('no [MASK] token');
      const long = await expectError(() => fillMask(m.runner, m.tokenizer!, `${'word '.repeat(600)}[MASK]`, 5, m.maxLen), 'BAD_INPUT');
      expect(long.message).toMatch(/the text is \d+ tokens long but the model allows at most 512/);
    });
  });
});

describe('sequence classification (tiny-cls-mean)', () => {
  it('label probabilities are the softmax of the golden logits, most likely first, by name', async () => {
    const gc = readGolden(join(FX, 'tiny-cls-mean', 'golden.safetensors')).find((c) => c.name === 'batch_padded')!;
    await withModel(join(FX, 'tiny-cls-mean'), async (m) => {
      expect(m.head).toBe('seqcls');
      for (const [b, text] of texts('tiny-cls-mean').entries()) {
        const scores = await classify(m.runner, m.tokenizer!, text, m.labels, m.maxLen);
        const gold = goldenProbs(gc, b);
        expect(scores.map((s) => s.label).sort()).toEqual(['neg', 'neu', 'pos']);
        expect(scores.map((s) => s.prob)).toEqual([...scores.map((s) => s.prob)].sort((x, y) => y - x));
        for (const s of scores) expect(Math.abs(s.prob - gold[['neg', 'neu', 'pos'].indexOf(s.label)]!)).toBeLessThan(1e-5);
      }
    });
  });
});

describe('token classification (tiny-token)', () => {
  it('each token gets the argmax label of the golden logits with its probability', async () => {
    const gc = readGolden(join(FX, 'tiny-token', 'golden.safetensors')).find((c) => c.name === 'batch_padded')!;
    await withModel(join(FX, 'tiny-token'), async (m) => {
      for (const [b, text] of texts('tiny-token').entries()) {
        const labels = await labelTokens(m.runner, m.tokenizer!, text, m.labels, m.maxLen);
        const { real } = goldenRow(gc, b);
        expect(labels.map((l) => l.position)).toEqual(real);
        for (const l of labels) {
          const gold = goldenProbs(gc, b, l.position);
          const best = topK(gold, 1)[0]!;
          expect(l.label).toBe(`LABEL_${best}`);
          expect(Math.abs(l.prob - gold[best]!)).toBeLessThan(1e-5);
        }
        expect(labels[0]!.token).toBe('[CLS]');
        expect(labels.at(-1)!.token).toBe('[SEP]');
      }
    });
  });
});

describe('embeddings', () => {
  it('a sentence-transformers folder embeds as the normalised masked mean of the golden last hidden state', async () => {
    const gc = readGolden(join(FX, 'tiny-mlm', 'golden.safetensors')).find((c) => c.name === 'batch_padded')!;
    const dir = await sentenceTransformers('mean', true);
    await withModel(dir, async (m) => {
      expect(m.head).toBe('embedding');
      for (const [b, text] of texts('tiny-mlm').entries()) {
        const e = await embed(m.runner, m.tokenizer!, text, m.maxLen);
        const { real } = goldenRow(gc, b);
        const want = expectedEmbedding(goldenHidden(gc, 4, b), real, 'mean', true);
        expect(e).toHaveLength(64);
        for (let j = 0; j < 64; j++) expect(Math.abs(e[j]! - want[j]!)).toBeLessThan(1e-4);
      }
    });
  });

  it('--embed on a masked LM pools its last hidden state (masked mean, not normalised)', async () => {
    const gc = readGolden(join(FX, 'tiny-mlm', 'golden.safetensors')).find((c) => c.name === 'single')!;
    await withModel(join(FX, 'tiny-mlm'), async (m) => {
      const e = await embed(m.runner, m.tokenizer!, texts('tiny-mlm')[0]!, m.maxLen);
      const want = expectedEmbedding(goldenHidden(gc, 4, 0), goldenRow(gc, 0).real, 'mean', false);
      for (let j = 0; j < 64; j++) expect(Math.abs(e[j]! - want[j]!)).toBeLessThan(1e-4);
    });
  });
});
