// File-system failures as one-line ModernBertErrors naming the path the user gave. Every writer (io/output.ts,
// packages, checkpoints) and the CLI's plain-file readers go through here, so a full disk, a read-only folder
// or a file where a folder should be reads the same everywhere, never as an internal error.

import { existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ModernBertError } from '../errors.js';

/** What each errno means to a user (the codes a path can fail with). */
const REASONS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is exceeded',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder, not a file',
  ENAMETOOLONG: 'the name is too long',
  ELOOP: 'too many symbolic links (a loop?)',
  ENOENT: 'no such file or folder',
  EEXIST: 'it already exists',
  ENOTEMPTY: 'the folder is not empty',
  EXDEV: 'it is on another file system',
  EMFILE: 'too many open files',
  EIO: 'an input/output error of the device',
};

/** Whether `e` is an error from a file-system call (it has an errno code and a syscall). */
export function isFsError(e: unknown): e is NodeJS.ErrnoException {
  const errno = e as NodeJS.ErrnoException;
  return e instanceof Error && typeof errno.code === 'string' && typeof errno.syscall === 'string';
}

/** `e` as a ModernBertError "cannot ACTION PATH: reason (CODE)" if it is a file-system error; anything else unchanged. */
export function fsError(e: unknown, path: string, action: 'read' | 'write'): unknown {
  if (!isFsError(e)) return e;
  const code = e.code!;
  const reason = REASONS[code] ?? e.message;
  return new ModernBertError(
    code === 'ENOENT' ? 'FILE_NOT_FOUND' : 'FILE_SYSTEM',
    `cannot ${action} ${path}: ${reason} (${code})`,
    { path, errno: code },
  );
}

/** Runs `f`, turning a file-system error into fsError's one line about `path`. */
export function withFsErrors<T>(path: string, action: 'read' | 'write', f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fsError(e, path, action);
  }
}

/**
 * Makes folder `path` and its missing parents, one at a time. Not mkdir's `recursive`: in Node 20 it spins
 * forever where a folder cannot be made (under /proc); one level at a time fails at once, with ENOENT.
 */
export function makeFolders(path: string): void {
  const missing: string[] = [];
  for (let p = resolve(path); !existsSync(p); p = dirname(p)) {
    missing.push(p);
    if (dirname(p) === p) break;
  }
  for (const dir of missing.reverse()) mkdirSync(dir);
}
