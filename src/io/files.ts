// Opening the files that readers are handed, the one way every reader does it: regular files only
// (a FIFO would block forever, /dev/zero would never end, a folder fails with EISDIR on the first read),
// sizes bounded before anything is allocated, and every file-system failure turned into a
// ModernBertError that names the file, never an ENOENT/ELOOP stack trace.

import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { ModernBertError } from '../errors.js';

/**
 * The largest JSON file any reader accepts. The largest real one is tokenizer.json (3.5 MB for
 * ModernBERT; multilingual tokenizers reach about 20 MB); 64 MB leaves room for those while keeping a
 * corrupt or hostile file from exhausting memory (a parsed JSON value takes several times its text).
 */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;

/**
 * Deepest JSON nesting accepted: serde_json (which the Rust tokenizers and safetensors use) stops at
 * 128, and our messages and validators walk values recursively.
 */
export const MAX_JSON_DEPTH = 128;

/** A file-system failure as a ModernBertError naming `path` (FILE_NOT_FOUND for ENOENT, else BAD_INPUT). */
export function fileError(e: unknown, path: string, what = 'file'): ModernBertError {
  if (e instanceof ModernBertError) return e;
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new ModernBertError('FILE_NOT_FOUND', `${path} does not exist`, { file: path });
  const why: Record<string, string> = {
    ENOTDIR: 'a part of the path is not a folder',
    ELOOP: 'it is a symbolic link loop',
    EISDIR: 'it is a folder',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    ENAMETOOLONG: 'the path is too long',
  };
  const reason = code !== undefined && Object.hasOwn(why, code) ? why[code]! : (code ?? String(e));
  return new ModernBertError('BAD_INPUT', `cannot read ${what} ${path}: ${reason}`, { file: path, errno: code });
}

/**
 * Opens `path` for reading and checks, after opening (so that a swapped path cannot slip through), that
 * it is a regular file. Returns the descriptor and the size; the caller closes it.
 */
export function openRegularFile(path: string, what = 'file'): { fd: number; size: number } {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer; on a regular file it does nothing.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw fileError(e, path, what);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      const kind = st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'not a regular file';
      throw new ModernBertError('BAD_INPUT', `${path} is ${kind}, not a regular ${what}`, { file: path });
    }
    return { fd, size: st.size };
  } catch (e) {
    closeSync(fd);
    throw fileError(e, path, what);
  }
}

/** Fills `out` from `position` of an open file, failing with CORRUPT_FILE if the file ends first. */
export function readExactly(fd: number, out: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < out.length) {
    const n = readSync(fd, out, done, out.length - done, position + done);
    if (n === 0) throw new ModernBertError('CORRUPT_FILE', `${path} ends early (read ${done} of ${out.length} bytes at ${position})`, { file: path });
    done += n;
  }
}

/** The whole of a regular file of at most `maxBytes` bytes. */
export function readFileBounded(path: string, maxBytes: number, what = 'file'): Buffer {
  const { fd, size } = openRegularFile(path, what);
  try {
    if (size > maxBytes) {
      throw new ModernBertError('BAD_INPUT', `${path} is ${size} bytes, more than the ${maxBytes} a ${what} may have`, { file: path, size, maxBytes });
    }
    const out = Buffer.alloc(size);
    readExactly(fd, out, 0, path);
    return out;
  } catch (e) {
    throw fileError(e, path, what);
  } finally {
    closeSync(fd);
  }
}

/** Parses a JSON file (regular, at most MAX_JSON_BYTES, nested at most MAX_JSON_DEPTH) with errors naming it. */
export function readJsonFile(path: string, what = 'JSON file'): unknown {
  const text = readFileBounded(path, MAX_JSON_BYTES, what).toString('utf8');
  return parseJsonText(text, path);
}

/** JSON.parse with the depth bound and a CORRUPT_FILE error naming `source`. */
export function parseJsonText(text: string, source: string): unknown {
  const depth = jsonDepth(text);
  if (depth > MAX_JSON_DEPTH) {
    throw new ModernBertError('CORRUPT_FILE', `${source} nests JSON ${depth} levels deep (at most ${MAX_JSON_DEPTH})`, { file: source });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ModernBertError('CORRUPT_FILE', `${source} is not valid JSON (${(e as Error).message.replace(/\s+/g, ' ')})`, { file: source });
  }
}

/** The deepest nesting of [ and { outside strings (the text need not be valid JSON). */
function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) max = Math.max(max, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** A value shown in a one-line message: JSON, cut to `max` characters (values may be huge or deep). */
export function brief(v: unknown, max = 60): string {
  let s: string;
  try {
    s = typeof v === 'function' ? 'a function' : (JSON.stringify(v) ?? String(v));
  } catch {
    s = Array.isArray(v) ? 'an array' : typeof v;
  }
  s = s.replace(/[\r\n]+/g, ' ');
  return s.length > max ? `${s.slice(0, max)}...` : s;
}
