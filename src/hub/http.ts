// Requests to the Hub: the headers huggingface_hub sends (utils/_headers.py build_hf_headers: a user agent,
// `authorization: Bearer <token>`), time limits, bounded answers, and every failure as one line that says
// what to do: a network failure, 401/403 (name HF_TOKEN), 404 (repository, revision or file).

import { ModernBertError } from '../errors.js';
import { VERSION } from '../version.js';
import type { HubEnv } from './env.js';

/** The largest API answer read (a model's info lists its files; the largest repositories list tens of thousands). */
const MAX_API_BYTES = 32 * 1024 * 1024;

/** What a request was for, for the messages. */
export interface RequestSubject {
  id: string;
  revision: string;
  file?: string;
}

/** A connection to one endpoint with one token. */
export class HubHttp {
  private tokenValue: string | undefined | null = null;

  constructor(readonly env: HubEnv) {}

  /** The token, read once (HF_TOKEN or the token file). */
  token(): string | undefined {
    if (this.tokenValue === null) this.tokenValue = this.env.token();
    return this.tokenValue;
  }

  /** Headers for a request to the endpoint; `auth` false for a CDN on another host (its URL is signed). */
  headers(auth = true): Record<string, string> {
    const token = auth ? this.token() : undefined;
    return {
      'user-agent': `modernbert-ane/${VERSION}; node/${process.versions.node}`,
      // As huggingface_hub's get_hf_file_metadata: no compression, so that sizes and byte ranges are the file's.
      'accept-encoding': 'identity',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    };
  }

  /** fetch with our headers and a time limit on the answer's headers; a failure to connect is a NETWORK error. */
  async fetch(url: string, init: RequestInit & { timeoutMs?: number }, subject: RequestSubject): Promise<Response> {
    const sameHost = new URL(url).origin === new URL(this.env.endpoint).origin;
    const headers = { ...this.headers(sameHost), ...(init.headers as Record<string, string> | undefined) };
    try {
      return await fetch(url, {
        ...init,
        headers,
        signal: init.signal ?? AbortSignal.timeout(init.timeoutMs ?? this.env.metadataTimeoutMs),
      });
    } catch (e) {
      throw networkError(e, url, subject);
    }
  }

  /**
   * A fetch for @huggingface/hub's API calls: our headers (the token goes here, not through the library,
   * which refuses tokens that do not start with "hf_" where huggingface_hub takes any), a bounded body, and
   * a refusal turned into our one-line error before the library sees it.
   */
  apiFetch(subject: RequestSubject): typeof fetch {
    return async (input, init) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      const res = await this.fetch(
        url,
        { ...init, headers: { ...(init?.headers as Record<string, string> | undefined), accept: 'application/json' } },
        subject,
      );
      if (!res.ok) throw await statusError(res, subject, this.token() !== undefined, this.env.endpoint);
      const body = await readBounded(res, MAX_API_BYTES, url, subject);
      return new Response(body, { status: res.status, headers: res.headers });
    };
  }
}

/** A body of at most `max` bytes. */
export async function readBounded(
  res: Response,
  max: number,
  url: string,
  subject: RequestSubject,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    for await (const chunk of res.body ?? []) {
      n += chunk.length;
      if (n > max)
        throw new ModernBertError(
          'NETWORK',
          `${url} answered more than ${max} bytes: not a Hugging Face Hub (HF_ENDPOINT?)`,
          { url },
        );
      chunks.push(chunk);
    }
  } catch (e) {
    if (e instanceof ModernBertError) throw e;
    throw networkError(e, url, subject);
  }
  return Buffer.concat(chunks);
}

/** A failed connection or an interrupted transfer, as one line. */
export function networkError(e: unknown, url: string, subject: RequestSubject): ModernBertError {
  if (e instanceof ModernBertError) return e;
  const err = e as Error & { cause?: { code?: string; message?: string } };
  const why =
    err.name === 'TimeoutError' ? 'no answer in time' : (err.cause?.code ?? err.cause?.message ?? err.message);
  return new ModernBertError(
    'NETWORK',
    `cannot download ${subject.file ? `${subject.file} of ` : ''}${subject.id}: ${new URL(url).origin} cannot be reached (${why}); check the network, or HF_ENDPOINT`,
    { url, id: subject.id },
  );
}

/**
 * A refused request as one line. The Hub answers 401 both for a private or gated model without a valid token
 * and for a repository that does not exist (it will not tell which without a token); 403 when the token may
 * not read it; 404 with X-Error-Code RepoNotFound, RevisionNotFound or EntryNotFound.
 */
export async function statusError(
  res: Response,
  s: RequestSubject,
  hadToken: boolean,
  endpoint: string,
): Promise<ModernBertError> {
  const what = s.file ? `${s.file} of ${s.id}` : s.id;
  const at = `at revision "${s.revision}"`;
  const code = res.headers.get('x-error-code');
  const ctx = { url: res.url, status: res.status, id: s.id, revision: s.revision, hubError: code };
  await res.body?.cancel().catch(() => {});
  // A CDN's refusal (its signed URL expired, say) is no matter of the user's token or of the id.
  if (res.url && new URL(res.url).origin !== new URL(endpoint).origin) {
    return new ModernBertError(
      'NETWORK',
      `the download server ${new URL(res.url).origin} answered ${res.status} for ${what}; run the command again`,
      ctx,
    );
  }
  if (res.status === 401) {
    return new ModernBertError(
      'ACCESS_DENIED',
      hadToken
        ? `the Hub refused the token for ${s.id} (401): HF_TOKEN (or the token file) holds an invalid or expired token, or the model does not exist`
        : `the Hub refused ${s.id} without a token (401): the model is private or gated, or does not exist; set HF_TOKEN to a token that may read it`,
      ctx,
    );
  }
  if (res.status === 403) {
    return new ModernBertError(
      'ACCESS_DENIED',
      `the Hub refused ${s.id} (403)${code === 'GatedRepo' ? ': a gated model' : ''}: the token of HF_TOKEN may not read it (accept the model's conditions on its page, or use a token with access)`,
      ctx,
    );
  }
  if (res.status === 404) {
    if (code === 'RevisionNotFound')
      return new ModernBertError(
        'FILE_NOT_FOUND',
        `${s.id} has no revision "${s.revision}" (404): give a branch, tag or commit that exists`,
        ctx,
      );
    if (code === 'EntryNotFound' && s.file)
      return new ModernBertError('FILE_NOT_FOUND', `${what} does not exist ${at} (404)`, ctx);
    return new ModernBertError(
      'FILE_NOT_FOUND',
      `${s.id} was not found on the Hub ${at} (404): check the id (org/name) and --revision`,
      ctx,
    );
  }
  return new ModernBertError(
    'NETWORK',
    `the Hub answered ${res.status}${res.statusText ? ` ${res.statusText}` : ''} for ${what}; try again later`,
    ctx,
  );
}
