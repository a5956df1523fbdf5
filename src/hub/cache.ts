// The Hugging Face cache on disk, laid out exactly as huggingface_hub writes it (file_download.py:
// repo_folder_name, _cache_commit_hash_for_specific_revision, _create_symlink, try_to_load_from_cache):
//
//   <cache>/models--<org>--<name>/
//     refs/<revision>              the commit a branch or tag pointed to when last fetched (no newline)
//     snapshots/<commit>/<file>    a relative link to ../../blobs/<etag> (deeper files: more ../)
//     blobs/<etag>                 the file's bytes, named by its ETag: the git blob sha1 of a small file,
//                                  the sha256 of an LFS file
//     blobs/<etag>.incomplete      a download in progress (ours resume from it)
//   <cache>/.locks/models--<org>--<name>/<etag>.lock   huggingface_hub's flock files (we lock beside them)
//
// Where links cannot be made, the snapshot holds copies: a new blob is moved there, an existing one copied.

import { copyFileSync, readFileSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { ModernBertError } from '../errors.js';
import { fsError, makeFolders } from '../io/fs-errors.js';
import { writeOutput } from '../io/output.js';
import { COMMIT, type HubSource } from './id.js';

/** huggingface_hub's repo_folder_name for a model: models--org--name. */
export function repoFolderName(id: string): string {
  return ['models', ...id.split('/')].join('--');
}

/** The paths of one repository in a cache. */
export class RepoCache {
  readonly root: string;
  readonly locks: string;

  constructor(
    readonly cacheDir: string,
    readonly id: string,
  ) {
    this.root = join(cacheDir, repoFolderName(id));
    this.locks = join(cacheDir, '.locks', repoFolderName(id));
  }

  /** The folder of one commit's files (what commands open). */
  snapshot(commit: string): string {
    return join(this.root, 'snapshots', commit);
  }

  /**
   * Where a file of the repository appears in a snapshot (a `/`-separated repository path). A name from
   * the server that could leave the snapshot is refused, as huggingface_hub's _validate_relative_filename does.
   */
  pointer(commit: string, file: string): string {
    if (
      file.startsWith('/') ||
      /[\\\0]/.test(file) ||
      file.split('/').some((p) => p === '' || p === '.' || p === '..')
    ) {
      throw new ModernBertError(
        'CORRUPT_FILE',
        `${this.id} names a file "${file}", which is no path inside the repository`,
        { id: this.id, file },
      );
    }
    return join(this.snapshot(commit), ...file.split('/'));
  }

  /** Where the bytes of the file with this ETag are kept. */
  blob(etag: string): string {
    return join(this.root, 'blobs', etag);
  }

  /**
   * The commit a revision stands for in this cache: the revision itself when it is a full commit, else the
   * content of refs/<revision>, if any (read as huggingface_hub does, without trimming).
   */
  commitOf(revision: string): string | undefined {
    if (COMMIT.test(revision)) return revision;
    const ref = join(this.root, 'refs', ...revision.split('/'));
    try {
      if (!statSync(ref).isFile()) return undefined;
      const commit = readFileSync(ref, 'utf8');
      return COMMIT.test(commit) ? commit : undefined;
    } catch {
      return undefined;
    }
  }

  /** Records the commit of a branch or tag, atomically, and only when it changed (a read-only cache stays usable). */
  writeRef(revision: string, commit: string): void {
    if (revision === commit || this.commitOf(revision) === commit) return;
    const ref = join(this.root, 'refs', ...revision.split('/'));
    withFolder(dirname(ref));
    writeOutput(ref, commit, { what: 'Hugging Face cache ref', force: true });
  }

  /** Whether the snapshot has `file` (a link that resolves, or a copy). */
  has(commit: string, file: string): boolean {
    const path = this.pointer(commit, file);
    try {
      return statSync(path).isFile();
    } catch {
      return false;
    }
  }

  /**
   * Puts blob `etag` into snapshot `commit` as `file`: a relative link, or with `copy` (no links here) the
   * blob moved there when `fresh` (nobody else can point at it yet) and copied otherwise, as huggingface_hub's
   * _create_symlink does. The entry is made under a temporary name and renamed over the final one, so that a
   * reader never sees a half-made entry and two processes linking the same file both succeed.
   */
  link(commit: string, file: string, etag: string, o: { copy: boolean; fresh: boolean }): void {
    const dst = this.pointer(commit, file);
    const blob = this.blob(etag);
    const tmp = `${dst}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      makeFolders(dirname(dst));
      if (!o.copy) {
        try {
          symlinkSync(relative(dirname(dst), blob), tmp);
          renameSync(tmp, dst);
          return;
        } catch (e) {
          // A file system without links (FAT, some network shares): fall back to a copy, as huggingface_hub does.
          if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EINVAL', 'ENOSYS'].includes((e as NodeJS.ErrnoException).code ?? ''))
            throw e;
        }
      }
      if (o.fresh) renameSync(blob, tmp);
      else copyFileSync(blob, tmp);
      renameSync(tmp, dst);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw fsError(e, dst, 'write');
    }
  }
}

/**
 * The Hub source of a folder inside a Hugging Face cache (`.../models--org--name/snapshots/<commit>`), for a
 * snapshot named by hand; undefined for any other folder.
 */
export function sourceFromCachePath(dir: string): HubSource | undefined {
  const abs = resolve(dir);
  const commit = basename(abs);
  const snapshots = dirname(abs);
  const repo = basename(dirname(snapshots));
  const m = /^models--([\w.-]+)--([\w.-]+)$/.exec(repo);
  if (!m || basename(snapshots) !== 'snapshots' || !COMMIT.test(commit)) return undefined;
  return { id: `${m[1]}/${m[2]}`, revision: commit, commit };
}

/** Renames `src` to `dst`, turning a file-system failure into a one-line error about the cache. */
export function renameInto(src: string, dst: string): void {
  try {
    renameSync(src, dst);
  } catch (e) {
    throw fsError(e, dst, 'write');
  }
}

/** Makes a folder of the cache and its parents, with a one-line error when it cannot be made. */
export function withFolder(path: string): void {
  try {
    makeFolders(path);
  } catch (e) {
    throw fsError(e, path, 'write');
  }
}
