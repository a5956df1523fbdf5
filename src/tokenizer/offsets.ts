// Where each token of an encoding comes from in the input text: [start, end) in UTF-16 code units, so that
// `text.slice(start, end)` is the token's text (Rust's tokenizers count Unicode code points, which differ from
// JavaScript's indices after any character outside the BMP). Special tokens that the post-processor adds get
// [0, 0], as in Rust.
//
// How a span is found, piece by piece of the pipeline in tokenizer.ts:
// - a normalized text is mapped back character by character (normalize(text) must equal the concatenation of
//   every code point normalized alone; otherwise every token of the piece spans the whole piece);
// - each pre-tokenized word is found in its piece (a byte-level word decoded back to text; the space that
//   add_prefix_space prepends takes no room in the text);
// - a byte-level token covers a run of its word's UTF-8 bytes, mapped back to code units (a token that holds
//   part of a character's bytes spans the whole character); other models' tokens are found in their word
//   (their continuing-subword prefix removed), or span the whole word (an unknown word's [UNK]).
// - trim_offsets (ByteLevel): the spaces a token starts or ends with are left out of its span. Rust applies
//   this only when ByteLevel is also the post-processor (ModernBERT's is TemplateProcessing, so Rust's span of
//   "Ġsky" starts at the space); we always do, so that a span is the word itself, as token classification needs.

/** A span [start, end) of the input text. */
export type Span = [number, number];

/** GPT-2's reversible map from bytes to printable characters, inverted: the byte of each character. */
export const BYTE_OF_CHAR: ReadonlyMap<string, number> = (() => {
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const map = new Map<string, number>();
  let next = 256;
  for (let b = 0; b < 256; b++) map.set(String.fromCharCode(printable(b) ? b : next++), b);
  return map;
})();

const lossyUtf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** How the tokenizer's words and tokens relate to the text (read from tokenizer.json). */
export interface AlignmentStyle {
  /** Words and tokens are byte-level characters (a ByteLevel pre-tokenizer). */
  byteLevel: boolean;
  /** ByteLevel's trim_offsets: spans leave out leading and trailing spaces. */
  trimOffsets: boolean;
  /** The model's prefix of a word's later pieces ("##" for WordPiece), removed before a token is looked for. */
  continuingSubwordPrefix: string | undefined;
}

/**
 * Maps each position of `normalized` (and its end) to a position of `text`, when normalizing code point by code
 * point gives the same string; undefined otherwise.
 */
export function alignNormalized(
  text: string,
  normalized: string,
  normalize: (s: string) => string,
): Int32Array | undefined {
  const map = new Int32Array(normalized.length + 1);
  if (normalized === text) {
    for (let i = 0; i <= text.length; i++) map[i] = i;
    return map;
  }
  let at = 0;
  let i = 0;
  for (const cp of text) {
    const n = normalize(cp);
    if (normalized.slice(at, at + n.length) !== n) return undefined;
    for (let k = 0; k < n.length; k++) map[at + k] = i;
    at += n.length;
    i += cp.length;
  }
  if (at !== normalized.length) return undefined;
  map[at] = text.length;
  return map;
}

/** The text a pre-tokenized word stands for: byte-level characters decoded, others as they are. */
export function wordText(word: string, byteLevel: boolean): string {
  if (!byteLevel) return word;
  const bytes: number[] = [];
  for (const ch of word) {
    const b = BYTE_OF_CHAR.get(ch);
    if (b === undefined) return word; // not byte-level after all
    bytes.push(b);
  }
  return lossyUtf8.decode(Uint8Array.from(bytes));
}

/**
 * Spans (in `piece`) of the tokens of each word: `words` as the pre-tokenizer gave them, `tokens[w]` the model's
 * tokens of word w. A word that cannot be found gets empty spans where the search stands.
 */
export function tokenSpans(
  piece: string,
  words: readonly string[],
  tokens: readonly (readonly string[])[],
  style: AlignmentStyle,
): Span[][] {
  let cursor = 0;
  return words.map((word, w) => {
    const text = wordText(word, style.byteLevel);
    let start = -1;
    let virtual = 0; // bytes of the word that are not in the text (add_prefix_space)
    if (piece.startsWith(text, cursor)) start = cursor;
    else if (style.byteLevel && text.startsWith(' ') && piece.startsWith(text.slice(1), cursor))
      [start, virtual] = [cursor, 1];
    else start = piece.indexOf(text, cursor);
    if (start < 0) return tokens[w]!.map((): Span => [cursor, cursor]);
    const shown = text.slice(virtual);
    cursor = start + shown.length;
    const spans = style.byteLevel
      ? byteSpans(shown, virtual, tokens[w]!)
      : stringSpans(shown, tokens[w]!, style.continuingSubwordPrefix);
    return spans.map(([a, b]): Span => {
      const span: Span = [start + a, start + b];
      return style.trimOffsets ? trimSpaces(piece, span) : span;
    });
  });
}

/** Byte-level tokens of a word whose text is `text` (after `virtual` bytes that the text lacks): each token is one byte per character. */
function byteSpans(text: string, virtual: number, tokens: readonly string[]): Span[] {
  // For each byte of the text's UTF-8: the code unit where its character starts, and where that character ends.
  const startOf: number[] = [];
  const endOf: number[] = [];
  let unit = 0;
  for (const cp of text) {
    const c = cp.codePointAt(0)!;
    const bytes = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    for (let k = 0; k < bytes; k++) {
      startOf.push(unit);
      endOf.push(unit + cp.length);
    }
    unit += cp.length;
  }
  const total = startOf.length;
  let at = -virtual;
  return tokens.map((token): Span => {
    const from = Math.min(Math.max(at, 0), total);
    at += token.length;
    const to = Math.min(Math.max(at, 0), total);
    if (to <= from)
      return [from === total ? text.length : startOf[from]!, from === total ? text.length : startOf[from]!];
    return [startOf[from]!, endOf[to - 1]!];
  });
}

/** Tokens found one after another in the word's text; one that is not found spans the whole word. */
function stringSpans(text: string, tokens: readonly string[], prefix: string | undefined): Span[] {
  let at = 0;
  return tokens.map((token, i): Span => {
    let t = token.replaceAll('\u2581', ' '); // Metaspace's word marker
    if (i > 0 && prefix && t.startsWith(prefix)) t = t.slice(prefix.length);
    const found = t === '' ? -1 : text.indexOf(t, at);
    if (found < 0) return [0, text.length];
    at = found + t.length;
    return [found, at];
  });
}

/** A span without the spaces it starts or ends with (an all-space span shrinks to its end). */
function trimSpaces(text: string, [start, end]: Span): Span {
  let a = start;
  let b = end;
  while (a < b && text[a] === ' ') a++;
  while (b > a && text[b - 1] === ' ') b--;
  return [a, b];
}
