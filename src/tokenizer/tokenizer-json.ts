// Checks of tokenizer.json that @huggingface/tokenizers does not make: it takes any JSON value as a
// token id, so a vocabulary id of 1e9 makes it size tables by it (a hang), and "NaN", true or [1, 2]
// become ids that encode to undefined. The Rust library refuses all of these (ids are u32).

import { CONFIG_LIMITS } from '../model/config.js';
import { ModernBertError } from '../errors.js';
import { brief } from '../io/files.js';

/** The largest token id accepted: the vocabulary bound of config.json. */
const MAX_TOKEN_ID = CONFIG_LIMITS.vocab_size - 1;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Throws CORRUPT_FILE naming `source` unless every token id in the tokenizer is an integer in 0..MAX_TOKEN_ID. */
export function checkTokenizerJson(json: Record<string, unknown>, source: string): void {
  const bad = (msg: string): never => {
    throw new ModernBertError('CORRUPT_FILE', `${source}: ${msg}`, { file: source });
  };
  const isId = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_TOKEN_ID;
  const model = json.model;
  if (!isObject(model)) return bad('has no "model" object');
  const vocab = Object.hasOwn(model, 'vocab') ? model.vocab : undefined;
  if (Array.isArray(vocab)) {
    // Unigram: [token, score] pairs.
    vocab.forEach((e, i) => {
      if (
        !Array.isArray(e) ||
        e.length !== 2 ||
        typeof e[0] !== 'string' ||
        typeof e[1] !== 'number' ||
        !Number.isFinite(e[1])
      ) {
        bad(`model.vocab[${i}] must be a [token, score] pair, got ${brief(e)}`);
      }
    });
    if (vocab.length > MAX_TOKEN_ID + 1) bad(`model.vocab has ${vocab.length} entries, more than ${MAX_TOKEN_ID + 1}`);
  } else if (isObject(vocab)) {
    for (const [token, id] of Object.entries(vocab)) {
      if (!isId(id))
        bad(`model.vocab gives token ${brief(token, 40)} the id ${brief(id)} (ids are integers 0..${MAX_TOKEN_ID})`);
    }
  } else if (vocab !== undefined) {
    bad(`model.vocab must be an object or a list, got ${brief(vocab)}`);
  }
  const merges = Object.hasOwn(model, 'merges') ? model.merges : undefined;
  if (merges !== undefined && merges !== null) {
    if (!Array.isArray(merges)) bad(`model.merges must be a list, got ${brief(merges)}`);
    (merges as unknown[]).forEach((m, i) => {
      const ok = typeof m === 'string' || (Array.isArray(m) && m.length === 2 && m.every((p) => typeof p === 'string'));
      if (!ok) bad(`model.merges[${i}] must be "a b" or ["a", "b"], got ${brief(m)}`);
    });
  }
  for (const field of ['unk_token', 'continuing_subword_prefix', 'end_of_word_suffix']) {
    const v = Object.hasOwn(model, field) ? model[field] : undefined;
    if (v !== undefined && v !== null && typeof v !== 'string') bad(`model.${field} must be a string, got ${brief(v)}`);
  }
  const added = json.added_tokens;
  if (Array.isArray(added)) {
    added.forEach((t, i) => {
      if (isObject(t) && !isId(t.id))
        bad(`added_tokens[${i}] has id ${brief(t.id)} (ids are integers 0..${MAX_TOKEN_ID})`);
    });
  }
  const post = json.post_processor;
  if (isObject(post) && isObject(post.special_tokens)) {
    for (const [name, spec] of Object.entries(post.special_tokens)) {
      const ids = isObject(spec) ? spec.ids : undefined;
      if (Array.isArray(ids) && !ids.every(isId))
        bad(`post_processor special token ${brief(name, 40)} has ids ${brief(ids)} (integers 0..${MAX_TOKEN_ID})`);
    }
  }
}
