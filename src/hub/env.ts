// The environment variables huggingface_hub reads, read the same way (huggingface_hub's constants.py and
// utils/_auth.py), so that both tools share one cache, one endpoint and one login:
//   HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else HF_HOME/hub; HF_HOME defaults to
//   $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface ("~" and $VARS expanded, as expanduser and
//   expandvars do);
//   HF_ENDPOINT (default https://huggingface.co, trailing '/' dropped);
//   HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE true (1, ON, YES, TRUE, any case): no request at all;
//   HF_TOKEN, else HUGGING_FACE_HUB_TOKEN, else the file HF_TOKEN_PATH (default HF_HOME/token), with line
//   breaks removed and spaces trimmed (_clean_token); an empty token is no token;
//   HF_HUB_ETAG_TIMEOUT (10 s) for metadata requests and HF_HUB_DOWNLOAD_TIMEOUT (10 s) for a stalled body;
//   HF_HUB_DISABLE_SYMLINKS true: files are copied into snapshots instead of linked.

import { homedir } from 'node:os';
import { join } from 'node:path';
import { ModernBertError } from '../errors.js';
import { readFileBounded } from '../io/files.js';

/** Everything the Hub code takes from the environment. */
export interface HubEnv {
  endpoint: string;
  cacheDir: string;
  offline: boolean;
  /** Read lazily: only a request needs it, and a missing token file is no error. */
  token(): string | undefined;
  metadataTimeoutMs: number;
  downloadTimeoutMs: number;
  disableSymlinks: boolean;
}

/** huggingface_hub's constants._is_true. */
function isTrue(v: string | undefined): boolean {
  return v !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(v.toUpperCase());
}

/** os.path.expandvars(os.path.expanduser(p)): a leading ~ and $VAR / ${VAR} (unset ones left as written). */
function expand(p: string, env: NodeJS.ProcessEnv): string {
  const home = p === '~' || p.startsWith('~/') ? homedir() + p.slice(1) : p;
  return home.replace(
    /\$(\w+)|\$\{(\w+)\}/g,
    (all, a: string | undefined, b: string | undefined) => env[(a ?? b)!] ?? all,
  );
}

function seconds(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined || v === '') return fallback * 1000;
  const s = Number(v);
  if (!Number.isFinite(s) || s <= 0)
    throw new ModernBertError('BAD_ARGUMENT', `${name}=${v} is not a positive number of seconds`);
  return s * 1000;
}

/** The cleaned token, or undefined (huggingface_hub's _clean_token). */
function clean(token: string | undefined): string | undefined {
  const t = token?.replace(/[\r\n]/g, '').trim();
  return t ? t : undefined;
}

/** The Hub settings of an environment (the process's by default). */
export function hubEnv(env: NodeJS.ProcessEnv = process.env): HubEnv {
  const get = (k: string) => (env[k] === '' ? undefined : env[k]);
  const hfHome = expand(get('HF_HOME') ?? join(get('XDG_CACHE_HOME') ?? join(homedir(), '.cache'), 'huggingface'), env);
  const cacheDir = expand(get('HF_HUB_CACHE') ?? get('HUGGINGFACE_HUB_CACHE') ?? join(hfHome, 'hub'), env);
  const endpoint = (get('HF_ENDPOINT') ?? 'https://huggingface.co').replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]/.test(endpoint))
    throw new ModernBertError('BAD_ARGUMENT', `HF_ENDPOINT=${endpoint} is not an http(s) URL`);
  const tokenPath = expand(get('HF_TOKEN_PATH') ?? join(hfHome, 'token'), env);
  return {
    endpoint,
    cacheDir,
    offline: isTrue(env['HF_HUB_OFFLINE'] || env['TRANSFORMERS_OFFLINE']),
    token: () => clean(get('HF_TOKEN') ?? get('HUGGING_FACE_HUB_TOKEN')) ?? readTokenFile(tokenPath),
    metadataTimeoutMs: seconds(get('HF_HUB_ETAG_TIMEOUT'), 'HF_HUB_ETAG_TIMEOUT', 10),
    downloadTimeoutMs: seconds(get('HF_HUB_DOWNLOAD_TIMEOUT'), 'HF_HUB_DOWNLOAD_TIMEOUT', 10),
    disableSymlinks: isTrue(env['HF_HUB_DISABLE_SYMLINKS']),
  };
}

/** The token file `huggingface-cli login` writes; absent means no token, anything else unreadable is an error. */
function readTokenFile(path: string): string | undefined {
  try {
    return clean(readFileBounded(path, 64 * 1024, 'token file').toString('utf8'));
  } catch (e) {
    if (e instanceof ModernBertError && e.code === 'FILE_NOT_FOUND') return undefined;
    throw e;
  }
}
