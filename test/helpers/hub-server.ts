// A Hugging Face Hub on the loopback interface, serving checkpoint folders as repositories, as the real Hub
// answers the calls our client makes (and huggingface_hub's file_download.py reads):
//   GET  /api/models/<org>/<name>/revision/<rev>   model info: {_id, id, sha, siblings: [{rfilename}], ...}
//   HEAD|GET /<org>/<name>/resolve/<rev>/<file>    X-Repo-Commit; a small file: 200, ETag = git blob sha1,
//        Content-Length; an LFS file (*.safetensors): 302 to the CDN with X-Linked-Etag = sha256 and
//        X-Linked-Size; errors 401/403/404 with X-Error-Code (RepoNotFound, RevisionNotFound,
//        EntryNotFound, GatedRepo)
//   GET /cdn/<sha256>  (a second server, another origin, as the Hub's CDN): the bytes, with Range (206)
// Every request to both servers is recorded, so tests can assert what was (and was not) asked for, and a
// few faults can be switched on: a transfer cut after N bytes, a corrupted byte, a slow transfer.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';

export interface RecordedRequest {
  server: 'hub' | 'cdn';
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
}

export interface RepoSpec {
  /** Commit -> files ('/'-separated path -> bytes). */
  commits: Record<string, Map<string, Buffer>>;
  /** Branch or tag -> commit. */
  refs: Record<string, string>;
  /** Only this bearer token may read it (401 otherwise). */
  token?: string;
  /** A gated model: 403 for any token but `token`. */
  gated?: boolean;
}

export interface Faults {
  /** Serve at most this many bytes (from the start of the file) of an LFS blob, then drop the connection; `times` transfers (default 1). */
  cut?: { sha256: string; at: number; times?: number };
  /** Flip one byte of every transfer of this LFS blob (its length unchanged). */
  corrupt?: string;
  /** Send LFS blobs in this many pieces, this many ms apart. */
  slow?: { pieces: number; ms: number };
  /** Announce this size (X-Linked-Size) for this LFS blob instead of its own. */
  announce?: { sha256: string; size: number };
  /** Send this ETag for every small file. */
  etag?: string;
}

/** The git blob sha1 (git hash-object), the ETag the Hub gives a file not stored with LFS. */
export function gitSha1(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A made-up 40-hex commit, distinct per label. */
export function commitOf(label: string): string {
  return createHash('sha1').update(label).digest('hex');
}

/** Every file of a folder, by its '/'-separated path. */
export function folderFiles(dir: string, extra: Record<string, Buffer | string> = {}): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p).split('\\').join('/'), readFileSync(p));
    }
  };
  walk(dir);
  for (const [k, v] of Object.entries(extra)) out.set(k, Buffer.from(v));
  return out;
}

const isLfs = (file: string) => file.endsWith('.safetensors');

export class FakeHub {
  readonly repos = new Map<string, RepoSpec>();
  readonly requests: RecordedRequest[] = [];
  faults: Faults = {};
  endpoint = '';
  private cdnBase = '';
  private hub?: Server;
  private cdn?: Server;
  private readonly blobs = new Map<string, Buffer>();

  /** Adds (or replaces) a repository. */
  add(id: string, spec: RepoSpec): void {
    this.repos.set(id, spec);
    for (const files of Object.values(spec.commits))
      for (const [f, data] of files) if (isLfs(f)) this.blobs.set(sha256(data), data);
  }

  async start(): Promise<string> {
    this.hub = createServer((req, res) => this.serveHub(req, res));
    this.cdn = createServer((req, res) => this.serveCdn(req, res));
    const listen = (s: Server) =>
      new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
    this.endpoint = `http://127.0.0.1:${await listen(this.hub)}`;
    this.cdnBase = `http://127.0.0.1:${await listen(this.cdn)}`;
    return this.endpoint;
  }

  async stop(): Promise<void> {
    for (const s of [this.hub, this.cdn]) {
      if (!s) continue;
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }

  /** The requests of one server since index `from`. */
  seen(server: 'hub' | 'cdn', from = 0): RecordedRequest[] {
    return this.requests.slice(from).filter((r) => r.server === server);
  }

  private record(server: 'hub' | 'cdn', req: IncomingMessage): void {
    this.requests.push({ server, method: req.method ?? '', path: req.url ?? '', headers: req.headers });
  }

  private serveHub(req: IncomingMessage, res: ServerResponse): void {
    this.record('hub', req);
    const url = new URL(req.url ?? '/', this.endpoint);
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const m = api ?? resolve;
    if (!m) return this.fail(res, 404, 'RepoNotFound');
    const id = decodeURIComponent(m[1]!);
    const repo = this.repos.get(id);
    if (!repo) return this.fail(res, 404, 'RepoNotFound');
    const auth = req.headers.authorization;
    if (repo.token !== undefined && auth !== `Bearer ${repo.token}`) {
      if (repo.gated && auth !== undefined) return this.fail(res, 403, 'GatedRepo');
      return this.fail(res, 401, 'RepoNotFound');
    }
    const rev = decodeURIComponent(m[2]!);
    const commit = repo.commits[rev] ? rev : repo.refs[rev];
    if (commit === undefined) return this.fail(res, 404, 'RevisionNotFound');
    const files = repo.commits[commit]!;
    if (api) {
      const body = JSON.stringify({
        _id: id,
        id,
        sha: commit,
        private: repo.token !== undefined,
        gated: repo.gated ?? false,
        downloads: 0,
        likes: 0,
        lastModified: '2025-01-01T00:00:00.000Z',
        siblings: [...files.keys()].map((rfilename) => ({ rfilename })),
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      return void res.end(body);
    }
    const file = m[3]!.split('/').map(decodeURIComponent).join('/');
    const data = files.get(file);
    if (!data) return this.fail(res, 404, 'EntryNotFound', { 'x-repo-commit': commit });
    if (isLfs(file)) {
      // The pointer file's own ETag, which a client must not take for the content's.
      res.writeHead(302, {
        location: `${this.cdnBase}/cdn/${sha256(data)}`,
        'x-repo-commit': commit,
        'x-linked-etag': `"${sha256(data)}"`,
        'x-linked-size': String(
          this.faults.announce?.sha256 === sha256(data) ? this.faults.announce.size : data.length,
        ),
        etag: `"${gitSha1(Buffer.from(`pointer ${file}`))}"`,
        'content-length': 0,
      });
      return void res.end();
    }
    this.sendBytes(req, res, data, { 'x-repo-commit': commit, etag: `"${this.faults.etag ?? gitSha1(data)}"` });
  }

  private serveCdn(req: IncomingMessage, res: ServerResponse): void {
    this.record('cdn', req);
    const m = /^\/cdn\/([0-9a-f]{64})$/.exec(req.url ?? '');
    const blob = m ? this.blobs.get(m[1]!) : undefined;
    if (!m || !blob) return this.fail(res, 404, 'EntryNotFound');
    let data = blob;
    if (this.faults.corrupt === m[1]) {
      data = Buffer.from(blob);
      data[data.length >> 1]! ^= 0xff;
    }
    const cut = this.faults.cut?.sha256 === m[1] ? this.faults.cut : undefined;
    if (cut) {
      cut.times = (cut.times ?? 1) - 1;
      if (cut.times <= 0) delete this.faults.cut;
    }
    this.sendBytes(req, res, data, { etag: `"${m[1]}"` }, cut?.at, this.faults.slow);
  }

  /** The bytes, or the range asked for; cut short at file offset `cutAt` (the connection dropped). */
  private sendBytes(
    req: IncomingMessage,
    res: ServerResponse,
    data: Buffer,
    headers: Record<string, string>,
    cutAt?: number,
    slow?: Faults['slow'],
  ): void {
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    if (start > data.length) return this.fail(res, 416, 'RangeNotSatisfiable');
    res.writeHead(range ? 206 : 200, {
      ...headers,
      'content-length': data.length - start,
      'accept-ranges': 'bytes',
      ...(range ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    });
    if (req.method === 'HEAD') return void res.end();
    const end = cutAt === undefined ? data.length : Math.max(start, cutAt);
    const body = data.subarray(start, end);
    const finish = () => (end < data.length ? res.destroy() : res.end());
    if (!slow) {
      res.write(body, finish);
      return;
    }
    const piece = Math.ceil(body.length / slow.pieces);
    let at = 0;
    const next = () => {
      if (at >= body.length || res.destroyed) return finish();
      res.write(body.subarray(at, at + piece));
      at += piece;
      setTimeout(next, slow.ms);
    };
    next();
  }

  private fail(res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}): void {
    const body = JSON.stringify({ error: code });
    res.writeHead(status, {
      ...headers,
      'x-error-code': code,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  }
}
