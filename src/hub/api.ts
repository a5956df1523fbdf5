// The Hub's model-info API through the official client, @huggingface/hub: GET
// <endpoint>/api/models/<id>/revision/<revision>?expand=sha&expand=siblings&..., which resolves a branch or
// tag to its commit (huggingface_hub's snapshot_download calls the same endpoint, through repo_info) and
// lists the repository's files. Our fetch carries the headers, time limit and error messages (http.ts).

import { modelInfo } from '@huggingface/hub';
import { ModernBertError } from '../errors.js';
import type { HubHttp } from './http.js';
import { COMMIT, type HubRef } from './id.js';

/** A revision of a repository: its commit and its files (`/`-separated paths). */
export interface RepoRevision {
  commit: string;
  files: Set<string>;
}

/** The commit a revision points to and the files the repository holds there. */
export async function repoRevision(http: HubHttp, ref: HubRef): Promise<RepoRevision> {
  let info: { sha?: unknown; filePaths?: unknown };
  try {
    info = await modelInfo({
      name: ref.id,
      revision: ref.revision,
      hubUrl: http.env.endpoint,
      additionalFields: ['sha', 'filePaths'],
      fetch: http.apiFetch(ref),
    });
  } catch (e) {
    if (e instanceof ModernBertError) throw e;
    throw notInfo(http, ref, e);
  }
  const { sha, filePaths } = info;
  if (
    typeof sha !== 'string' ||
    !COMMIT.test(sha) ||
    !Array.isArray(filePaths) ||
    !filePaths.every((f) => typeof f === 'string')
  )
    throw notInfo(http, ref);
  return { commit: sha, files: new Set(filePaths as string[]) };
}

function notInfo(http: HubHttp, ref: HubRef, e?: unknown): ModernBertError {
  const why = e instanceof Error ? ` (${e.message})` : '';
  return new ModernBertError(
    'NETWORK',
    `${http.env.endpoint} did not answer the model info of ${ref.id} as the Hub does (a commit "sha" and the files, "siblings")${why}: check HF_ENDPOINT`,
    { id: ref.id },
  );
}
