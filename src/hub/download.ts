// One file of a repository into the cache, as huggingface_hub's hf_hub_download does it
// (file_download.py: get_hf_file_metadata, _hf_hub_download_to_cache_dir, http_get), with a resume that
// survives the process:
//   1. HEAD <endpoint>/<id>/resolve/<commit>/<file> without following a redirect to another host: the Hub
//      answers a small file itself and an LFS file with a redirect to its CDN (Location), and either way
//      sends X-Repo-Commit, the file's ETag (X-Linked-Etag for LFS files, the sha256 of the content; else
//      ETag, the git blob sha1) and its size (X-Linked-Size, else Content-Length). Relative redirects (a
//      renamed repository) are followed, as _httpx_follow_relative_redirects does.
//   2. Under the lock, GET the location into blobs/<etag>.incomplete, from where an earlier try stopped
//      (Range: bytes=N-); a server that ignores the range (200) starts it over, as http_get does. A dropped
//      connection is resumed at once; three tries in a row without a byte end the run, the partial file kept.
//   3. Check the size, and the content (hashed as it arrives) against the ETag: sha256 for a 64-hex ETag,
//      the git blob sha1 (sha1 of "blob <size>\0" + content) for a 40-hex one; a mismatch deletes the
//      download and links nothing. Then rename it to blobs/<etag> and link it into the snapshot.

import { createReadStream, existsSync, statSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { createHash, type Hash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { ModernBertError } from '../errors.js';
import { fsError } from '../io/fs-errors.js';
import { renameInto, withFolder, type RepoCache } from './cache.js';
import { networkError, statusError, type HubHttp, type RequestSubject } from './http.js';
import { withLock } from './lock.js';

/** What a HEAD request says about one file at one commit. */
export interface FileMeta {
  file: string;
  /** The blob's name in the cache (quotes and W/ removed, as huggingface_hub's _normalize_etag does). */
  etag: string;
  size: number;
  /** Where the bytes are: the resolve URL, or the CDN it redirects to. */
  location: string;
}

const MAX_RELATIVE_REDIRECTS = 5;
const MAX_RETRIES = 3;
const RETRY_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** huggingface_hub's hf_hub_url: the revision quoted whole, the file name quoted per path part. */
export function resolveUrl(endpoint: string, id: string, revision: string, file: string): string {
  return `${endpoint}/${id}/resolve/${encodeURIComponent(revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;
}

/** The metadata of `file` at `commit`. */
export async function fileMetadata(http: HubHttp, id: string, commit: string, file: string): Promise<FileMeta> {
  const subject: RequestSubject = { id, revision: commit, file };
  let url = resolveUrl(http.env.endpoint, id, commit, file);
  let res = await http.fetch(url, { method: 'HEAD', redirect: 'manual' }, subject);
  for (let i = 0; isRedirect(res.status) && i < MAX_RELATIVE_REDIRECTS; i++) {
    const location = res.headers.get('location');
    if (location === null || !isRelative(location)) break;
    url = new URL(location, url).href;
    res = await http.fetch(url, { method: 'HEAD', redirect: 'manual' }, subject);
  }
  if (!res.ok && !isRedirect(res.status))
    throw await statusError(res, subject, http.token() !== undefined, http.env.endpoint);
  const h = res.headers;
  const notHub = (what: string) =>
    new ModernBertError(
      'NETWORK',
      `${http.env.endpoint} sent no ${what} for ${file} of ${id}: not a Hugging Face Hub (check HF_ENDPOINT)`,
      { url },
    );
  const served = h.get('x-repo-commit');
  if (served === null) throw notHub('X-Repo-Commit');
  if (served !== commit)
    throw new ModernBertError(
      'NETWORK',
      `${http.env.endpoint} answered for commit ${served} when asked for ${commit} (${file} of ${id})`,
      { url },
    );
  const etag = normalizeEtag(h.get('x-linked-etag') ?? h.get('etag'));
  if (etag === undefined) throw notHub('ETag');
  // The ETag names a file: nothing that could leave blobs/.
  if (!/^[\w-][\w.-]*$/.test(etag) || etag.endsWith('.incomplete') || etag.length > 200)
    throw new ModernBertError(
      'NETWORK',
      `${http.env.endpoint} sent ETag "${etag}" for ${file} of ${id}, which cannot name a cache file`,
      { url },
    );
  const sizeText = h.get('x-linked-size') ?? (isRedirect(res.status) ? null : h.get('content-length'));
  const size = sizeText !== null && /^\d+$/.test(sizeText) ? Number(sizeText) : NaN;
  if (!Number.isSafeInteger(size)) throw notHub('size (X-Linked-Size or Content-Length)');
  const location = isRedirect(res.status) && h.get('location') ? new URL(h.get('location')!, url).href : url;
  return { file, etag, size, location };
}

function isRedirect(status: number): boolean {
  return status >= 300 && status < 400;
}

/** A Location without a host (huggingface_hub: urlparse(location).netloc == ""). */
function isRelative(location: string): boolean {
  return !/^[a-z][a-z0-9+.-]*:/i.test(location) && !location.startsWith('//');
}

/** huggingface_hub's _normalize_etag: `W/"x"` and `"x"` are x. */
export function normalizeEtag(etag: string | null): string | undefined {
  if (etag === null) return undefined;
  const e = etag.replace(/^W\//, '').replace(/^"+|"+$/g, '');
  return e === '' ? undefined : e;
}

/** Reports downloaded bytes as they arrive (negative when a server restarts a resumed file). */
export type OnBytes = (delta: number) => void;

/**
 * Makes `meta.file` present in snapshot `commit`: links an existing blob, or downloads it first. Only one
 * process downloads a blob at a time; the others wait, then link what it downloaded.
 */
export async function ensureFile(
  http: HubHttp,
  cache: RepoCache,
  commit: string,
  meta: FileMeta,
  onBytes: OnBytes = () => {},
): Promise<void> {
  if (cache.has(commit, meta.file)) return;
  const lock = join(cache.locks, `${meta.etag}.modernbert-ane.lock`);
  await withLock(lock, async () => {
    if (cache.has(commit, meta.file)) return;
    const fresh = !existsSync(cache.blob(meta.etag));
    if (fresh) await downloadBlob(http, cache, commit, meta, onBytes);
    cache.link(commit, meta.file, meta.etag, { copy: http.env.disableSymlinks, fresh });
  });
}

/** Downloads blobs/<etag> through blobs/<etag>.incomplete, resumed and verified. */
async function downloadBlob(
  http: HubHttp,
  cache: RepoCache,
  commit: string,
  meta: FileMeta,
  onBytes: OnBytes,
): Promise<void> {
  const subject: RequestSubject = { id: cache.id, revision: commit, file: meta.file };
  const blob = cache.blob(meta.etag);
  const partial = `${blob}.incomplete`;
  withFolder(dirname(blob));
  let have = existsSync(partial) ? statSync(partial).size : 0;
  if (have > meta.size) {
    await rm(partial, { force: true });
    have = 0;
  }
  // The content is hashed as it arrives (a resumed file's first part read once), not read again at the end.
  const digest = new ContentHash(meta);
  if (have > 0) {
    await digest.addFile(partial);
    onBytes(have);
  }
  // As http_get: a dropped connection is resumed at once, and the run gives up only after MAX_RETRIES
  // tries in a row that brought no byte.
  for (let failures = 0; have < meta.size;) {
    const before = have;
    try {
      have = await fetchInto(http, meta, partial, have, subject, onBytes, digest);
    } catch (e) {
      if (!(e instanceof PartialTransfer)) throw e;
      have = e.have;
      failures = have > before ? 0 : failures + 1;
      if (failures < MAX_RETRIES) {
        await sleep(RETRY_MS * failures);
        continue;
      }
      throw new ModernBertError(
        'NETWORK',
        `${e.cause.message}; ${have} of ${meta.size} bytes are kept in the cache: run the command again to resume`,
        { ...e.cause.context, partial, have, size: meta.size },
      );
    }
  }
  await verify(partial, meta, subject, digest);
  renameInto(partial, blob);
}

/** A transfer that stopped after `have` bytes of the file were on disk. */
class PartialTransfer extends Error {
  constructor(
    readonly have: number,
    override readonly cause: ModernBertError,
  ) {
    super(cause.message);
  }
}

/** One GET from byte `have`; resolves to the bytes on disk after it, or throws PartialTransfer. */
async function fetchInto(
  http: HubHttp,
  meta: FileMeta,
  partial: string,
  have: number,
  subject: RequestSubject,
  onBytes: OnBytes,
  digest: ContentHash,
): Promise<number> {
  const abort = new AbortController();
  let stalled = false;
  let timer = setTimeout(() => ((stalled = true), abort.abort()), http.env.metadataTimeoutMs);
  const res = await http
    .fetch(
      meta.location,
      { method: 'GET', headers: have > 0 ? { range: `bytes=${have}-` } : {}, signal: abort.signal },
      subject,
    )
    .catch((e: unknown) => {
      clearTimeout(timer);
      throw new PartialTransfer(have, networkError(e, meta.location, subject));
    });
  if (!(res.status === 200 || res.status === 206)) {
    clearTimeout(timer);
    throw await statusError(res, subject, http.token() !== undefined, http.env.endpoint);
  }
  let pos = have;
  if (res.status === 206) {
    const start = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1];
    if (start === undefined || Number(start) !== have) {
      clearTimeout(timer);
      await res.body?.cancel().catch(() => {});
      throw new ModernBertError(
        'NETWORK',
        `${new URL(meta.location).origin} answered a range of ${meta.file} other than the one asked for (bytes=${have}-)`,
        { url: meta.location },
      );
    }
  } else if (have > 0) {
    // The range was ignored: the whole file comes again (http_get does the same).
    onBytes(-have);
    digest.reset();
    pos = 0;
  }
  let fh;
  try {
    fh = await open(partial, pos > 0 ? 'r+' : 'w');
  } catch (e) {
    clearTimeout(timer);
    await res.body?.cancel().catch(() => {});
    throw fsError(e, partial, 'write');
  }
  try {
    if (pos === 0) await fh.truncate(0);
    for await (const chunk of res.body ?? []) {
      clearTimeout(timer);
      timer = setTimeout(() => ((stalled = true), abort.abort()), http.env.downloadTimeoutMs);
      if (pos + chunk.length > meta.size) {
        throw new ModernBertError(
          'CORRUPT_FILE',
          `${new URL(meta.location).origin} sent more than the ${meta.size} bytes announced for ${meta.file} of ${subject.id}; nothing was linked into the cache`,
          { url: meta.location },
        );
      }
      await fh.write(chunk, 0, chunk.length, pos);
      digest.add(chunk);
      pos += chunk.length;
      onBytes(chunk.length);
    }
  } catch (e) {
    if (e instanceof ModernBertError && e.code === 'CORRUPT_FILE') {
      await fh.close();
      await rm(partial, { force: true });
      throw e;
    }
    if (isFsWriteError(e)) throw fsError(e, partial, 'write');
    const err = stalled ? new Error('no data in time', { cause: { code: 'stalled' } }) : e;
    throw new PartialTransfer(pos, networkError(err, meta.location, subject));
  } finally {
    clearTimeout(timer);
    await fh.close().catch(() => {});
  }
  if (pos < meta.size)
    throw new PartialTransfer(
      pos,
      new ModernBertError(
        'NETWORK',
        `the connection for ${meta.file} of ${subject.id} closed after ${pos} of ${meta.size} bytes`,
        { url: meta.location },
      ),
    );
  return pos;
}

function isFsWriteError(e: unknown): boolean {
  return (
    typeof (e as NodeJS.ErrnoException)?.syscall === 'string' &&
    ['write', 'open', 'ftruncate'].includes((e as NodeJS.ErrnoException).syscall!)
  );
}

/**
 * The hash an ETag names: sha256 for a 64-hex ETag (an LFS file), the git blob sha1 (sha1 of
 * "blob <size>\0" + content, as git hash-object) for a 40-hex one; none for other ETags (a mirror's own).
 */
class ContentHash {
  readonly kind: 'sha256' | 'sha1' | undefined;
  private hash?: Hash;

  constructor(private readonly meta: FileMeta) {
    this.kind = /^[0-9a-f]{64}$/.test(meta.etag) ? 'sha256' : /^[0-9a-f]{40}$/.test(meta.etag) ? 'sha1' : undefined;
    this.reset();
  }

  reset(): void {
    if (this.kind === undefined) return;
    this.hash = createHash(this.kind);
    if (this.kind === 'sha1') this.hash.update(`blob ${this.meta.size}\0`);
  }

  add(chunk: Uint8Array): void {
    this.hash?.update(chunk);
  }

  async addFile(path: string): Promise<void> {
    if (this.hash) for await (const chunk of createReadStream(path)) this.hash.update(chunk as Buffer);
  }

  hex(): string | undefined {
    return this.hash?.digest('hex');
  }
}

/** Checks a finished download against its size and ETag; a mismatch deletes it. */
async function verify(partial: string, meta: FileMeta, subject: RequestSubject, digest: ContentHash): Promise<void> {
  const size = statSync(partial).size;
  const fail = async (what: string) => {
    await rm(partial, { force: true });
    return new ModernBertError(
      'CORRUPT_FILE',
      `${meta.file} of ${subject.id} failed its check (${what}); the download was deleted and nothing was linked into the cache: run the command again`,
      { file: meta.file, id: subject.id, etag: meta.etag },
    );
  };
  if (size !== meta.size) throw await fail(`${size} bytes, the Hub announced ${meta.size}`);
  const got = digest.hex();
  if (got !== undefined && got !== meta.etag)
    throw await fail(`${digest.kind === 'sha256' ? 'sha256' : 'git sha1'} ${got}, expected ${meta.etag}`);
}
