import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModernBertError } from '../src/errors.js';
import { BYTE_LEVEL_SPLIT, loadTokenizer, Tokenizer } from '../src/tokenizer/tokenizer.js';

const FIXTURE = 'test/fixtures/tokenizer';

interface GoldenCase {
  text: string | [string, string];
  input_ids: number[];
  tokens?: string[];
  decoded?: string;
}

/** Rows of an int64 tensor of a safetensors file, read straight from its bytes. */
function int64Rows(path: string, name: string): number[][] {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const t = header[name]!;
  expect(t.dtype).toBe('I64');
  const [rows, cols] = t.shape as [number, number];
  const start = 8 + headerLen + t.data_offsets[0];
  return Array.from({ length: rows }, (_, r) =>
    Array.from({ length: cols }, (_, c) => Number(buf.readBigInt64LE(start + 8 * (r * cols + c)))),
  );
}

async function expectError(p: Promise<unknown>, code: string): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ModernBertError);
  expect((e as ModernBertError).code).toBe(code);
}

describe('tokenizer: golden encodings of the Rust library', () => {
  const golden = JSON.parse(readFileSync(join(FIXTURE, 'golden_encodings.json'), 'utf8')) as {
    special_ids: Record<string, number>;
    vocab_size: number;
    cases: GoldenCase[];
  };

  it('reproduces ids, tokens and decoded text of every case', async () => {
    const t = await loadTokenizer(FIXTURE);
    for (const c of golden.cases) {
      const e = Array.isArray(c.text) ? t.encode(c.text[0], c.text[1]) : t.encode(c.text);
      expect(e.ids, JSON.stringify(c.text)).toEqual(c.input_ids);
      if (c.tokens) expect(e.tokens, JSON.stringify(c.text)).toEqual(c.tokens);
      if (c.decoded !== undefined) expect(t.decode(e.ids), JSON.stringify(c.text)).toBe(c.decoded);
    }
  });

  it('knows the special tokens and the vocabulary size', async () => {
    const t = await loadTokenizer(FIXTURE);
    const s = golden.special_ids;
    expect([t.unkTokenId, t.clsTokenId, t.sepTokenId, t.padTokenId, t.maskTokenId]).toEqual([
      s['[UNK]'],
      s['[CLS]'],
      s['[SEP]'],
      s['[PAD]'],
      s['[MASK]'],
    ]);
    expect(t.vocabSize).toBe(golden.vocab_size);
    expect(t.tokenToId('[MASK]')).toBe(s['[MASK]']);
    expect(t.idToToken(s['[MASK]']!)).toBe('[MASK]');
    expect(t.idToToken(golden.vocab_size)).toBeUndefined();
    expect(t.isSpecial(s['[CLS]']!)).toBe(true);
    expect(t.isSpecial(51)).toBe(false);
    expect(t.modelMaxLength).toBe(512);
  });

  it('gives the second text of a pair the template type ids', async () => {
    const t = await loadTokenizer(FIXTURE);
    const e = t.encode('First segment.', 'Second [MASK] segment.');
    expect(e.typeIds).toEqual(e.ids.map(() => 0));
    expect(e.tokens[0]).toBe('[CLS]');
  });
});

describe("tokenizer: the checkpoints' own tokenizers", () => {
  it('tiny-mlm encodes the texts of its goldens to the stored input ids', async () => {
    const dir = 'test/fixtures/tiny-mlm';
    const t = await loadTokenizer(dir);
    const texts = (JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as { texts: string[] }).texts;
    const rows = int64Rows(join(dir, 'golden.safetensors'), 'batch_padded.input_ids');
    const masks = int64Rows(join(dir, 'golden.safetensors'), 'batch_padded.attention_mask');
    texts.forEach((text, i) => {
      const n = masks[i]!.reduce((a, b) => a + b, 0);
      expect(t.encode(text).ids, text).toEqual(rows[i]!.slice(0, n));
      expect(rows[i]!.slice(n).every((id) => id === t.padTokenId)).toBe(true);
    });
  });

  it('mini-trained encodes its prompts to the stored input ids, one mask each', async () => {
    const t = await loadTokenizer('models/mini-trained');
    const golden = JSON.parse(readFileSync('test/fixtures/mini-trained/golden.json', 'utf8')) as { texts: string[] };
    const rows = int64Rows('test/fixtures/mini-trained/golden.safetensors', 'prompts.input_ids');
    const masks = int64Rows('test/fixtures/mini-trained/golden.safetensors', 'prompts.attention_mask');
    golden.texts.forEach((text, i) => {
      const n = masks[i]!.reduce((a, b) => a + b, 0);
      expect(t.encode(text).ids, text).toEqual(rows[i]!.slice(0, n));
    });
    const e = t.encode('She opened the [MASK] and walked into the room.');
    expect(e.ids.filter((id) => id === t.maskTokenId)).toHaveLength(1);
    expect(t.maskTokenId).toBe(4095);
  });
});

// Expected values below come from the Rust library (tokenizers 0.23.2) on the fixture tokenizer; each
// case is one where @huggingface/tokenizers alone gives a different answer.
describe('tokenizer: where the JavaScript library departs from Rust', () => {
  it('strips Unicode White_Space (NEL, not BOM) left of [MASK]', async () => {
    const t = await loadTokenizer(FIXTURE);
    expect(t.encode('a \u0085[MASK]').ids).toEqual([1001, 64, 1004, 1002]);
    expect(t.encode('a\ufeff[MASK]').ids).toEqual([1001, 64, 171, 119, 123, 1004, 1002]);
    expect(t.encode('a\n\t [MASK]').ids).toEqual([1001, 64, 1004, 1002]);
  });

  it('splits byte-level words on Oniguruma whitespace', () => {
    const split = (s: string): string[] => s.match(BYTE_LEVEL_SPLIT) ?? [];
    expect(split('a\u0085\u0085!')).toEqual(['a', '\u0085', '\u0085', '!']);
    expect(split('x\ufeff!')).toEqual(['x', '\ufeff!']);
    expect(split('a \ufeffb')).toEqual(['a', ' \ufeff', 'b']);
    expect(split('a  \u3000b')).toEqual(['a', '  ', '\u3000', 'b']);
  });

  it('decodes without cleaning up spaces unless tokenizer_config asks, and tolerates empty or unknown ids', async () => {
    const t = await loadTokenizer(FIXTURE);
    const text = "Hello , world . It 's n't";
    expect(t.decode(t.encode(text).ids)).toBe(text);
    expect(t.decode([])).toBe('');
    expect(t.decode([5, 99999, -1, 6])).toBe("&'");
    expect(t.decode(t.encode('[CLS] x [MASK]').ids, { skipSpecialTokens: false })).toBe('[CLS][CLS] x[MASK][SEP]');

    const json = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8')) as unknown;
    const cleaning = Tokenizer.fromJSON(json, { clean_up_tokenization_spaces: true });
    expect(cleaning.decode(cleaning.encode(text).ids)).toBe("Hello, world. It'sn't");
  });

  it('honours single_word, rstrip and normalized added tokens', () => {
    const json = JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8')) as {
      added_tokens: unknown[];
      normalizer: unknown;
    };
    json.added_tokens.push(
      { id: 1005, content: 'zz', single_word: true, lstrip: false, rstrip: false, normalized: false, special: false },
      { id: 1006, content: '<r>', single_word: false, lstrip: false, rstrip: true, normalized: false, special: true },
      {
        id: 1007,
        content: 'hello',
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: true,
        special: false,
      },
    );
    json.normalizer = { type: 'Lowercase' };
    const t = Tokenizer.fromJSON(json);
    expect(t.encode('zz azz zz. zzz (zz)').ids).toEqual([
      1001, 1005, 267, 89, 89, 220, 1005, 13, 220, 89, 89, 89, 341, 1005, 8, 1002,
    ]);
    expect(t.encode('<r>   x <r>\u0085y').ids).toEqual([1001, 1006, 87, 220, 1006, 88, 1002]);
    expect(t.encode('HELLO there, Hello<r> hello').ids).toEqual([
      1001, 1007, 295, 263, 11, 220, 1007, 1006, 1007, 1002,
    ]);
  });
});

describe('tokenizer: token spans in the text (encodeWithOffsets)', () => {
  const json = (): Record<string, unknown> =>
    JSON.parse(readFileSync(join(FIXTURE, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;

  it("gives every token its span: the ids are encode's, the template's special tokens [0, 0], spaces left out", async () => {
    const t = await loadTokenizer(FIXTURE);
    const text = 'The sky is [MASK].';
    const e = t.encodeWithOffsets(text);
    expect(e.ids).toEqual(t.encode(text).ids);
    // T|he| s|k|y| is|[MASK]|. : the [MASK] span holds the space its lstrip takes, as Rust's does.
    expect(e.offsets).toEqual([
      [0, 0],
      [0, 1],
      [1, 3],
      [4, 5],
      [5, 6],
      [6, 7],
      [8, 10],
      [10, 17],
      [17, 18],
      [0, 0],
    ]);
    expect(e.offsets.map(([a, b]) => text.slice(a, b))).toEqual([
      '',
      'T',
      'he',
      's',
      'k',
      'y',
      'is',
      ' [MASK]',
      '.',
      '',
    ]);
  });

  it('slices every golden text to the text of each whole-character token, in order, in UTF-16 units', async () => {
    const t = await loadTokenizer(FIXTURE);
    const golden = JSON.parse(readFileSync(join(FIXTURE, 'golden_encodings.json'), 'utf8')) as { cases: GoldenCase[] };
    const texts = [
      ...golden.cases.flatMap((c) => (Array.isArray(c.text) ? c.text : [c.text])),
      'a \u{1F680}b\u00e9  \t\nc',
    ];
    for (const text of texts) {
      const e = t.encodeWithOffsets(text);
      expect(e.ids, text).toEqual(t.encode(text).ids);
      let last = 0;
      e.ids.forEach((id, i) => {
        const [a, b] = e.offsets[i]!;
        if (t.isSpecial(id)) return;
        expect(a, `${text}: token ${i}`).toBeGreaterThanOrEqual(last);
        expect(b).toBeLessThanOrEqual(text.length);
        last = a;
        const decoded = t.decode([id]);
        // A token of whole characters slices to its own text (without the spaces a span leaves out); a token of
        // part of a character's bytes decodes to U+FFFD and spans that whole character.
        if (!decoded.includes('\ufffd'))
          expect(text.slice(a, b), `${text}: token ${i}`).toBe(decoded.replace(/^ +| +$/g, ''));
        else expect([...text.slice(a, b)]).toHaveLength(1);
      });
    }
    const e = t.encodeWithOffsets('x \u{1F680}');
    const rocket = e.offsets.filter(([a, b]) => b > a && a >= 2);
    expect(rocket.length).toBeGreaterThan(1);
    for (const span of rocket) expect(span).toEqual([2, 4]); // one astral character: two code units
  });

  it('maps a normalized text back to the original, and a prefix space takes no room', () => {
    const j = json();
    j.normalizer = { type: 'Lowercase' };
    (j.pre_tokenizer as Record<string, unknown>).add_prefix_space = true;
    const t = Tokenizer.fromJSON(j);
    const text = 'HELLO there';
    const e = t.encodeWithOffsets(text);
    expect(e.ids).toEqual(t.encode(text).ids);
    const words = e.offsets.slice(1, -1).map(([a, b]) => text.slice(a, b));
    expect(words.join('')).toBe('HELLOthere');
    expect(e.offsets[1]![0]).toBe(0);
  });

  it("keeps the text's own spans through a post-processor that is not a template", () => {
    const j = json();
    j.post_processor = { type: 'BertProcessing', sep: ['[SEP]', 1002], cls: ['[CLS]', 1001] };
    const t = Tokenizer.fromJSON(j);
    const e = t.encodeWithOffsets('Hi there');
    expect(e.ids[0]).toBe(1001);
    expect(e.offsets[0]).toEqual([0, 0]);
    expect(e.offsets.at(-1)).toEqual([0, 0]);
    expect(
      e.offsets
        .slice(1, -1)
        .map(([a, b]) => 'Hi there'.slice(a, b))
        .join(''),
    ).toBe('Hithere');
  });
});

describe('tokenizer: errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mbane-tok-'));

  it('reports a folder without tokenizer.json as FILE_NOT_FOUND', async () => {
    await expectError(loadTokenizer(join(dir, 'nowhere')), 'FILE_NOT_FOUND');
  });

  it('reports invalid JSON and non-tokenizers as CORRUPT_FILE', async () => {
    const bad = mkdtempSync(join(dir, 'bad-'));
    writeFileSync(join(bad, 'tokenizer.json'), '{"model": ');
    await expectError(loadTokenizer(bad), 'CORRUPT_FILE');

    const notTok = mkdtempSync(join(dir, 'not-'));
    writeFileSync(join(notTok, 'tokenizer.json'), '{"vocab_size": 3}');
    await expectError(loadTokenizer(notTok), 'CORRUPT_FILE');

    const unknownModel = mkdtempSync(join(dir, 'model-'));
    writeFileSync(join(unknownModel, 'tokenizer.json'), '{"model": {"type": "Mystery"}}');
    await expectError(loadTokenizer(unknownModel), 'CORRUPT_FILE');

    const badConfig = mkdtempSync(join(dir, 'config-'));
    writeFileSync(join(badConfig, 'tokenizer.json'), readFileSync(join(FIXTURE, 'tokenizer.json')));
    writeFileSync(join(badConfig, 'tokenizer_config.json'), 'not json');
    await expectError(loadTokenizer(badConfig), 'CORRUPT_FILE');
  });

  it('works without tokenizer_config.json', async () => {
    const only = mkdtempSync(join(dir, 'only-'));
    writeFileSync(join(only, 'tokenizer.json'), readFileSync(join(FIXTURE, 'tokenizer.json')));
    const t = await loadTokenizer(only);
    expect(t.maskTokenId).toBe(1004);
    expect(t.modelMaxLength).toBeUndefined();
  });
});
