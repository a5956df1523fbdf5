// The one way every command and openModel turn what a user names as MODEL into a local folder: a path
// that exists is used as it is (a local folder of the same name wins over a Hub id, as in transformers);
// `org/name[@revision]` is found in the Hugging Face cache or downloaded into it. The decisions follow
// huggingface_hub's snapshot_download (_snapshot_download.py):
//   - a full commit whose snapshot is complete needs no request at all;
//   - offline (HF_HUB_OFFLINE), the revision is read from refs/ and its snapshot must be complete;
//   - online, the model-info API gives the commit and the file list; refs/<revision> records it;
//   - when that request fails for want of a network, a token (401/403) or a working Hub (5xx), a complete
//     cached snapshot of the revision serves; a repository or revision the Hub does not know (404) does not.
// Only the files a checkpoint is read from are fetched (CHECKPOINT_FILES and what they name): never
// pytorch_model.bin, .onnx, .msgpack, .h5 or anything else a repository holds.

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ModernBertError } from '../errors.js';
import { CHECKPOINT_FILES, referencedFiles } from '../model/checkpoint.js';
import { repoRevision } from './api.js';
import { RepoCache, sourceFromCachePath } from './cache.js';
import { ensureFile, fileMetadata, type FileMeta } from './download.js';
import { hubEnv } from './env.js';
import { HubHttp } from './http.js';
import { COMMIT, DEFAULT_REVISION, looksLikeHubId, parseHubRef, type HubRef, type HubSource } from './id.js';

/** Download progress in bytes. */
export interface DownloadProgress {
  update(doneBytes: number, totalBytes: number): void;
  stop(): void;
}

export interface HubOptions {
  /** A branch, tag or commit, for a Hub id (as `org/name@revision`). */
  revision?: string;
  /** Told the bytes downloaded so far, while files are downloaded. */
  progress?: DownloadProgress;
  /** Where HF_ENDPOINT, HF_HOME, HF_TOKEN, HF_HUB_OFFLINE... are read (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface ResolvedModel {
  /** The folder (or package) to open. */
  path: string;
  /** The Hub id and commit, for a Hub model or a snapshot folder of the cache. */
  source?: HubSource;
  /** Files downloaded by this call, and their bytes. */
  downloaded: { files: string[]; bytes: number };
}

const nothing = { files: [], bytes: 0 };

/** The local folder of what a user named as MODEL: an existing path, or a Hub id found in or fetched into the cache. */
export async function resolveModel(name: string, o: HubOptions = {}): Promise<ResolvedModel> {
  if (name === '')
    throw new ModernBertError(
      'BAD_ARGUMENT',
      'the model name is empty: give a folder, a .mlpackage or a Hub id org/name',
    );
  if (existsSync(name)) {
    if (o.revision !== undefined)
      throw new ModernBertError('BAD_ARGUMENT', `\`revision\` picks a revision of a Hub id; ${name} is a local folder`);
    const source = sourceFromCachePath(name);
    return { path: name, ...(source ? { source } : {}), downloaded: nothing };
  }
  // A missing `x/y.mlpackage` is a package that is not there, not a Hub repository.
  if (!looksLikeHubId(name) || /\.mlpackage$/.test(name)) {
    if (o.revision !== undefined)
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `\`revision\` picks a revision of a Hub id (org/name); ${name} is neither a Hub id nor an existing folder`,
      );
    return { path: name, downloaded: nothing }; // the loader says that it does not exist
  }
  return fetchModel(parseHubRef(name, o.revision), o);
}

/** The snapshot folder of a Hub id, fetched into the cache if needed (the `download` command: never a local folder). */
export async function downloadModel(name: string, o: HubOptions = {}): Promise<ResolvedModel & { source: HubSource }> {
  return fetchModel(parseHubRef(name, o.revision), o);
}

async function fetchModel(ref: HubRef, o: HubOptions): Promise<ResolvedModel & { source: HubSource }> {
  const env = hubEnv(o.env);
  const cache = new RepoCache(env.cacheDir, ref.id);
  const cached = (commit: string | undefined) =>
    commit !== undefined && complete(cache, commit)
      ? { path: cache.snapshot(commit), source: { ...ref, commit }, downloaded: nothing }
      : undefined;
  const hit = COMMIT.test(ref.revision) ? cached(ref.revision) : undefined;
  if (hit) return hit;
  const searched = `searched ${resolve(ref.id)} and ${cache.root}`;
  if (env.offline) {
    const found = cached(cache.commitOf(ref.revision));
    if (found) return found;
    const name = `${ref.id}${ref.revision === DEFAULT_REVISION ? '' : `@${ref.revision}`}`;
    throw new ModernBertError(
      'FILE_NOT_FOUND',
      `${name} is not in the Hugging Face cache (${searched}) and offline mode (HF_HUB_OFFLINE) forbids downloading it: run \`modernbert-ane download ${name}\` with a network first`,
      { id: ref.id, cache: cache.root },
    );
  }
  const http = new HubHttp(env);
  let remote;
  try {
    remote = await repoRevision(http, ref);
  } catch (e) {
    if (!(e instanceof ModernBertError)) throw e;
    // As snapshot_download: any refusal but an unknown revision falls back to what the cache holds.
    const found = e.context['hubError'] === 'RevisionNotFound' ? undefined : cached(cache.commitOf(ref.revision));
    if (found) return found;
    throw new ModernBertError(e.code, `${e.message} (and it is not in the Hugging Face cache: ${searched})`, e.context);
  }
  const { commit, files } = remote;
  const source = { ...ref, commit };
  const missing = ['config.json', 'model.safetensors'].filter(
    (f) => !files.has(f) && !(f === 'model.safetensors' && files.has('model.safetensors.index.json')),
  );
  if (missing.length > 0) {
    const other = [...files].filter((f) => /\.(bin|pt|pth|onnx|msgpack|h5|gguf)$/.test(f));
    const has = other.length > 0 ? `; it has ${other.slice(0, 3).join(', ')}, which modernbert-ane does not read` : '';
    throw new ModernBertError(
      'UNSUPPORTED',
      `${ref.id} at ${commit.slice(0, 12)} has no ${missing.join(' or ')} (a Hugging Face checkpoint in safetensors is needed${has})`,
      { id: ref.id, commit },
    );
  }
  const top = CHECKPOINT_FILES.filter(
    (f) => files.has(f) && !(f === 'model.safetensors.index.json' && files.has('model.safetensors')),
  );
  const downloaded = { files: [] as string[], bytes: 0 };
  try {
    await fetchFiles(http, cache, commit, top, downloaded, o.progress);
    const named = referencedFiles(cache.snapshot(commit));
    const absent = named.find((f) => !files.has(f));
    if (absent !== undefined)
      throw new ModernBertError(
        'CORRUPT_FILE',
        `${ref.id} at ${commit.slice(0, 12)}: its own files name ${absent}, which the repository does not hold`,
        { id: ref.id, commit, file: absent },
      );
    await fetchFiles(http, cache, commit, named, downloaded, o.progress);
  } finally {
    o.progress?.stop();
  }
  // As _cache_commit_hash_for_specific_revision: recorded once the snapshot holds the revision's files; a
  // read-only cache that already held them all stays usable.
  try {
    cache.writeRef(ref.revision, commit);
  } catch (e) {
    if (downloaded.files.length > 0) throw e;
  }
  return { path: cache.snapshot(commit), source, downloaded };
}

/** Fetches the files of `names` that the snapshot lacks: their metadata first (the total for the progress bar), then the bytes. */
async function fetchFiles(
  http: HubHttp,
  cache: RepoCache,
  commit: string,
  names: readonly string[],
  done: { files: string[]; bytes: number },
  progress?: DownloadProgress,
): Promise<void> {
  const missing = names.filter((f) => !cache.has(commit, f));
  if (missing.length === 0) return;
  const metas: FileMeta[] = [];
  for (const f of missing) metas.push(await fileMetadata(http, cache.id, commit, f));
  const total = metas.reduce((s, m) => s + m.size, 0);
  let bytes = 0;
  for (const meta of metas) {
    await ensureFile(http, cache, commit, meta, (delta) => {
      bytes += delta;
      progress?.update(bytes, total);
    });
    done.files.push(meta.file);
    done.bytes += meta.size;
  }
}

/**
 * Whether a cached snapshot holds a loadable checkpoint without asking the Hub: config.json, the weights
 * (model.safetensors, or the index and every shard it names) and the pooling config a modules.json names.
 * A tokenizer is not required: not every checkpoint has one.
 */
function complete(cache: RepoCache, commit: string): boolean {
  if (!cache.has(commit, 'config.json')) return false;
  if (!cache.has(commit, 'model.safetensors') && !cache.has(commit, 'model.safetensors.index.json')) return false;
  try {
    return referencedFiles(cache.snapshot(commit)).every((f) => cache.has(commit, f));
  } catch {
    return true; // a corrupt index or modules.json: the loader names the problem
  }
}
