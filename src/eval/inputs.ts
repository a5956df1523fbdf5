// Token sequences to run two models on: texts through a tokenizer, the input ids of a golden file's cases,
// or seeded random ids for checkpoints without a tokenizer (synthetic ones).

import type { Sequence } from '../run/runner.js';
import { describeLength, encodeWithin } from '../tokenizer/encode-within.js';
import { ModernBertError } from '../errors.js';
import { hashU32 } from '../numeric/prng.js';
import type { ModelIds } from '../run/runner.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { readGolden } from './golden.js';
import { BUILTIN_SENTENCES } from './sentences.js';
import { lengthsWork, textsWork, type Workload } from '../run/runtime-cost.js';

/** A sequence, and where to compare predictions ([MASK] positions, or every real token when undefined). */
export interface ProbeSequence extends Sequence {
  ids: number[];
  positions?: number[];
  label: string;
}

export interface InputSpec {
  texts?: string[];
  golden?: string;
  /** Number of random body tokens. */
  random?: number;
  seed?: number;
}

/** Resolves what the user asked to run on into sequences (built-in sentences by default). */
export function resolveInputs(spec: InputSpec, ids: ModelIds, tok?: Tokenizer): ProbeSequence[] {
  const given = [spec.texts?.length ? 'TEXT' : '', spec.golden ? '--golden' : '', spec.random ? '--random' : ''].filter(
    Boolean,
  );
  if (given.length > 1) throw new ModernBertError('BAD_ARGUMENT', `give only one of ${given.join(', ')}`);
  if (spec.golden) return goldenSequences(spec.golden, ids);
  if (spec.random) return [randomSequence(spec.random, spec.seed ?? 0, ids)];
  if (!tok) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      'this model has no tokenizer: give --golden FILE or --random N to choose the input tokens',
    );
  }
  return textSequences(spec.texts?.length ? spec.texts : undefined, ids, tok);
}

/**
 * What resolveInputs(spec) gives a model to run, known before the model opens (runtime-cost.ts): the texts, or
 * the built-in sentences when there are none, or the random ids; undefined for a golden file, whose first
 * input then decides the runtime.
 */
export function inputsWork(spec: InputSpec): Workload | undefined {
  if (spec.random) return lengthsWork([spec.random + 2]);
  if (spec.golden) return undefined;
  return textsWork(spec.texts?.length ? spec.texts : BUILTIN_SENTENCES);
}

/** The rows of a golden file's cases, right padding dropped. */
export function goldenSequences(path: string, ids: ModelIds): ProbeSequence[] {
  const rows = readGolden(path).flatMap((c) => {
    const [B, S] = c.inputIds.shape;
    return Array.from({ length: B }, (_, b) => {
      const row = Array.from(c.inputIds.data.subarray(b * S, (b + 1) * S));
      const att = c.attentionMask?.subarray(b * S, (b + 1) * S);
      const n = att ? att.reduce((s, v) => s + (v ? 1 : 0), 0) : S;
      // Right padding is dropped: padded positions say nothing about agreement.
      const real = att && Array.from(att).every((v, i) => (i < n ? v === 1 : v === 0)) ? row.slice(0, n) : row;
      return { ids: real, attention: real === row ? att : undefined, label: `${c.name}[${b}]` };
    });
  });
  // Rows of padding only (or batch 0, or no cases) compare nothing: a comparison over none must not pass.
  const usable = rows.filter((s) => s.ids.length > 0 && (!s.attention || s.attention.some((v) => v)));
  if (usable.length === 0)
    throw new ModernBertError(
      'BAD_INPUT',
      `${path} holds no row with a real token (no cases, batch 0, or attention_mask all 0): there is nothing to compare`,
      { file: path },
    );
  return usable.map((s) => checkLength(s, ids));
}

/** One sequence of n seeded random token ids (no special ones) between [CLS] and [SEP]. */
export function randomSequence(random: number, seed: number, ids: ModelIds): ProbeSequence {
  const n = Math.min(random, ids.maxLen - 2);
  const h = hashU32(n * 2, seed + 0x5eed);
  const body: number[] = [];
  for (let i = 0; body.length < n && i < h.length; i++) {
    const id = h[i]! % ids.vocabSize;
    if (!ids.special.includes(id)) body.push(id);
  }
  return { ids: [ids.clsTokenId, ...body, ids.sepTokenId], label: `random(${n})` };
}

/** Texts through the tokenizer (the built-in sentences when none are given), with their [MASK] positions. */
export function textSequences(texts: readonly string[] | undefined, ids: ModelIds, tok: Tokenizer): ProbeSequence[] {
  const builtin = texts === undefined;
  const seqs = (texts ?? BUILTIN_SENTENCES).map((text) => {
    // No more of a text is tokenized than the model takes (tokenizer/encode-within.ts).
    const e = encodeWithin(tok, text, ids.maxLen);
    const t = e.ids;
    const positions = tok.maskTokenId === undefined ? [] : t.flatMap((id, i) => (id === tok.maskTokenId ? [i] : []));
    return {
      ids: t,
      positions: positions.length ? positions : undefined,
      label: text,
      length: describeLength(e, ids.maxLen),
    };
  });
  // Built-in sentences that a short model cannot take are left out; the user's own texts must fit.
  const fitting = (
    builtin ? seqs.filter((s) => s.ids.length <= ids.maxLen) : seqs.map((s) => checkLength(s, ids, s.length))
  ).map(({ length: _, ...s }) => s);
  if (fitting.length === 0)
    throw new ModernBertError(
      'BAD_INPUT',
      `none of the built-in sentences fits in ${ids.maxLen} tokens: give shorter texts`,
    );
  return fitting;
}

function checkLength<T extends ProbeSequence>(s: T, ids: ModelIds, length = String(s.ids.length)): T {
  if (s.ids.length > ids.maxLen) {
    throw new ModernBertError(
      'BAD_INPUT',
      `input "${s.label.slice(0, 40)}" is ${length} tokens long but the model allows at most ${ids.maxLen}`,
    );
  }
  return s;
}

/** Reads a calibration file: one text per non-empty line. */
export function readLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}
