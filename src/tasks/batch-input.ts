// The texts of a batch file: plain text, one text per non-empty line, or JSONL, one object with a string
// `text` per non-empty line (a `.jsonl` file, or any file whose first non-empty line starts with "{").

import { ModernBertError } from '../errors.js';
import { readUserFile } from '../io/files.js';
import { MAX_TEXTS, READ_LIMITS } from '../io/limits.js';

/** One input text and the line it came from (1-based), for messages. */
export interface InputText {
  text: string;
  line: number;
}

/**
 * Reads the texts of a batch input file (a regular file, a FIFO or /dev/stdin, at most READ_LIMITS.texts);
 * an empty file or a malformed JSONL line is a one-line error.
 */
export function readBatchInput(path: string): InputText[] {
  return parseBatchInput(readUserFile(path, READ_LIMITS.texts, '--input').toString('utf8'), path);
}

/** Parses a batch input (`source` names it in messages). */
export function parseBatchInput(content: string, source: string): InputText[] {
  const lines = content.split(/\r?\n/);
  const first = lines.find((l) => l.trim() !== '');
  if (first === undefined)
    throw new ModernBertError(
      'BAD_INPUT',
      `${source} holds no text (give one text per line, or JSONL with a "text" field)`,
      { file: source },
    );
  const jsonl = /\.jsonl$/i.test(source) || first.trimStart().startsWith('{');
  const out: InputText[] = [];
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    if (out.length === MAX_TEXTS)
      throw new ModernBertError(
        'BAD_INPUT',
        `${source} holds more than ${MAX_TEXTS} texts, the most one run takes: split it`,
        { file: source, line },
      );
    if (!jsonl) return void out.push({ text: raw.trim(), line });
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw new ModernBertError(
        'BAD_INPUT',
        `${source} line ${line} is not JSON (${(e as Error).message}): JSONL input needs one object with a "text" field per line`,
        { file: source, line },
      );
    }
    const text =
      typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>).text : undefined;
    if (typeof text !== 'string')
      throw new ModernBertError('BAD_INPUT', `${source} line ${line} has no string "text" field`, {
        file: source,
        line,
      });
    out.push({ text, line });
  });
  return out;
}
