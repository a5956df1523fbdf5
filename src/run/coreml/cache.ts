// Where the Core ML helper and the packages it compiles are kept: a per-user cache folder. A compiled model is
// keyed by the package's content (so a package edited in place or converted again compiles again, and a copy
// elsewhere reuses the compile); the helper binary by its source and the compiler that built it.

import { createHash } from 'node:crypto';
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, relative } from 'node:path';
import { ModernBertError } from '../../errors.js';
import { fileError } from '../../io/files.js';

/** Overrides the cache folder (for tests, or a machine whose home is read-only). */
export const CACHE_ENV = 'MODERNBERT_ANE_COREML_CACHE';

/** The per-user cache folder: ~/Library/Caches on macOS, $XDG_CACHE_HOME or ~/.cache elsewhere. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env[CACHE_ENV]) return env[CACHE_ENV];
  if (platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'modernbert-ane', 'coreml');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'modernbert-ane', 'coreml');
}

/** A package holds a few files (manifest, model, weights, tokenizer); more than this is not a package. */
const MAX_PACKAGE_ENTRIES = 10_000;

/**
 * The sha256 (hex) of a package's content: every file's path inside it, size and bytes, in path order. Links are
 * hashed as their target's text, not followed (a package is a folder of plain files).
 */
export function packageHash(path: string): string {
  const h = createHash('sha256');
  const files: string[] = [];
  const walk = (dir: string) => {
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch (e) {
      throw fileError(e, dir, 'package folder');
    }
    for (const name of entries) {
      const full = join(dir, name);
      if (files.length >= MAX_PACKAGE_ENTRIES)
        throw new ModernBertError(
          'BAD_INPUT',
          `${path} holds more than ${MAX_PACKAGE_ENTRIES} files: not a Core ML package`,
          { path },
        );
      const st = lstatSync(full);
      if (st.isDirectory()) walk(full);
      else files.push(full);
    }
  };
  walk(path);
  const buf = Buffer.alloc(1 << 22);
  for (const file of files) {
    const st = lstatSync(file);
    const rel = relative(path, file).split('\\').join('/');
    if (st.isSymbolicLink()) {
      h.update(`link\0${rel}\0${readlinkSync(file)}\0`);
      continue;
    }
    if (!st.isFile())
      throw new ModernBertError('BAD_INPUT', `${file} is not a regular file (a package holds plain files)`, {
        path: file,
      });
    h.update(`file\0${rel}\0${st.size}\0`);
    let fd: number;
    try {
      fd = openSync(file, 'r');
    } catch (e) {
      throw fileError(e, file, 'package file');
    }
    try {
      let left = st.size;
      while (left > 0) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, left), null);
        if (n === 0) throw new ModernBertError('FILE_SYSTEM', `${file} shrank while it was read`, { path: file });
        h.update(buf.subarray(0, n));
        left -= n;
      }
    } finally {
      closeSync(fd);
    }
  }
  return h.digest('hex');
}

/** Where the compiled form (.mlmodelc) of a package with content hash `hash` is kept, and its record. */
export function compiledPaths(dir: string, hash: string): { compiled: string; record: string } {
  const base = join(dir, 'models', hash.slice(0, 32));
  return { compiled: `${base}.mlmodelc`, record: `${base}.json` };
}

/** The key of a helper binary: its source and the compiler's own description of itself (swiftc --version), and the target. */
export function helperKey(source: string, compilerVersion: string, target: string): string {
  return createHash('sha256').update(`${source}\0${compilerVersion.trim()}\0${target}`).digest('hex').slice(0, 32);
}
