// Token classification's post-processing, as transformers' TokenClassificationPipeline does it
// (src/transformers/pipelines/token_classification.py: gather_pre_entities, aggregate, aggregate_words,
// group_entities): every token but the special ones (and, here, those of spaces only, whose span is empty),
// each with its label probabilities and its span; with
// 'first', 'average' or 'max' the tokens of a word first agree on one label; with any strategy but 'none',
// neighbouring tokens (or words) of one tag are grouped, a B- label starting a new group. Where we differ:
// `word` is the input's own text at the span (transformers gives the tokenizer's token string, which for a
// byte-level BPE carries its "Ġ" marker), and spans leave out the space before a word (tokenizer/offsets.ts).

import type { AggregationStrategy, EntityGroup, TokenClassificationItem } from './results.js';

/** A token as the model scored it: its label probabilities and where it is. */
export interface ScoredToken {
  /** Position in the encoded input. */
  index: number;
  /** Probability of each label. */
  scores: ArrayLike<number>;
  start: number;
  end: number;
  /** Continues the word of the token before it. */
  isSubword: boolean;
}

interface Entity {
  entity: string;
  score: number;
  index?: number;
  start: number;
  end: number;
}

/**
 * transformers' fallback for tokenizers without a continuing-subword prefix (byte-level BPE): a token continues a
 * word unless it starts the text or a space touches its start.
 */
export function isSubword(text: string, start: number): boolean {
  return start > 0 && !text.slice(start - 1, start + 1).includes(' ');
}

function argmax(p: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i]! > p[best]!) best = i;
  return best;
}

/** Splits a label into its B-/I- prefix and its tag; a label without one continues (I). */
export function tagOf(label: string): { bi: 'B' | 'I'; tag: string } {
  if (label.startsWith('B-')) return { bi: 'B', tag: label.slice(2) };
  if (label.startsWith('I-')) return { bi: 'I', tag: label.slice(2) };
  return { bi: 'I', tag: label };
}

/** The entities of one text: per token ('none'), or grouped; labels in `ignore` are left out (default ['O']). */
export function aggregate(
  text: string,
  tokens: readonly ScoredToken[],
  labels: readonly string[],
  strategy: AggregationStrategy,
  ignore: readonly string[] = ['O'],
): TokenClassificationItem[] | EntityGroup[] {
  const word = (start: number, end: number) => text.slice(start, end);
  if (strategy === 'none') {
    return tokens
      .map((t) => {
        const i = argmax(t.scores);
        return {
          entity: labels[i]!,
          score: t.scores[i]!,
          index: t.index,
          word: word(t.start, t.end),
          start: t.start,
          end: t.end,
        };
      })
      .filter((e) => !ignore.includes(e.entity));
  }
  const entities =
    strategy === 'simple'
      ? tokens.map((t) => byToken(t, labels))
      : words(tokens).map((w) => byWord(w, labels, strategy));
  return groupEntities(entities)
    .filter((g) => !ignore.includes(g.tag))
    .map(({ tag, score, start, end }) => ({ entity_group: tag, score, word: word(start, end), start, end }));
}

function byToken(t: ScoredToken, labels: readonly string[]): Entity {
  const i = argmax(t.scores);
  return { entity: labels[i]!, score: t.scores[i]!, index: t.index, start: t.start, end: t.end };
}

/** Tokens in runs that form words: a new word at each token that is not a subword. */
function words(tokens: readonly ScoredToken[]): ScoredToken[][] {
  const out: ScoredToken[][] = [];
  for (const t of tokens) {
    if (out.length === 0 || !t.isSubword) out.push([t]);
    else out.at(-1)!.push(t);
  }
  return out;
}

/** One word's label: its first token's ('first'), its most confident token's ('max'), or the best of its mean scores ('average'). */
function byWord(w: readonly ScoredToken[], labels: readonly string[], strategy: 'first' | 'average' | 'max'): Entity {
  let scores: ArrayLike<number>;
  if (strategy === 'first') scores = w[0]!.scores;
  else if (strategy === 'max') {
    const peak = (t: ScoredToken) => Math.max(...Array.from(t.scores));
    scores = w.reduce((best, t) => (peak(t) > peak(best) ? t : best)).scores;
  } else {
    const mean = new Float64Array(labels.length);
    for (const t of w) for (let i = 0; i < mean.length; i++) mean[i]! += t.scores[i]! / w.length;
    scores = mean;
  }
  const i = argmax(scores);
  return { entity: labels[i]!, score: scores[i]!, start: w[0]!.start, end: w.at(-1)!.end };
}

/** Neighbours of one tag in one group, a B- label opening a new one; each group's score is its parts' mean. */
function groupEntities(entities: readonly Entity[]): { tag: string; score: number; start: number; end: number }[] {
  const groups: Entity[][] = [];
  for (const e of entities) {
    const last = groups.at(-1)?.at(-1);
    const { bi, tag } = tagOf(e.entity);
    if (last && tag === tagOf(last.entity).tag && bi !== 'B') groups.at(-1)!.push(e);
    else groups.push([e]);
  }
  return groups.map((g) => ({
    // transformers: the first label after its first '-' (B-PER -> PER; a label without one is itself).
    tag: g[0]!.entity.includes('-') ? g[0]!.entity.slice(g[0]!.entity.indexOf('-') + 1) : g[0]!.entity,
    score: g.reduce((s, e) => s + e.score, 0) / g.length,
    start: g[0]!.start,
    end: g.at(-1)!.end,
  }));
}
