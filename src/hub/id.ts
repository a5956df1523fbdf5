// What a user names as MODEL, read as a Hugging Face Hub id: `org/name`, `org/name@rev`, with --revision.
// The rules follow huggingface_hub's validate_repo_id (utils/_validators.py): 1-96 characters of
// [A-Za-z0-9_.-] per part, no leading or trailing '-' or '.', no '--' or '..', no '.git' at the end.
// Only the two-part form is taken: a bare `name` is far more often a mistyped folder than one of the
// Hub's few legacy repositories without an owner.

import { ModernBertError } from '../errors.js';

export type { HubSource } from '../model/checkpoint.js';

/** A Hub id with the revision to fetch. */
export interface HubRef {
  id: string;
  revision: string;
}

/** The default branch, as in huggingface_hub's constants.DEFAULT_REVISION. */
export const DEFAULT_REVISION = 'main';

const PART = /^(?![-.])[\w.-]{1,96}(?<![-.])$/;

/** huggingface_hub's REGEX_COMMIT_HASH: a revision that is already a full commit. */
export const COMMIT = /^[0-9a-f]{40}$/;

/** Whether `name` has the shape of a Hub id `org/name` (an optional `@revision` after it). */
export function looksLikeHubId(name: string): boolean {
  const at = name.indexOf('@');
  const id = at < 0 ? name : name.slice(0, at);
  const parts = id.split('/');
  return (
    parts.length === 2 &&
    parts.every((p) => PART.test(p)) &&
    !id.includes('--') &&
    !id.includes('..') &&
    !id.endsWith('.git')
  );
}

/**
 * The id and revision a user named: `org/name@rev`, or `org/name` with `revision` (--revision), else main.
 * Giving both, and different, is an error; so is a revision that could not name a file under refs/.
 */
export function parseHubRef(name: string, revision?: string): HubRef {
  if (!looksLikeHubId(name))
    throw new ModernBertError('BAD_ARGUMENT', `${name} is not a Hugging Face Hub id (org/name, or org/name@revision)`);
  const at = name.indexOf('@');
  const id = at < 0 ? name : name.slice(0, at);
  const inName = at < 0 ? undefined : name.slice(at + 1);
  if (inName !== undefined && revision !== undefined && inName !== revision) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `${name} names revision "${inName}" and --revision says "${revision}": give one`,
    );
  }
  const rev = inName ?? revision ?? DEFAULT_REVISION;
  checkRevision(rev);
  return { id, revision: rev };
}

/**
 * A revision becomes a path under refs/ (huggingface_hub writes refs/<revision>, so `refs/pr/1` nests), so
 * it must stay a relative path inside it: no empty, `.` or `..` parts, no backslash, no control character.
 */
export function checkRevision(revision: string): void {
  const bad =
    revision === '' ||
    revision.length > 255 ||
    /[\\\0-\x1f\x7f]/.test(revision) ||
    revision.split('/').some((p) => p === '' || p === '.' || p === '..');
  if (bad)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `"${revision}" is not a revision (a branch, tag or commit of the repository)`,
    );
}
