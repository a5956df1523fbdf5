// Token classification's grouping, against the examples of transformers' TokenClassificationPipeline docs
// (aggregation_strategy and aggregate_words): "micro|soft| com|pany| B-ENT I-NAME I-ENT I-ENT" and
// "(A, B-TAG), (B, I-TAG), (C, I-TAG), (D, B-TAG2) (E, B-TAG2)", with the scores worked out by hand.

import { describe, expect, it } from 'vitest';
import { aggregate, isSubword, tagOf, type ScoredToken } from '../src/tasks/entities.js';

const LABELS = ['O', 'B-ENT', 'I-ENT', 'I-NAME'];
const TEXT = 'Microsoft company';

/** micro|soft| com|pany with their spans and label probabilities (O, B-ENT, I-ENT, I-NAME). */
function microsoft(): ScoredToken[] {
  const parts: [number, number, number[]][] = [
    [0, 5, [0.05, 0.9, 0.03, 0.02]],
    [5, 9, [0.05, 0.05, 0.3, 0.6]],
    [10, 13, [0.1, 0.05, 0.8, 0.05]],
    [13, 17, [0.1, 0.1, 0.7, 0.1]],
  ];
  return parts.map(([start, end, scores], i) => ({
    index: i + 1,
    scores,
    start,
    end,
    isSubword: isSubword(TEXT, start),
  }));
}

describe('token classification: grouping as transformers does', () => {
  it('tells subwords by the space before them, and B-/I- tags (a bare label continues)', () => {
    expect(microsoft().map((t) => t.isSubword)).toEqual([false, true, false, true]);
    expect(tagOf('B-PER')).toEqual({ bi: 'B', tag: 'PER' });
    expect(tagOf('I-PER')).toEqual({ bi: 'I', tag: 'PER' });
    expect(tagOf('LABEL_3')).toEqual({ bi: 'I', tag: 'LABEL_3' });
  });

  it("'none': one result per token, its argmax label and span", () => {
    expect(aggregate(TEXT, microsoft(), LABELS, 'none')).toEqual([
      { entity: 'B-ENT', score: 0.9, index: 1, word: 'Micro', start: 0, end: 5 },
      { entity: 'I-NAME', score: 0.6, index: 2, word: 'soft', start: 5, end: 9 },
      { entity: 'I-ENT', score: 0.8, index: 3, word: 'com', start: 10, end: 13 },
      { entity: 'I-ENT', score: 0.7, index: 4, word: 'pany', start: 13, end: 17 },
    ]);
  });

  it("'simple': neighbours of one tag grouped, so a word may split between tags", () => {
    const groups = aggregate(TEXT, microsoft(), LABELS, 'simple');
    expect(groups).toEqual([
      { entity_group: 'ENT', score: 0.9, word: 'Micro', start: 0, end: 5 },
      { entity_group: 'NAME', score: 0.6, word: 'soft', start: 5, end: 9 },
      { entity_group: 'ENT', score: expect.closeTo(0.75, 12) as number, word: 'company', start: 10, end: 17 },
    ]);
  });

  it("'first', 'max', 'average': each word takes one label first (microsoft| company| B-ENT I-ENT), then one group", () => {
    const one = (score: number) => [
      { entity_group: 'ENT', score: expect.closeTo(score, 12) as number, word: 'Microsoft company', start: 0, end: 17 },
    ];
    expect(aggregate(TEXT, microsoft(), LABELS, 'first')).toEqual(one((0.9 + 0.8) / 2));
    expect(aggregate(TEXT, microsoft(), LABELS, 'max')).toEqual(one((0.9 + 0.8) / 2));
    // Mean scores per word: (0.05, 0.475, 0.165, 0.31) -> B-ENT 0.475; (0.1, 0.075, 0.75, 0.075) -> I-ENT 0.75.
    expect(aggregate(TEXT, microsoft(), LABELS, 'average')).toEqual(one((0.475 + 0.75) / 2));
  });

  it('two B- labels of one tag are two entities; ignore_labels (default O) drops groups by tag', () => {
    const text = 'A B C D E';
    const labels = ['O', 'B-TAG', 'I-TAG', 'B-TAG2'];
    const pick = [1, 2, 2, 3, 3];
    const tokens = pick.map((label, i): ScoredToken => ({
      index: i + 1,
      scores: labels.map((_, j) => (j === label ? 1 : 0)),
      start: 2 * i,
      end: 2 * i + 1,
      isSubword: false,
    }));
    expect(
      aggregate(text, tokens, labels, 'simple').map((g) => ['entity_group' in g ? g.entity_group : g.entity, g.word]),
    ).toEqual([
      ['TAG', 'A B C'],
      ['TAG2', 'D'],
      ['TAG2', 'E'],
    ]);
    const withO = tokens.map((t, i) => (i === 1 ? { ...t, scores: [1, 0, 0, 0] } : t));
    expect(aggregate(text, withO, labels, 'simple').map((g) => g.word)).toEqual(['A', 'C', 'D', 'E']);
    expect(aggregate(text, withO, labels, 'simple', []).map((g) => g.word)).toEqual(['A', 'B', 'C', 'D', 'E']);
    expect(aggregate(text, withO, labels, 'none').map((g) => g.word)).toEqual(['A', 'C', 'D', 'E']);
  });
});
