// Tokenizer of a model folder (tokenizer.json + tokenizer_config.json), bit-compatible with the Rust
// `tokenizers` library that produced the checkpoints' reference encodings.
//
// @huggingface/tokenizers supplies the normalizer, pre-tokenizer, model (BPE merges) and most decoders.
// Four steps where it departs from the Rust library are done here instead:
// - added tokens ([MASK] ...): Rust strips `lstrip`/`rstrip` whitespace by Unicode White_Space (NEL
//   U+0085 yes, BOM U+FEFF no) and honours `single_word`; the library uses String.trim and ignores
//   `single_word`;
// - the ByteLevel split regex: Oniguruma's `\s` is White_Space, JavaScript's adds U+FEFF and lacks U+0085;
// - TemplateProcessing: Rust inserts the ids listed in `special_tokens`, the library looks the name up;
// - decoding: Rust byte-decodes every token (added ones too) and skips unknown ids, the library keeps
//   added tokens verbatim, throws on an empty list, and cleans up spaces ("a ." -> "a.") unless told
//   not to, which transformers does only when tokenizer_config.json asks for it.

import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tokenizersLib from '@huggingface/tokenizers';
import { ModernBertError } from '../errors.js';
import { readJsonFile as readJson } from '../io/files.js';
import { READ_LIMITS } from '../io/limits.js';
import { checkTokenizerJson } from './tokenizer-json.js';
import { guardFilePatterns } from './tokenizer-patterns.js';
import { AddedTokenMatcher, readAddedTokens, WS } from './added-tokens.js';
import { alignNormalized, BYTE_OF_CHAR, tokenSpans, type AlignmentStyle, type Span } from './offsets.js';

// The package's .d.ts files import each other without file extensions, which NodeNext resolution
// cannot follow, so TypeScript would see `any`. These are the parts we use, typed from its types/.
interface LibPreTokenizer {
  (text: string, options?: { section_index?: number }): string[];
}
interface LibTokenizer {
  normalizer: ((text: string) => string) | null;
  pre_tokenizer: LibPreTokenizer | null;
  model: ((words: string[]) => string[]) & { tokens_to_ids: Map<string, number> };
  post_processor:
    ((a: string[], b: string[] | null, addSpecial: boolean) => { tokens: string[]; token_type_ids?: number[] }) | null;
  decoder: ((tokens: string[]) => string) | null;
  get_vocab(withAddedTokens: boolean): Map<string, number>;
  id_to_token(id: number): string | undefined;
  token_to_id(token: string): number | undefined;
}
const lib = tokenizersLib as unknown as {
  Tokenizer: new (tokenizerJson: object, config: object) => LibTokenizer;
  ByteLevelPreTokenizer: abstract new () => LibPreTokenizer & { pattern: RegExp };
  SequencePreTokenizer: abstract new () => LibPreTokenizer & { tokenizers: Array<LibPreTokenizer | null> };
};

/** The result of encoding one text (or a pair): ids with the post-processor's special tokens. */
export interface Encoding {
  ids: number[];
  /** The vocabulary token of each id (what transformers' convert_ids_to_tokens returns). */
  tokens: string[];
  /** Segment of each id (0 for the first text, as the template assigns for the second). */
  typeIds: number[];
}

/** An encoding with where each token comes from in the text (offsets.ts); [0, 0] for the template's special tokens. */
export interface EncodingWithOffsets extends Encoding {
  offsets: Span[];
}

export interface DecodeOptions {
  /** Leave out special tokens ([CLS], [SEP], [MASK], ...); default true, as in the Rust library. */
  skipSpecialTokens?: boolean;
}

interface TemplateItem {
  special?: string;
  sequence?: 'A' | 'B';
  typeId: number;
}

interface Template {
  single: TemplateItem[];
  pair: TemplateItem[];
  specialIds: Map<string, number[]>;
}

/** GPT-2's byte-level split (the Rust ByteLevel pre-tokenizer's regex) with Oniguruma's `\s`. */
export const BYTE_LEVEL_SPLIT = new RegExp(
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`,
  'gu',
);

/** A tokenizer loaded from tokenizer.json; see loadTokenizer. */
export class Tokenizer {
  /** Largest id + 1 over the model vocabulary and the added tokens. */
  readonly vocabSize: number;
  readonly maskTokenId: number | undefined;
  readonly padTokenId: number | undefined;
  readonly clsTokenId: number | undefined;
  readonly sepTokenId: number | undefined;
  readonly unkTokenId: number | undefined;
  /** tokenizer_config.json's model_max_length, when it gives one. */
  readonly modelMaxLength: number | undefined;

  private readonly lib: LibTokenizer;
  private readonly rawMatcher: AddedTokenMatcher;
  private readonly normalizedMatcher: AddedTokenMatcher;
  private readonly template: Template | undefined;
  private readonly specialIds: Set<number>;
  private readonly byteLevelDecoder: boolean;
  private readonly cleanUpSpaces: boolean;
  private readonly alignment: AlignmentStyle;

  private constructor(json: Record<string, unknown>, config: Record<string, unknown>, source: string) {
    try {
      // The library requires these keys even when a tokenizer has no such component.
      this.lib = new lib.Tokenizer(
        { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...json },
        config,
      );
    } catch (e) {
      throw new ModernBertError(
        'CORRUPT_FILE',
        `${source}: not a tokenizer this library can read (${(e as Error).message})`,
        { file: source },
      );
    }
    useOnigurumaWhitespace(this.lib.pre_tokenizer);
    // The file's own regular expressions run under a time budget (tokenizer-patterns.ts).
    guardFilePatterns([this.lib.normalizer, this.lib.pre_tokenizer, this.lib.decoder], source);

    const added = readAddedTokens(json.added_tokens, source);
    this.rawMatcher = new AddedTokenMatcher(added.filter((t) => !t.normalized).map((t) => [t.content, t]));
    this.normalizedMatcher = new AddedTokenMatcher(
      added.filter((t) => t.normalized).map((t) => [this.normalize(t.content), t]),
    );
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    this.template = readTemplate(json.post_processor, source);
    this.byteLevelDecoder = isObject(json.decoder) && json.decoder.type === 'ByteLevel';
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;
    this.alignment = alignmentStyle(json);

    let maxId = -1;
    for (const id of this.lib.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    const special = (field: string, fallback: string): number | undefined => {
      const v = config[field];
      const name = typeof v === 'string' ? v : isObject(v) && typeof v.content === 'string' ? v.content : fallback;
      return this.tokenToId(name);
    };
    this.maskTokenId = special('mask_token', '[MASK]');
    this.padTokenId = special('pad_token', '[PAD]');
    this.clsTokenId = special('cls_token', '[CLS]');
    this.sepTokenId = special('sep_token', '[SEP]');
    this.unkTokenId = special('unk_token', '[UNK]');
    this.modelMaxLength = typeof config.model_max_length === 'number' ? config.model_max_length : undefined;
  }

  /** Builds a tokenizer from parsed tokenizer.json (and tokenizer_config.json) contents. */
  static fromJSON(tokenizerJson: unknown, config: unknown = {}, source = 'tokenizer.json'): Tokenizer {
    if (!isObject(tokenizerJson) || !isObject(tokenizerJson.model)) {
      throw new ModernBertError('CORRUPT_FILE', `${source}: not a tokenizer (no "model" object)`, { file: source });
    }
    if (!isObject(config)) {
      throw new ModernBertError('CORRUPT_FILE', `tokenizer config of ${source} is not a JSON object`, { file: source });
    }
    checkTokenizerJson(tokenizerJson, source);
    return new Tokenizer(tokenizerJson, config, source);
  }

  /** Encodes a text (or a pair) with the post-processor's special tokens, e.g. [CLS] ... [SEP]. */
  encode(text: string, pair?: string): Encoding {
    const a = this.encodeText(text, false);
    const b = pair === undefined ? undefined : this.encodeText(pair, false);
    const { ids, typeIds } = this.postProcess(a, b);
    return { ids, tokens: ids.map((id) => this.idToToken(id)!), typeIds };
  }

  /** As encode, with each token's span in its text (offsets.ts): `text.slice(start, end)` is what it stands for. */
  encodeWithOffsets(text: string, pair?: string): EncodingWithOffsets {
    const a = this.encodeText(text, true);
    const b = pair === undefined ? undefined : this.encodeText(pair, true);
    const { ids, typeIds, offsets } = this.postProcess(a, b);
    return { ids, tokens: ids.map((id) => this.idToToken(id)!), typeIds, offsets };
  }

  /** Turns ids back into text (unknown ids are skipped, as the Rust library does). */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? true;
    const tokens: string[] = [];
    for (const id of ids) {
      const token = this.idToToken(id);
      if (token !== undefined && !(skip && this.specialIds.has(id))) tokens.push(token);
    }
    let text: string;
    if (tokens.length === 0) text = '';
    else if (this.byteLevelDecoder) text = byteLevelDecode(tokens);
    else if (this.lib.decoder) text = this.lib.decoder(tokens);
    else text = tokens.join(' ');
    return this.cleanUpSpaces ? cleanUpTokenization(text) : text;
  }

  /** The token string of an id, or undefined when the id is not in the vocabulary. */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.lib.id_to_token(id) : undefined;
  }

  /** The id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.lib.token_to_id(token);
  }

  /** Whether an id is a special added token ([CLS], [MASK], ...). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  // Rust's pipeline: split off added tokens in the raw text, normalize the rest, split off normalized
  // added tokens, pre-tokenize and run the model on each remaining piece. Spans only when asked (they cost a
  // model call per word).
  private encodeText(text: string, withSpans: boolean): Encoded {
    const out: Encoded = { ids: [], spans: withSpans ? [] : undefined };
    let base = 0; // where the raw piece starts in the text
    this.rawMatcher.split(text).forEach((piece, sectionIndex) => {
      const pieceStart = base;
      base += piece.text.length;
      if (piece.token) return void push(out, [piece.token.id], () => [[pieceStart, pieceStart + piece.text.length]]);
      const normalized = this.normalize(piece.text);
      // Positions in the normalized piece, back to the text (coarse: the whole piece, when no alignment exists).
      const align = withSpans ? alignNormalized(piece.text, normalized, (s) => this.normalize(s)) : undefined;
      const back = ([a, b]: Span): Span =>
        align ? [pieceStart + align[a]!, pieceStart + align[b]!] : [pieceStart, pieceStart + piece.text.length];
      let at = 0;
      for (const sub of this.normalizedMatcher.split(normalized)) {
        const subStart = at;
        at += sub.text.length;
        if (sub.token) push(out, [sub.token.id], () => [back([subStart, subStart + sub.text.length])]);
        else
          this.appendModelTokens(out, sub.text, sectionIndex, (span) => back([subStart + span[0], subStart + span[1]]));
      }
    });
    return out;
  }

  private normalize(text: string): string {
    return this.lib.normalizer ? this.lib.normalizer(text) : text;
  }

  private appendModelTokens(out: Encoded, text: string, sectionIndex: number, back: (span: Span) => Span): void {
    if (text.length === 0 || !this.lib.model) return;
    const words = this.lib.pre_tokenizer ? this.lib.pre_tokenizer(text, { section_index: sectionIndex }) : [text];
    const known = (piece: string) => this.lib.model.tokens_to_ids.get(piece);
    if (!out.spans) {
      // A piece outside the vocabulary is dropped when the model has no unknown token, as in Rust.
      for (const piece of this.lib.model(words)) {
        const id = known(piece);
        if (id !== undefined) out.ids.push(id);
      }
      return;
    }
    const tokens = words.map((w) => this.lib.model([w]));
    const spans = tokenSpans(text, words, tokens, this.alignment);
    tokens.forEach((pieces, w) =>
      pieces.forEach((piece, i) => {
        const id = known(piece);
        if (id === undefined) return;
        out.ids.push(id);
        out.spans!.push(back(spans[w]![i]!));
      }),
    );
  }

  private postProcess(a: Encoded, b: Encoded | undefined): { ids: number[]; typeIds: number[]; offsets: Span[] } {
    const special: Span = [0, 0];
    const spansOf = (e: Encoded | undefined): Span[] => e?.spans ?? [];
    if (this.template) {
      const ids: number[] = [];
      const typeIds: number[] = [];
      const offsets: Span[] = [];
      for (const item of b === undefined ? this.template.single : this.template.pair) {
        const seq = item.sequence === 'A' ? a : b;
        const part = item.special !== undefined ? this.template.specialIds.get(item.special)! : (seq?.ids ?? []);
        append(ids, part);
        for (let i = 0; i < part.length; i++) {
          typeIds.push(item.typeId);
          offsets.push(item.special !== undefined ? special : (spansOf(seq)[i] ?? special));
        }
      }
      return { ids, typeIds, offsets };
    }
    if (this.lib.post_processor) {
      // Bert/Roberta/ByteLevel processors work on token strings; map them back to ids, and each run of the
      // texts' own tokens back to their spans (what the processor added spans [0, 0]).
      const toTokens = (ids: number[]): string[] => ids.map((id) => this.idToToken(id)!);
      const out = this.lib.post_processor(toTokens(a.ids), b === undefined ? null : toTokens(b.ids), true);
      const ids = out.tokens.map((t) => this.tokenToId(t)!);
      const queue = [
        ...a.ids.map((id, i) => [id, spansOf(a)[i] ?? special] as const),
        ...(b?.ids ?? []).map((id, i) => [id, spansOf(b)[i] ?? special] as const),
      ];
      let q = 0;
      const offsets = ids.map((id): Span => (queue[q]?.[0] === id ? queue[q++]![1] : special));
      return { ids, typeIds: out.token_type_ids ?? ids.map(() => 0), offsets };
    }
    const ids = [...a.ids, ...(b?.ids ?? [])];
    return {
      ids,
      typeIds: [...a.ids.map(() => 0), ...(b?.ids ?? []).map(() => 1)],
      offsets: [
        ...a.ids.map((_, i) => spansOf(a)[i] ?? special),
        ...(b?.ids ?? []).map((_, i) => spansOf(b)[i] ?? special),
      ],
    };
  }
}

/** Ids of one text before post-processing, and their spans when asked for. */
interface Encoded {
  ids: number[];
  spans: Span[] | undefined;
}

/** Appends ids and, when spans are kept, theirs. */
function push(out: Encoded, ids: number[], spans: () => Span[]): void {
  append(out.ids, ids);
  if (out.spans) out.spans.push(...spans());
}

/**
 * Appends `items` to `to`. Not `to.push(...items)`: that passes every item as an argument, and a long document
 * (a megabyte of text is ordinary input) overflows the stack.
 */
function append(to: number[], items: ArrayLike<number>): void {
  for (let i = 0; i < items.length; i++) to.push(items[i]!);
}

/** Loads `tokenizer.json` (and `tokenizer_config.json` beside it when present), named by its folder or by the file itself. */
export async function loadTokenizer(dirOrFile: string): Promise<Tokenizer> {
  const file = /\.json$/i.test(dirOrFile) && !isDirectory(dirOrFile);
  const dir = file ? dirname(dirOrFile) : dirOrFile;
  const path = file ? dirOrFile : join(dir, 'tokenizer.json');
  const json = await readJsonFile(path, true, READ_LIMITS.tokenizer);
  const config = (await readJsonFile(join(dir, 'tokenizer_config.json'), false, READ_LIMITS.tokenizerConfig)) ?? {};
  return Tokenizer.fromJSON(json, config, path);
}

function isDirectory(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

// Regular files of bounded size only (src/io/files.ts): a FIFO or /dev/zero must not hang the load.
async function readJsonFile(path: string, required: boolean, maxBytes: number): Promise<unknown> {
  if (!required && !existsSync(path)) return undefined;
  return readJson(path, 'tokenizer file', maxBytes);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readTemplate(raw: unknown, source: string): Template | undefined {
  if (!isObject(raw) || raw.type !== 'TemplateProcessing') return undefined;
  const bad = (msg: string): never => {
    throw new ModernBertError('CORRUPT_FILE', `${source}: post_processor ${msg}`, { file: source });
  };
  const specialIds = new Map<string, number[]>();
  for (const [name, spec] of Object.entries(isObject(raw.special_tokens) ? raw.special_tokens : {})) {
    if (!isObject(spec) || !Array.isArray(spec.ids) || !spec.ids.every((id) => Number.isInteger(id)))
      bad(`special token "${name}" has no ids`);
    specialIds.set(name, (spec as { ids: number[] }).ids);
  }
  const items = (field: 'single' | 'pair'): TemplateItem[] => {
    const list = raw[field];
    if (!Array.isArray(list)) return bad(`has no "${field}" template`);
    return list.map((item: unknown): TemplateItem => {
      const s = isObject(item) && isObject(item.SpecialToken) ? item.SpecialToken : undefined;
      const q = isObject(item) && isObject(item.Sequence) ? item.Sequence : undefined;
      const typeId = Number((s ?? q)?.type_id ?? 0);
      if (s && typeof s.id === 'string' && specialIds.has(s.id)) return { special: s.id, typeId };
      if (q && (q.id === 'A' || q.id === 'B')) return { sequence: q.id, typeId };
      return bad(`${field} template item ${JSON.stringify(item)} is not understood`);
    });
  };
  return { single: items('single'), pair: items('pair'), specialIds };
}

/** How words and tokens relate to the text, for spans: byte-level or not, trim_offsets, the subword prefix. */
function alignmentStyle(json: Record<string, unknown>): AlignmentStyle {
  const pre = json.pre_tokenizer;
  const parts =
    isObject(pre) && pre.type === 'Sequence' && Array.isArray(pre.pretokenizers) ? pre.pretokenizers : [pre];
  const byteLevel = parts.find((p): p is Record<string, unknown> => isObject(p) && p.type === 'ByteLevel');
  const model = isObject(json.model) ? json.model : {};
  return {
    byteLevel: byteLevel !== undefined,
    trimOffsets: byteLevel?.trim_offsets === true,
    continuingSubwordPrefix:
      typeof model.continuing_subword_prefix === 'string' ? model.continuing_subword_prefix : undefined,
  };
}

/** Makes every ByteLevel pre-tokenizer split whitespace as Oniguruma does (see BYTE_LEVEL_SPLIT). */
function useOnigurumaWhitespace(p: LibPreTokenizer | null): void {
  if (p instanceof lib.ByteLevelPreTokenizer) p.pattern = BYTE_LEVEL_SPLIT;
  else if (p instanceof lib.SequencePreTokenizer) p.tokenizers.forEach(useOnigurumaWhitespace);
}

const utf8 = new TextEncoder();
const lossyUtf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Rust's ByteLevel decoder: a token of mapped characters gives their bytes, any other its UTF-8. */
function byteLevelDecode(tokens: string[]): string {
  const bytes: number[] = [];
  for (const token of tokens) {
    const mapped = Array.from(token, (ch) => BYTE_OF_CHAR.get(ch));
    if (mapped.every((b) => b !== undefined)) append(bytes, mapped as number[]);
    else append(bytes, utf8.encode(token));
  }
  return lossyUtf8.decode(Uint8Array.from(bytes));
}

/** transformers' clean_up_tokenization (applied when tokenizer_config.json sets clean_up_tokenization_spaces). */
function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}
