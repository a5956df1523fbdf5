// Encoding a text that may be far longer than a model takes, tokenizing only as much of it as the model's
// window needs: a 50 MB line cut by --truncate costs what its first few thousand characters cost, not minutes
// and gigabytes (and not the stack: one word of millions of characters overflows the regex engine's). Which
// prefix suffices is measured, not assumed: the first tokens of a prefix count only when a prefix twice as
// long gives the same ones, so a word cut at the prefix's end never changes what is kept.

import { ModernBertError } from '../errors.js';
import type { Tokenizer } from './tokenizer.js';

/** Characters per token assumed for the first prefix (ModernBERT's tokenizer averages about 4 on English). */
const CHARS_PER_TOKEN = 8;
/** The longest prefix ever tokenized at once, in characters: beyond it a text counts as too long to take whole. */
const MAX_ENCODE_CHARS = 1 << 20;

/** The encoding of a text's beginning: what the encoder gave (the whole text's when `complete`, else a prefix's). */
export type EncodingWithin<E extends { ids: number[] } = { ids: number[] }> = E & {
  /** Whether it encodes the whole text; if not, `ids` are a prefix's (more than `maxTokens`, ending with the template's closing token). */
  complete: boolean;
};

/**
 * Encodes `text` with `encode` (default: the tokenizer's encode), or (when it is longer than `maxTokens`
 * tokens) enough of its beginning that the first `maxTokens` ids are the whole text's: `ids.length >
 * maxTokens` then says it is too long, and `[...ids.slice(0, maxTokens - 1), ids.at(-1)]` is its truncation
 * keeping the closing [SEP]. A prefix's spans (encodeWithOffsets) are the whole text's, as its ids are.
 */
export function encodeWithin<E extends { ids: number[] } = { ids: number[] }>(
  tok: Tokenizer,
  text: string,
  maxTokens: number,
  encode: (text: string) => E = (t) => ({ ids: tok.encode(t).ids }) as E,
): EncodingWithin<E> {
  let chars = Math.max(1024, (maxTokens + 2) * CHARS_PER_TOKEN);
  if (text.length <= 2 * chars) return { ...encode(text), complete: true };
  for (;;) {
    if (chars >= text.length) return { ...encode(text), complete: true };
    const a = encode(text.slice(0, chars));
    if (a.ids.length > maxTokens + 1) {
      const b = tok.encode(text.slice(0, Math.min(2 * chars, text.length))).ids;
      if (samePrefix(a.ids, b, maxTokens)) return { ...a, complete: false };
    }
    if (chars >= MAX_ENCODE_CHARS) {
      // Characters that give no tokens (dropped by the normalizer or outside the vocabulary) for a megabyte.
      throw new ModernBertError(
        'BAD_INPUT',
        `a text of ${text.length} characters gives fewer than ${maxTokens} tokens in its first ${MAX_ENCODE_CHARS}: texts are tokenized up to ${MAX_ENCODE_CHARS} characters at a time`,
        { chars: text.length },
      );
    }
    chars = Math.min(2 * chars, MAX_ENCODE_CHARS);
  }
}

function samePrefix(a: readonly number[], b: readonly number[], n: number): boolean {
  if (b.length < n) return false;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** How long an encoding is, for messages: "1030" when complete, "more than 512" when only a prefix was encoded. */
export function describeLength(e: { ids: readonly number[]; complete: boolean }, maxTokens: number): string {
  return e.complete ? String(e.ids.length) : `more than ${maxTokens}`;
}
