// A tokenizer file's own regular expressions run in a worker under a time budget (src/tokenizer-patterns.ts):
// the guarded pattern gives exactly what the pattern gives on this thread, the tokenizer's encodings do not
// change, and a pattern that backtracks without bound fails in about PATTERN_BUDGET_MS, naming itself.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { GuardedRegExp, PATTERN_BUDGET_MS } from '../src/tokenizer/tokenizer-patterns.js';
import { expectError } from './helpers/run.js';
import { FX } from './helpers/fixtures.js';

const LLAMA3 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const TEXTS = [
  "Hello, world! It's 2024.",
  'naïve café — 東京 🚀 ñ',
  '  leading and  double  spaces ',
  'def f(x):\n    return x  # c\ttab',
  '',
  'aaa bbb',
  "we'll see 12345678",
];

function tokenizerJson(): Record<string, unknown> {
  return JSON.parse(readFileSync(join(FX, 'tokenizer', 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
}

describe('GuardedRegExp', () => {
  it('gives what the pattern gives on this thread: match, split, matchAll, replace, replaceAll, exec', () => {
    for (const [source, flags] of [
      [LLAMA3.replace('(?i:', '(?:'), 'gu'],
      ['(\\s+)', 'g'],
      ['a|(b)', 'gu'],
      ['x*', 'g'],
    ] as const) {
      const plain = new RegExp(source, flags);
      const guarded = new GuardedRegExp(plain, 'test.json');
      for (const t of TEXTS) {
        expect(t.match(guarded)).toEqual(t.match(plain));
        expect(t.split(guarded)).toEqual(t.split(plain));
        expect(t.split(guarded, 2)).toEqual(t.split(plain, 2));
        expect([...t.matchAll(guarded)].map((m) => [[...m], m.index])).toEqual(
          [...t.matchAll(plain)].map((m) => [[...m], m.index]),
        );
        expect(t.replace(guarded, '<$&>')).toBe(t.replace(plain, '<$&>'));
        expect(t.replaceAll(guarded, '_')).toBe(t.replaceAll(plain, '_'));
        plain.lastIndex = 0;
        guarded.lastIndex = 0;
        expect(guarded.exec(t)?.index).toBe(plain.exec(t)?.index);
        expect(guarded.lastIndex).toBe(plain.lastIndex);
      }
    }
  });

  it('a pattern that backtracks without bound fails in about its budget, naming the pattern as the file spells it', async () => {
    const g = new GuardedRegExp(/(a+)+(?:(?=\n)|(?![\s\S]))/gu, 'tok.json', '(a+)+$');
    const t0 = performance.now();
    const e = await expectError(() => [...`${'a'.repeat(40)}!`.matchAll(g)], 'BAD_INPUT');
    const ms = performance.now() - t0;
    expect(e.message).toMatch(/^tok\.json: its pattern "\(a\+\)\+\$" took more than 2\.0 s on a text of 41 characters/);
    expect(ms).toBeGreaterThanOrEqual(PATTERN_BUDGET_MS - 50);
    expect(ms).toBeLessThan(PATTERN_BUDGET_MS + 5_000);
    // The worker was stopped and a new one serves the next call.
    expect('aaa'.match(g)).toEqual(['aaa']);
  }, 20_000);
});

describe('a tokenizer with patterns of its own', () => {
  it("encodes exactly as it would unguarded (a Llama-3 Split before ModernBERT's ByteLevel step)", () => {
    const json = tokenizerJson();
    const withSplit = {
      ...json,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: LLAMA3 }, behavior: 'Isolated', invert: false },
          { ...(json.pre_tokenizer as object), use_regex: false },
        ],
      },
    };
    const guarded = Tokenizer.fromJSON(withSplit);
    const plain = Tokenizer.fromJSON(withSplit);
    // Put the pattern back on this thread (what the guard replaced) to compare.
    const split = (plain as unknown as { lib: { pre_tokenizer: { tokenizers: Array<{ pattern: RegExp }> } } }).lib
      .pre_tokenizer.tokenizers[0]!;
    expect(split.pattern).toBeInstanceOf(GuardedRegExp);
    split.pattern = new RegExp(split.pattern.source, split.pattern.flags);
    for (const t of TEXTS) expect(guarded.encode(t).ids).toEqual(plain.encode(t).ids);
  });

  it("ModernBERT's own tokenizer has none to guard: its ByteLevel split stays ours, on this thread", () => {
    const tok = Tokenizer.fromJSON(tokenizerJson());
    const bl = (tok as unknown as { lib: { pre_tokenizer: { pattern: RegExp } } }).lib.pre_tokenizer;
    expect(bl.pattern).not.toBeInstanceOf(GuardedRegExp);
  });
});
