// Where the file system cannot make links (symlink fails with EPERM, as on FAT or Windows without developer
// mode), a snapshot holds the files themselves, as huggingface_hub's _create_symlink does: a new blob is
// moved there, an existing one copied.

import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { RepoCache } from '../src/hub/cache.js';
import { cleanupTempDirs, tempDir } from './helpers/fixtures.js';

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return {
    ...real,
    symlinkSync: () => {
      throw Object.assign(new Error('EPERM: operation not permitted, symlink'), { code: 'EPERM', syscall: 'symlink' });
    },
  };
});

afterAll(cleanupTempDirs);

describe('a cache on a file system without links', () => {
  it('a new blob is moved into the snapshot, an existing one copied', () => {
    const cache = new RepoCache(tempDir('mbane-hubcache-'), 'o/n');
    const commit = 'c'.repeat(40);
    mkdirSync(join(cache.root, 'blobs'), { recursive: true });
    writeFileSync(cache.blob('fresh'), 'new bytes');
    writeFileSync(cache.blob('kept'), 'shared bytes');
    cache.link(commit, 'config.json', 'fresh', { copy: false, fresh: true });
    cache.link(commit, '1_Pooling/config.json', 'kept', { copy: false, fresh: false });
    expect(lstatSync(cache.pointer(commit, 'config.json')).isFile()).toBe(true);
    expect(readFileSync(cache.pointer(commit, 'config.json'), 'utf8')).toBe('new bytes');
    expect(existsSync(cache.blob('fresh'))).toBe(false);
    expect(readFileSync(cache.pointer(commit, '1_Pooling/config.json'), 'utf8')).toBe('shared bytes');
    expect(readFileSync(cache.blob('kept'), 'utf8')).toBe('shared bytes');
    expect(cache.has(commit, 'config.json') && cache.has(commit, '1_Pooling/config.json')).toBe(true);
  });
});
