// Opening the files that readers are handed, the one way every reader does it: regular files only
// (a FIFO would block forever, /dev/zero would never end, a folder fails with EISDIR on the first read),
// sizes bounded before anything is allocated, and every file-system failure turned into a
// ModernBertError that names the file, never an ENOENT/ELOOP stack trace.

import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { ModernBertError } from '../errors.js';
import { fsError } from './fs-errors.js';
import { DEVICE_WAIT_SECONDS, formatBytes, READ_LIMITS, sleepMs } from './limits.js';

/**
 * The largest JSON file any reader accepts unless told less (limits.ts has each kind's): tokenizer.json's,
 * the largest real one (a parsed JSON value takes several times its text).
 */
export const MAX_JSON_BYTES = READ_LIMITS.tokenizer;

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
    if (!st.isFile())
      throw new ModernBertError('BAD_INPUT', `${path} is ${kindOf(st)}, not a regular ${what}`, { file: path });
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
    if (n === 0)
      throw new ModernBertError(
        'CORRUPT_FILE',
        `${path} ends early (read ${done} of ${out.length} bytes at ${position})`,
        { file: path },
      );
    done += n;
  }
}

/** The whole of a regular file of at most `maxBytes` bytes. */
export function readFileBounded(path: string, maxBytes: number, what = 'file'): Buffer {
  const { fd, size } = openRegularFile(path, what);
  try {
    if (size > maxBytes) throw tooLarge(path, what, maxBytes, size);
    const out = Buffer.alloc(size);
    readExactly(fd, out, 0, path);
    return out;
  } catch (e) {
    throw fileError(e, path, what);
  } finally {
    closeSync(fd);
  }
}

/** Parses a JSON file (regular, at most `maxBytes`, nested at most MAX_JSON_DEPTH) with errors naming it. */
export function readJsonFile(path: string, what = 'JSON file', maxBytes: number = MAX_JSON_BYTES): unknown {
  const text = readFileBounded(path, maxBytes, what).toString('utf8');
  return parseJsonText(text, path);
}

/** JSON.parse with the depth bound and a CORRUPT_FILE error naming `source`. */
export function parseJsonText(text: string, source: string): unknown {
  const depth = jsonDepth(text);
  if (depth > MAX_JSON_DEPTH) {
    throw new ModernBertError('CORRUPT_FILE', `${source} nests JSON ${depth} levels deep (at most ${MAX_JSON_DEPTH})`, {
      file: source,
    });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ModernBertError(
      'CORRUPT_FILE',
      `${source} is not valid JSON (${(e as Error).message.replace(/\s+/g, ' ')})`,
      { file: source },
    );
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
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
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

/** What a path that is not a regular file is, for messages ('a folder', 'a FIFO', ...). */
export function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** A file over its kind's cap (`size` when known, else it was streamed past the cap). */
function tooLarge(path: string, what: string, maxBytes: number, size?: number): ModernBertError {
  const has = size === undefined ? 'holds more than' : `is ${size} bytes, more than`;
  return new ModernBertError('BAD_INPUT', `${path} ${has} the ${formatBytes(maxBytes)} a ${what} may have`, {
    file: path,
    maxBytes,
  });
}

/**
 * A whole file the user named with an option (`what`, e.g. '--input'): a regular file of at most `maxBytes`,
 * or a FIFO or character device (a pipe, /dev/stdin) read up to `maxBytes`, waiting at most
 * DEVICE_WAIT_SECONDS for data, so that /dev/zero ends in an error and a FIFO nobody writes does not block for
 * good. A folder, a socket or a block device is a one-line error.
 */
export function readUserFile(path: string, maxBytes: number, what: string): Buffer {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EISDIR')
      throw new ModernBertError('BAD_ARGUMENT', `${what} ${path} is a folder, not a file`, { path });
    throw fsError(e, path, 'read');
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory())
      throw new ModernBertError('BAD_ARGUMENT', `${what} ${path} is a folder, not a file`, { path });
    if (st.isFile()) {
      if (st.size > maxBytes) throw tooLarge(path, `${what} file`, maxBytes, st.size);
      const out = Buffer.alloc(st.size);
      readExactly(fd, out, 0, path);
      return out;
    }
    if (!st.isFIFO() && !st.isCharacterDevice())
      throw new ModernBertError('BAD_INPUT', `${what} ${path} is ${kindOf(st)}, not a file`, { path });
    return readStream(fd, path, maxBytes, what, st.isFIFO());
  } catch (e) {
    throw fsError(e, path, 'read');
  } finally {
    closeSync(fd);
  }
}

/** Reads a non-blocking FIFO or device to its end, within `maxBytes`, giving up after DEVICE_WAIT_SECONDS without data. */
function readStream(fd: number, path: string, maxBytes: number, what: string, fifo: boolean): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  let waitingSince = Date.now();
  for (;;) {
    const chunk = Buffer.allocUnsafe(Math.min(1 << 20, maxBytes + 1 - total));
    let n: number;
    try {
      n = readSync(fd, chunk, 0, chunk.length, null);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      n = -1;
    }
    if (n > 0) {
      chunks.push(chunk.subarray(0, n));
      total += n;
      if (total > maxBytes) throw tooLarge(path, `${what} file`, maxBytes);
      waitingSince = Date.now();
      continue;
    }
    // 0 is the end, except on a FIFO that nothing was written to yet: its writer may not have opened it.
    if (n === 0 && (!fifo || total > 0)) return Buffer.concat(chunks, total);
    if (Date.now() - waitingSince > DEVICE_WAIT_SECONDS * 1000) {
      const waited =
        total === 0
          ? fifo
            ? 'nothing was written to it'
            : 'it gave no data'
          : `it gave no more data after ${formatBytes(total)}`;
      throw new ModernBertError(
        'BAD_INPUT',
        `${what} ${path} is ${fifo ? 'a FIFO' : 'a device'} and ${waited} for ${DEVICE_WAIT_SECONDS} s`,
        { path },
      );
    }
    sleepMs(10);
  }
}
