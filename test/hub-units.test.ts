// The Hub code's parts on their own: ids and revisions, the environment as huggingface_hub reads it, URLs and
// ETags, the cache's paths, and the lock between processes.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoFolderName, sourceFromCachePath } from '../src/hub/cache.js';
import { normalizeEtag, resolveUrl } from '../src/hub/download.js';
import { hubEnv } from '../src/hub/env.js';
import { looksLikeHubId, parseHubRef } from '../src/hub/id.js';
import { STALE_MS, withLock } from '../src/hub/lock.js';
import { expectError } from './helpers/run.js';
import { cleanupTempDirs, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

describe('Hub ids', () => {
  it("org/name with an optional @revision, by huggingface_hub's rules", () => {
    for (const id of [
      'answerdotai/ModernBERT-base',
      'nomic-ai/modernbert-embed-base',
      'a/b',
      'Org_1/x.y-z',
      'o/n@v1.0',
      'o/n@refs/pr/1',
    ])
      expect(looksLikeHubId(id), id).toBe(true);
    for (const id of [
      'ModernBERT-base',
      './a/b',
      '/a/b',
      'a/b/c',
      'a--b/c',
      'a/b..c',
      'a/.b',
      'a/b-',
      'a/b.git',
      'a/',
      '/b',
      `a/${'x'.repeat(97)}`,
      'models/x.mlpackage/',
    ])
      expect(looksLikeHubId(id), id).toBe(false);
    expect(parseHubRef('o/n')).toEqual({ id: 'o/n', revision: 'main' });
    expect(parseHubRef('o/n@refs/pr/1')).toEqual({ id: 'o/n', revision: 'refs/pr/1' });
    expect(parseHubRef('o/n', 'v2')).toEqual({ id: 'o/n', revision: 'v2' });
    expect(parseHubRef('o/n@v2', 'v2')).toEqual({ id: 'o/n', revision: 'v2' });
  });

  it('a revision that could leave refs/, or two that differ, is BAD_ARGUMENT', async () => {
    for (const rev of ['', '..', 'a/../b', '/abs', 'a\\b', 'a//b', 'x\ny'])
      await expectError(() => parseHubRef('o/n', rev), 'BAD_ARGUMENT');
    await expectError(() => parseHubRef('o/n@v1', 'v2'), 'BAD_ARGUMENT');
  });
});

describe('the environment, read as huggingface_hub reads it', () => {
  it('the cache: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME or ~/.cache', () => {
    expect(hubEnv({}).cacheDir).toBe(join(homedir(), '.cache', 'huggingface', 'hub'));
    expect(hubEnv({ XDG_CACHE_HOME: '/x' }).cacheDir).toBe('/x/huggingface/hub');
    expect(hubEnv({ HF_HOME: '~/hf', XDG_CACHE_HOME: '/x' }).cacheDir).toBe(join(homedir(), 'hf', 'hub'));
    expect(hubEnv({ HF_HOME: '$BASE/hf', BASE: '/b' }).cacheDir).toBe('/b/hf/hub');
    expect(hubEnv({ HF_HOME: '/h', HUGGINGFACE_HUB_CACHE: '/old' }).cacheDir).toBe('/old');
    expect(hubEnv({ HF_HOME: '/h', HUGGINGFACE_HUB_CACHE: '/old', HF_HUB_CACHE: '/new' }).cacheDir).toBe('/new');
  });

  it('HF_ENDPOINT (trailing slash dropped), offline switches, symlinks', async () => {
    expect(hubEnv({}).endpoint).toBe('https://huggingface.co');
    expect(hubEnv({ HF_ENDPOINT: 'http://127.0.0.1:8080/' }).endpoint).toBe('http://127.0.0.1:8080');
    await expectError(() => hubEnv({ HF_ENDPOINT: 'ftp://x' }), 'BAD_ARGUMENT');
    for (const v of ['1', 'ON', 'yes', 'True']) expect(hubEnv({ HF_HUB_OFFLINE: v }).offline, v).toBe(true);
    for (const v of ['0', 'false', 'no', '']) expect(hubEnv({ HF_HUB_OFFLINE: v }).offline, v).toBe(false);
    expect(hubEnv({ TRANSFORMERS_OFFLINE: '1' }).offline).toBe(true);
    expect(hubEnv({ HF_HUB_DISABLE_SYMLINKS: '1' }).disableSymlinks).toBe(true);
    await expectError(() => hubEnv({ HF_HUB_ETAG_TIMEOUT: 'soon' }), 'BAD_ARGUMENT');
  });

  it('the token: HF_TOKEN, else HUGGING_FACE_HUB_TOKEN, else HF_TOKEN_PATH or HF_HOME/token, cleaned', () => {
    const home = tempDir('mbane-hfhome-');
    expect(hubEnv({ HF_HOME: home }).token()).toBeUndefined();
    writeFileSync(join(home, 'token'), ' hf_file\r\n');
    expect(hubEnv({ HF_HOME: home }).token()).toBe('hf_file');
    const other = join(tempDir(), 'tok');
    writeFileSync(other, 'hf_path');
    expect(hubEnv({ HF_HOME: home, HF_TOKEN_PATH: other }).token()).toBe('hf_path');
    expect(hubEnv({ HF_HOME: home, HUGGING_FACE_HUB_TOKEN: 'hf_old' }).token()).toBe('hf_old');
    expect(hubEnv({ HF_HOME: home, HUGGING_FACE_HUB_TOKEN: 'hf_old', HF_TOKEN: 'hf_env\n' }).token()).toBe('hf_env');
    writeFileSync(join(home, 'token'), '\n');
    expect(hubEnv({ HF_HOME: home }).token()).toBeUndefined();
  });
});

describe('URLs, ETags and cache paths', () => {
  it('resolve URLs quote the revision whole and the file per part, as hf_hub_url', () => {
    expect(resolveUrl('http://h', 'o/n', 'refs/pr/1', '1_Pooling/config.json')).toBe(
      'http://h/o/n/resolve/refs%2Fpr%2F1/1_Pooling/config.json',
    );
    expect(resolveUrl('http://h', 'o/n', 'main', 'a b#.json')).toBe('http://h/o/n/resolve/main/a%20b%23.json');
  });

  it('ETags lose W/ and quotes', () => {
    expect(normalizeEtag('W/"abc"')).toBe('abc');
    expect(normalizeEtag('"abc"')).toBe('abc');
    expect(normalizeEtag('abc')).toBe('abc');
    expect(normalizeEtag(null)).toBeUndefined();
    expect(normalizeEtag('""')).toBeUndefined();
  });

  it('repository folders and the source of a snapshot folder', () => {
    expect(repoFolderName('answerdotai/ModernBERT-base')).toBe('models--answerdotai--ModernBERT-base');
    const c = 'a'.repeat(40);
    expect(sourceFromCachePath(`/c/hub/models--answerdotai--ModernBERT-base/snapshots/${c}`)).toEqual({
      id: 'answerdotai/ModernBERT-base',
      revision: c,
      commit: c,
    });
    expect(sourceFromCachePath(`/c/hub/models--answerdotai--ModernBERT-base/snapshots/${c}/`)).toEqual({
      id: 'answerdotai/ModernBERT-base',
      revision: c,
      commit: c,
    });
    expect(sourceFromCachePath(`/c/hub/datasets--a--b/snapshots/${c}`)).toBeUndefined();
    expect(sourceFromCachePath(`/c/hub/models--a--b/blobs/${c}`)).toBeUndefined();
    expect(sourceFromCachePath('/c/hub/models--a--b/snapshots/main')).toBeUndefined();
  });
});

describe('the lock between processes', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('a second holder in the same process waits for the first, and the lock is gone after', async () => {
    const lock = join(tempDir(), 'locks', 'x.lock');
    const order: string[] = [];
    let release!: () => void;
    const first = withLock(lock, async () => {
      order.push('first in');
      await new Promise<void>((r) => (release = r));
      order.push('first out');
    });
    await sleep(50);
    let waitedFor: number | undefined;
    const second = withLock(
      lock,
      async () => void order.push('second in'),
      (pid) => (waitedFor = pid),
    );
    await sleep(300);
    expect(order).toEqual(['first in']);
    expect(waitedFor).toBe(process.pid);
    release();
    await Promise.all([first, second]);
    expect(order).toEqual(['first in', 'first out', 'second in']);
    expect(existsSync(lock)).toBe(false);
  });

  it('a lock whose process died, or that nobody touched for STALE_MS, is taken over at once', async () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const lock = join(dir, 'dead.lock');
    writeFileSync(lock, JSON.stringify({ pid: Number(dead), host: hostname(), nonce: 'x' }));
    let ran = false;
    await withLock(
      lock,
      async () => void (ran = true),
      () => {
        throw new Error('waited for a dead process');
      },
    );
    expect(ran).toBe(true);
    // A live process (our parent) on another host, or here, but silent for longer than STALE_MS.
    const old = join(dir, 'old.lock');
    writeFileSync(old, JSON.stringify({ pid: process.ppid, host: hostname(), nonce: 'y' }));
    const past = new Date(Date.now() - STALE_MS - 1000);
    utimesSync(old, past, past);
    await withLock(old, async () => {
      expect(JSON.parse(readFileSync(old, 'utf8')).pid).toBe(process.pid);
    });
  });

  it("a live process's fresh lock is waited for until it is removed", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'l'));
    const lock = join(dir, 'l', 'live.lock');
    writeFileSync(lock, JSON.stringify({ pid: process.ppid, host: hostname(), nonce: 'z' }));
    let ran = false;
    const p = withLock(lock, async () => void (ran = true));
    await sleep(400);
    expect(ran).toBe(false);
    (await import('node:fs')).rmSync(lock);
    await p;
    expect(ran).toBe(true);
  });
});
