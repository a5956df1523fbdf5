// Encoding only as much of a long text as the window needs (src/encode-within.ts): the kept tokens are
// exactly the first tokens of the whole text's encoding, whatever the text is made of.

import { describe, expect, it } from 'vitest';
import { encodeWithin } from '../src/tokenizer/encode-within.js';
import { loadTokenizer } from '../src/tokenizer/tokenizer.js';
import { join } from 'node:path';
import { FX } from './helpers/fixtures.js';

describe('encodeWithin', () => {
  it("keeps exactly the whole encoding's first tokens, and its closing token, on long texts of every kind", async () => {
    const tok = await loadTokenizer(join(FX, 'tokenizer'));
    const long = (unit: string, chars: number) => unit.repeat(Math.ceil(chars / unit.length)).slice(0, chars);
    const texts = [
      long('The capital of France is Paris. ', 40_000),
      long('naïve café — 東京 🚀 ñ ', 40_000),
      long('中', 30_000),
      long(' ', 30_000) + 'x',
      long('a', 30_000),
      long('12345 67890 ', 40_000),
      long('def f(x):\n    return x  # c\ttab\n', 40_000),
      `${long('word ', 20_000)}[MASK]${long(' tail', 20_000)}`,
    ];
    for (const window of [8, 64, 512]) {
      for (const text of texts) {
        const full = tok.encode(text).ids;
        const e = encodeWithin(tok, text, window);
        expect(e.complete).toBe(false);
        expect(e.ids.length).toBeGreaterThan(window);
        expect(e.ids.slice(0, window)).toEqual(full.slice(0, window));
        expect(e.ids.at(-1)).toBe(full.at(-1)); // the closing [SEP]
      }
    }
  }, 120_000);

  it('short texts are encoded whole', async () => {
    const tok = await loadTokenizer(join(FX, 'tokenizer'));
    const e = encodeWithin(tok, 'The sky is [MASK].', 512);
    expect(e).toEqual({ ids: tok.encode('The sky is [MASK].').ids, complete: true });
  });
});
