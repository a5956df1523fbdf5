// Added tokens ([MASK], [CLS] ...) found in a text as Rust's AddedVocabulary finds them (tokenizer.ts lists
// where the JavaScript library departs from it): leftmost-longest matches, `single_word`, and `lstrip`/`rstrip`
// by Unicode White_Space.

import { ModernBertError } from '../errors.js';

/** An added token of tokenizer.json. */
export interface AddedTokenSpec {
  id: number;
  content: string;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** A piece of text, or an added token that matched it. */
export interface Piece {
  text: string;
  token?: AddedTokenSpec;
}

// Unicode White_Space, which is both Oniguruma's `\s` and Rust's `char::is_whitespace`.
export const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const IS_WS = new RegExp(`^[${WS}]$`, 'u');

// Rust regex's Unicode `\w`, which decides `single_word` boundaries.
const WORD_AT_END = /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]$/u;
const WORD_AT_START = /^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u;

/** The added tokens of tokenizer.json. */
export function readAddedTokens(raw: unknown, source: string): AddedTokenSpec[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw))
    throw new ModernBertError('CORRUPT_FILE', `${source}: "added_tokens" is not a list`, { file: source });
  return raw.map((t: unknown, i: number) => {
    if (!isObject(t) || typeof t.content !== 'string' || t.content === '' || !Number.isInteger(t.id)) {
      throw new ModernBertError(
        'CORRUPT_FILE',
        `${source}: added_tokens[${i}] needs a non-empty "content" and an integer "id"`,
        { file: source, index: i },
      );
    }
    const special = t.special === true;
    return {
      id: t.id as number,
      content: t.content,
      singleWord: t.single_word === true,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      // Rust's default: special tokens match the raw text, others the normalized text.
      normalized: typeof t.normalized === 'boolean' ? t.normalized : !special,
      special,
    };
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Finds added tokens in a text the way Rust's AddedVocabulary does: leftmost-longest, non-overlapping
 * matches; a `single_word` match that touches a word character is dropped; `lstrip`/`rstrip` widen a
 * match over neighbouring whitespace, which then belongs to no other piece.
 */
export class AddedTokenMatcher {
  private readonly root = new TrieNode();

  constructor(entries: Array<[string, AddedTokenSpec]>) {
    for (const [pattern, token] of entries) {
      if (pattern === '') continue;
      let node = this.root;
      for (let k = 0; k < pattern.length; k++) node = node.child(pattern[k]!);
      node.token ??= token;
    }
  }

  split(text: string): Piece[] {
    const pieces: Piece[] = [];
    let done = 0; // end of the last piece emitted
    let i = 0;
    while (i < text.length) {
      const m = this.longestAt(text, i);
      if (!m) {
        i++;
        continue;
      }
      let start = i;
      let stop = m.end;
      i = m.end;
      const t = m.token;
      if (t.singleWord && (WORD_AT_END.test(text.slice(0, start)) || WORD_AT_START.test(text.slice(stop)))) continue;
      if (t.lstrip) while (start > done && isWhitespace(text, start - 1)) start--;
      if (t.rstrip) while (stop < text.length && isWhitespace(text, stop)) stop++;
      if (start > done) pieces.push({ text: text.slice(done, start) });
      pieces.push({ text: text.slice(start, stop), token: t });
      done = stop;
      i = Math.max(i, stop);
    }
    if (done < text.length) pieces.push({ text: text.slice(done) });
    return pieces;
  }

  private longestAt(text: string, at: number): { end: number; token: AddedTokenSpec } | undefined {
    let node: TrieNode | undefined = this.root;
    let best: { end: number; token: AddedTokenSpec } | undefined;
    for (let j = at; j < text.length; j++) {
      node = node.children.get(text[j]!);
      if (!node) break;
      if (node.token) best = { end: j + 1, token: node.token };
    }
    return best;
  }
}

// Keyed by UTF-16 code unit, as the text is scanned.
class TrieNode {
  readonly children = new Map<string, TrieNode>();
  token: AddedTokenSpec | undefined;

  child(unit: string): TrieNode {
    let n = this.children.get(unit);
    if (!n) {
      n = new TrieNode();
      this.children.set(unit, n);
    }
    return n;
  }
}

// Every White_Space character is in the BMP, so one code unit decides.
function isWhitespace(text: string, at: number): boolean {
  return IS_WS.test(text[at]!);
}
