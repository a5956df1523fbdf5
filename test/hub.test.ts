// Hugging Face Hub ids and the shared cache, end to end through the CLI, against a Hub served on the loopback
// interface (helpers/hub-server.ts) with HF_ENDPOINT pointed at it and a temporary HF_HOME in every test:
// downloads, the cache layout huggingface_hub writes, offline runs, resume, errors, concurrent processes.

import { spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { openModel } from '../src/run/load.js';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import { sentenceTransformers } from './helpers/embedding.js';
import {
  cleanupTempDirs,
  FX,
  ROOT,
  tempDir,
  writeCheckpoint,
  readFixtureJson,
  readTensors,
} from './helpers/fixtures.js';
import { commitOf, FakeHub, folderFiles, gitSha1, sha256 } from './helpers/hub-server.js';

const TINY = join(FX, 'tiny-mlm');
const MASKED = 'The capital of France is [MASK].';
const C1 = commitOf('tiny-1');
const C2 = commitOf('tiny-2');
/** Files a repository holds that no command reads: none may ever be requested. */
const NEVER = {
  'pytorch_model.bin': 'pickle',
  'model.onnx': 'onnx',
  'onnx/model.onnx': 'onnx',
  'flax_model.msgpack': 'msgpack',
  'tf_model.h5': 'h5',
  'README.md': '# tiny',
  'coreml/model.mlpackage/Manifest.json': '{}',
};
const tinyFiles = folderFiles(TINY, NEVER); // golden.safetensors and config.v4.json included: not read either
const weights = tinyFiles.get('model.safetensors')!;

const hub = new FakeHub();
const HF_VARS = [
  'HF_ENDPOINT',
  'HF_HOME',
  'HF_HUB_CACHE',
  'HUGGINGFACE_HUB_CACHE',
  'XDG_CACHE_HOME',
  'HF_TOKEN',
  'HUGGING_FACE_HUB_TOKEN',
  'HF_TOKEN_PATH',
  'HF_HUB_OFFLINE',
  'TRANSFORMERS_OFFLINE',
  'HF_HUB_DISABLE_SYMLINKS',
  'HF_HUB_ETAG_TIMEOUT',
  'HF_HUB_DOWNLOAD_TIMEOUT',
];
const saved = Object.fromEntries(HF_VARS.map((k) => [k, process.env[k]]));
let home: string;
let cache: string;

beforeAll(async () => {
  await hub.start();
  hub.add('test-org/tiny-mlm', { commits: { [C1]: tinyFiles }, refs: { main: C1 } });
});
afterAll(async () => {
  await hub.stop();
  cleanupTempDirs();
});
beforeEach(() => {
  for (const k of HF_VARS) delete process.env[k];
  home = tempDir('mbane-hfhome-');
  cache = join(home, 'hub');
  // Every test talks to the loopback Hub only, never to huggingface.co.
  process.env['HF_ENDPOINT'] = hub.endpoint;
  process.env['HF_HOME'] = home;
  hub.faults = {};
});
afterEach(() => {
  for (const k of HF_VARS)
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
});

const repoDir = (id: string) => join(cache, `models--${id.replace('/', '--')}`);
/** A loopback port that nothing listens on (one just closed). */
async function closedPort(): Promise<number> {
  const s = createServer();
  const port = await new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
  await new Promise((r) => s.close(r));
  return port;
}

/** The paths a run asked the Hub's servers for, from request `from` on. */
const paths = (from: number) =>
  hub.requests.slice(from).map((r) => `${r.server} ${r.method} ${decodeURIComponent(r.path.split('?')[0]!)}`);

describe('download ID', () => {
  it('fetches only the checkpoint files into the cache as huggingface_hub lays it out, and prints the snapshot folder', async () => {
    const from = hub.requests.length;
    const r = await cli('download', 'test-org/tiny-mlm');
    expect(r.code, r.stderr).toBe(0);
    const snap = join(repoDir('test-org/tiny-mlm'), 'snapshots', C1);
    expect(r.stdout).toBe(`${snap}\n`);
    expect(readFileSync(join(repoDir('test-org/tiny-mlm'), 'refs', 'main'), 'utf8')).toBe(C1);
    expect(readdirSync(snap).sort()).toEqual([
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    for (const f of readdirSync(snap)) {
      const data = tinyFiles.get(f)!;
      // Named by the ETag: the sha256 of an LFS file, the git blob sha1 of a small one; linked relatively.
      const etag = f === 'model.safetensors' ? sha256(data) : gitSha1(data);
      expect(lstatSync(join(snap, f)).isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(snap, f))).toBe(`../../blobs/${etag}`);
      expect(readFileSync(join(snap, f)).equals(data)).toBe(true);
    }
    expect(readdirSync(join(repoDir('test-org/tiny-mlm'), 'blobs')).filter((b) => b.includes('.'))).toEqual([]);
    const asked = paths(from);
    expect(asked[0]).toBe(`hub GET /api/models/test-org/tiny-mlm/revision/main`);
    for (const f of [...Object.keys(NEVER), 'golden.safetensors', 'config.v4.json', 'golden.json'])
      expect(asked.join('\n')).not.toContain(f);
    expect(asked.filter((p) => p.startsWith('cdn GET'))).toEqual([`cdn GET /cdn/${sha256(weights)}`]);
    // The CDN's URL is signed: no token goes there; the Hub got the user agent.
    expect(hub.seen('cdn', from).every((q) => q.headers.authorization === undefined)).toBe(true);
    expect(hub.seen('hub', from).every((q) => /^modernbert-ane\//.test(q.headers['user-agent'] ?? ''))).toBe(true);

    // A second download finds it all: one model-info request, nothing fetched.
    const again = hub.requests.length;
    const j = json(await cli('download', 'test-org/tiny-mlm', '--json')) as Record<string, unknown>;
    expect(j).toEqual({
      path: snap,
      id: 'test-org/tiny-mlm',
      revision: 'main',
      commit: C1,
      downloaded: { files: [], bytes: 0 },
    });
    expect(paths(again)).toEqual([`hub GET /api/models/test-org/tiny-mlm/revision/main`]);
  });

  it('--json reports what was downloaded', async () => {
    const j = json(await cli('download', 'test-org/tiny-mlm', '--json')) as {
      downloaded: { files: string[]; bytes: number };
    };
    expect(j.downloaded.files.sort()).toEqual([
      'config.json',
      'model.safetensors',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    expect(j.downloaded.bytes).toBe(
      ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].reduce(
        (s, f) => s + tinyFiles.get(f)!.length,
        0,
      ),
    );
  });
});

describe('predict org/name TEXT', () => {
  it('downloads, prints what the local folder gives, and gives the same offline from the cache without a request', async () => {
    const local = await cli('predict', TINY, MASKED, '--json');
    expect(local.code, local.stderr).toBe(0);
    const online = await cli('predict', 'test-org/tiny-mlm', MASKED, '--json');
    expect(online.code, online.stderr).toBe(0);
    expect(online.stdout).toBe(local.stdout);
    process.env['HF_HUB_OFFLINE'] = '1';
    const from = hub.requests.length;
    const offline = await cli('predict', 'test-org/tiny-mlm', MASKED, '--json');
    expect(offline.code, offline.stderr).toBe(0);
    expect(offline.stdout).toBe(local.stdout);
    expect(hub.requests.length).toBe(from);
  });

  it('offline and not cached: one line naming the folders searched and the download command, exit 2, no request', async () => {
    process.env['HF_HUB_OFFLINE'] = 'true';
    const from = hub.requests.length;
    const r = await cli('predict', 'test-org/tiny-mlm', MASKED);
    expectOneLineError(
      r,
      /test-org\/tiny-mlm is not in the Hugging Face cache \(searched .*test-org\/tiny-mlm and .*models--test-org--tiny-mlm\).*HF_HUB_OFFLINE.*modernbert-ane download test-org\/tiny-mlm/,
    );
    expect(hub.requests.length).toBe(from);
  });

  it('a local folder of the same name wins, and asks the Hub nothing', async () => {
    const cwd = tempDir('mbane-cwd-');
    cpSync(TINY, join(cwd, 'test-org', 'tiny-mlm'), { recursive: true });
    const from = hub.requests.length;
    const before = process.cwd();
    process.chdir(cwd);
    try {
      const r = await cli('predict', 'test-org/tiny-mlm', MASKED, '--json');
      expect(r.code, r.stderr).toBe(0);
    } finally {
      process.chdir(before);
    }
    expect(hub.requests.length).toBe(from);
    expect(existsSync(cache)).toBe(false);
  });
});

describe('convert org/name', () => {
  it('records the Hub id and the resolved commit, not the snapshot folder', async () => {
    const out = join(tempDir(), 'm.mlpackage');
    const r = await cli('convert', 'test-org/tiny-mlm', '--out', out, '--seq-len', '16', '--no-fidelity');
    expect(r.code, r.stderr).toBe(0);
    const meta = readMLPackage(out).description.metadata.userDefined!;
    expect(meta['source_model']).toBe('test-org/tiny-mlm');
    expect(meta['source_commit']).toBe(C1);
  });

  it('a snapshot folder given by hand records its Hub id and commit too', async () => {
    expect((await cli('download', 'test-org/tiny-mlm')).code).toBe(0);
    const out = join(tempDir(), 'm.mlpackage');
    expect(
      (
        await cli(
          'convert',
          join(repoDir('test-org/tiny-mlm'), 'snapshots', C1),
          '--out',
          out,
          '--seq-len',
          '16',
          '--no-fidelity',
        )
      ).code,
    ).toBe(0);
    const meta = readMLPackage(out).description.metadata.userDefined!;
    expect([meta['source_model'], meta['source_commit']]).toEqual(['test-org/tiny-mlm', C1]);
  });

  it('export-onnx records them as well', async () => {
    const out = join(tempDir(), 'm.onnx');
    const r = await cli('export-onnx', 'test-org/tiny-mlm', '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    const bytes = readFileSync(out).toString('latin1');
    expect(bytes).toContain('test-org/tiny-mlm');
    expect(bytes).toContain(C1);
  });
});

describe('revisions', () => {
  beforeAll(() => {
    const old = new Map(tinyFiles);
    old.set('config.json', Buffer.from(JSON.stringify({ ...readFixtureJson('tiny-mlm'), norm_eps: 1e-6 }, null, 2)));
    hub.add('test-org/two-commits', {
      commits: { [C1]: old, [C2]: tinyFiles },
      refs: { main: C2, v1: C1, 'refs/pr/1': C1 },
    });
  });

  it('org/name@rev and --revision fetch that revision and record its ref', async () => {
    const main = json(await cli('inspect', 'test-org/two-commits', '--json')) as { norm_eps: number };
    const tag = json(await cli('inspect', 'test-org/two-commits@v1', '--json')) as { norm_eps: number };
    const flag = json(await cli('inspect', 'test-org/two-commits', '--revision', 'v1', '--json')) as {
      norm_eps: number;
    };
    const pr = json(await cli('inspect', 'test-org/two-commits', '--revision', 'refs/pr/1', '--json')) as {
      norm_eps: number;
    };
    expect([main.norm_eps, tag.norm_eps, flag.norm_eps, pr.norm_eps]).toEqual([1e-5, 1e-6, 1e-6, 1e-6]);
    const refs = join(repoDir('test-org/two-commits'), 'refs');
    expect([
      readFileSync(join(refs, 'main'), 'utf8'),
      readFileSync(join(refs, 'v1'), 'utf8'),
      readFileSync(join(refs, 'refs', 'pr', '1'), 'utf8'),
    ]).toEqual([C2, C1, C1]);
    // The two snapshots share the blobs that did not change.
    expect(readdirSync(join(repoDir('test-org/two-commits'), 'blobs'))).toHaveLength(5);
  });

  it('a commit already in the cache is used without any request, online too', async () => {
    expect((await cli('download', `test-org/two-commits@${C1}`)).code).toBe(0);
    const from = hub.requests.length;
    const r = await cli('inspect', 'test-org/two-commits', '--revision', C1, '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(hub.requests.length).toBe(from);
  });

  it('two different revisions, or --revision on a local folder, are usage errors', async () => {
    expectOneLineError(
      await cli('inspect', 'test-org/two-commits@v1', '--revision', 'main'),
      /names revision "v1" and --revision says "main"/,
    );
    expectOneLineError(
      await cli('inspect', TINY, '--revision', 'main'),
      /--revision picks a revision of a Hub id; .* is a local folder/,
    );
    expectOneLineError(await cli('inspect', 'test-org/two-commits@..'), /"\.\." is not a revision/);
  });
});

describe('errors, one line each, exit 2', () => {
  beforeAll(() => {
    hub.add('test-org/private', { commits: { [C1]: tinyFiles }, refs: { main: C1 }, token: 'hf_right' });
    hub.add('test-org/gated', { commits: { [C1]: tinyFiles }, refs: { main: C1 }, token: 'hf_right', gated: true });
  });

  it('401 without a token names HF_TOKEN; the token from HF_TOKEN or from HF_HOME/token is sent', async () => {
    expectOneLineError(
      await cli('predict', 'test-org/private', MASKED),
      /refused test-org\/private without a token \(401\).*set HF_TOKEN/,
    );
    process.env['HF_TOKEN'] = 'hf_wrong';
    expectOneLineError(
      await cli('predict', 'test-org/private', MASKED),
      /refused the token for test-org\/private \(401\): HF_TOKEN/,
    );
    process.env['HF_TOKEN'] = 'hf_right';
    expect((await cli('download', 'test-org/private')).code).toBe(0);
    delete process.env['HF_TOKEN'];
    const other = tempDir('mbane-hfhome-');
    process.env['HF_HOME'] = other;
    writeFileSync(join(other, 'token'), 'hf_right\n');
    const from = hub.requests.length;
    const r = await cli('download', 'test-org/private');
    expect(r.code, r.stderr).toBe(0);
    expect(hub.seen('hub', from).every((q) => q.headers.authorization === 'Bearer hf_right')).toBe(true);
  });

  it('403 for a gated model names HF_TOKEN', async () => {
    process.env['HF_TOKEN'] = 'hf_other';
    expectOneLineError(
      await cli('convert', 'test-org/gated', '--out', join(tempDir(), 'm.mlpackage')),
      /refused test-org\/gated \(403\): a gated model: the token of HF_TOKEN may not read it/,
    );
  });

  it('404 for a repository or a revision that does not exist', async () => {
    expectOneLineError(
      await cli('predict', 'test-org/nothing-here', MASKED),
      /test-org\/nothing-here was not found on the Hub at revision "main" \(404\)/,
    );
    expectOneLineError(
      await cli('predict', 'test-org/tiny-mlm@no-such-branch', MASKED),
      /test-org\/tiny-mlm has no revision "no-such-branch" \(404\)/,
    );
    expectOneLineError(await cli('download', 'not a hub id'), /not a Hugging Face Hub id/);
    // A package path that is not there is no Hub id, and --revision needs a model to apply to.
    const from = hub.requests.length;
    expectOneLineError(
      await cli('inspect', 'test-org/missing.mlpackage'),
      /package test-org\/missing.mlpackage does not exist/,
    );
    expectOneLineError(
      await cli('predict', '--revision', 'v1', MASKED),
      /--revision picks a revision of a Hub id: name the model/,
    );
    expect(hub.requests.length).toBe(from);
  });

  it('a blob whose checksum does not match: nothing linked, nothing kept', async () => {
    hub.faults.corrupt = sha256(weights);
    const r = await cli('predict', 'test-org/tiny-mlm', MASKED);
    expectOneLineError(
      r,
      /model.safetensors of test-org\/tiny-mlm failed its check \(sha256 [0-9a-f]{64}, expected [0-9a-f]{64}\); the download was deleted and nothing was linked/,
    );
    const snap = join(repoDir('test-org/tiny-mlm'), 'snapshots', C1);
    expect(existsSync(join(snap, 'model.safetensors'))).toBe(false);
    expect(lstatSync(join(snap, 'config.json')).isSymbolicLink()).toBe(true);
    expect(readdirSync(join(repoDir('test-org/tiny-mlm'), 'blobs'))).not.toContain(sha256(weights));
    expect(readdirSync(join(repoDir('test-org/tiny-mlm'), 'blobs')).filter((b) => b.endsWith('.incomplete'))).toEqual(
      [],
    );
    hub.faults = {};
    expect((await cli('predict', 'test-org/tiny-mlm', MASKED)).code).toBe(0);
  });

  it('a blob longer than the Hub announced: nothing linked, nothing kept', async () => {
    hub.faults.announce = { sha256: sha256(weights), size: weights.length - 100 };
    expectOneLineError(
      await cli('download', 'test-org/tiny-mlm'),
      new RegExp(
        `sent more than the ${weights.length - 100} bytes announced for model.safetensors of test-org/tiny-mlm; nothing was linked`,
      ),
    );
    expect(
      readdirSync(join(repoDir('test-org/tiny-mlm'), 'blobs')).filter((b) => b.startsWith(sha256(weights))),
    ).toEqual([]);
    expect(existsSync(join(repoDir('test-org/tiny-mlm'), 'snapshots', C1, 'model.safetensors'))).toBe(false);
  });

  it('names from the server that could leave the cache are refused: an ETag, a file the index names', async () => {
    hub.faults.etag = '../../../escape';
    expectOneLineError(
      await cli('download', 'test-org/tiny-mlm'),
      /sent ETag "\.\.\/\.\.\/\.\.\/escape" for config.json of test-org\/tiny-mlm, which cannot name a cache file/,
    );
    hub.faults = {};
    const files = new Map(tinyFiles);
    files.delete('model.safetensors');
    files.set(
      'model.safetensors.index.json',
      Buffer.from(
        JSON.stringify({ weight_map: { 'model.embeddings.tok_embeddings.weight': '../../../escape.safetensors' } }),
      ),
    );
    files.set('../../../escape.safetensors', weights);
    hub.add('test-org/escape', { commits: { [C1]: files }, refs: { main: C1 } });
    expectOneLineError(
      await cli('download', 'test-org/escape'),
      /test-org\/escape names a file "\.\.\/\.\.\/\.\.\/escape\.safetensors", which is no path inside the repository/,
    );
    expect(readdirSync(home).sort()).toEqual(['hub']);
    expect(readdirSync(cache).sort()).toEqual(['.locks', 'models--test-org--escape']);
  });

  it('no network: names the endpoint; a cached model still serves', async () => {
    const closed = await closedPort();
    process.env['HF_ENDPOINT'] = `http://127.0.0.1:${closed}`;
    expectOneLineError(
      await cli('predict', 'test-org/tiny-mlm', MASKED),
      new RegExp(
        `cannot download test-org/tiny-mlm: http://127\\.0\\.0\\.1:${closed} cannot be reached \\(ECONNREFUSED\\).*not in the Hugging Face cache`,
      ),
    );
    process.env['HF_ENDPOINT'] = hub.endpoint;
    expect((await cli('download', 'test-org/tiny-mlm')).code).toBe(0);
    process.env['HF_ENDPOINT'] = `http://127.0.0.1:${closed}`;
    const r = await cli('predict', 'test-org/tiny-mlm', MASKED, '--json');
    expect(r.code, r.stderr).toBe(0);
  });

  it('a repository without safetensors weights is refused before any file is fetched', async () => {
    const bin = new Map([...tinyFiles].filter(([f]) => f !== 'model.safetensors'));
    hub.add('test-org/bin-only', { commits: { [C1]: bin }, refs: { main: C1 } });
    const from = hub.requests.length;
    expectOneLineError(
      await cli('convert', 'test-org/bin-only', '--out', join(tempDir(), 'm.mlpackage')),
      /test-org\/bin-only at [0-9a-f]{12} has no model.safetensors .*it has pytorch_model.bin/,
    );
    expect(paths(from)).toEqual(['hub GET /api/models/test-org/bin-only/revision/main']);
  });
});

describe('an interrupted download resumes', () => {
  it('a connection cut halfway fails the run with the partial file kept, and the next run fetches only the rest', async () => {
    const half = weights.length >> 1;
    // Cut halfway, and every retry gets nothing: the run ends.
    hub.faults.cut = { sha256: sha256(weights), at: half, times: 100 };
    const first = await cli('download', 'test-org/tiny-mlm');
    expectOneLineError(
      first,
      new RegExp(
        `model.safetensors of test-org/tiny-mlm.*; \\d+ of ${weights.length} bytes are kept in the cache: run the command again to resume`,
      ),
    );
    const blobs = join(repoDir('test-org/tiny-mlm'), 'blobs');
    const partial = join(blobs, `${sha256(weights)}.incomplete`);
    const kept = statSync(partial).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(half);
    expect(first.stderr).toContain(` ${kept} of ${weights.length} bytes are kept`);
    expect(existsSync(join(repoDir('test-org/tiny-mlm'), 'snapshots', C1, 'model.safetensors'))).toBe(false);
    hub.faults = {};
    const from = hub.requests.length;
    const second = await cli('download', 'test-org/tiny-mlm');
    expect(second.code, second.stderr).toBe(0);
    expect(hub.seen('cdn', from).map((q) => q.headers.range)).toEqual([`bytes=${kept}-`]);
    expect(readFileSync(join(second.stdout.trim(), 'model.safetensors')).equals(weights)).toBe(true);
    expect(existsSync(partial)).toBe(false);
  });

  it('a connection cut once is resumed within the run', async () => {
    hub.faults.cut = { sha256: sha256(weights), at: weights.length >> 1 };
    const from = hub.requests.length;
    const r = await cli('download', 'test-org/tiny-mlm');
    expect(r.code, r.stderr).toBe(0);
    const ranges = hub.seen('cdn', from).map((q) => q.headers.range);
    expect(ranges).toHaveLength(2);
    expect(ranges[0]).toBeUndefined();
    expect(Number(/^bytes=(\d+)-$/.exec(ranges[1] ?? '')?.[1])).toBeGreaterThan(0);
    expect(readFileSync(join(r.stdout.trim(), 'model.safetensors')).equals(weights)).toBe(true);
  });
});

describe('two processes downloading the same model at once', () => {
  it('both succeed, the blob is fetched once and is whole', async () => {
    hub.faults.slow = { pieces: 20, ms: 25 };
    const bin = join(ROOT, 'bin', 'modernbert-ane.js');
    const run = () =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
        const child = spawn(process.execPath, [bin, 'download', 'test-org/tiny-mlm'], {
          env: { ...process.env },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('exit', (code) => done({ code, stdout, stderr }));
      });
    const from = hub.requests.length;
    const [a, b] = await Promise.all([run(), run()]);
    expect([a.code, b.code], a.stderr + b.stderr).toEqual([0, 0]);
    expect(a.stdout).toBe(b.stdout);
    expect(hub.seen('cdn', from)).toHaveLength(1);
    const snap = a.stdout.trim();
    expect(readFileSync(join(snap, 'model.safetensors')).equals(weights)).toBe(true);
    const blobs = readdirSync(join(repoDir('test-org/tiny-mlm'), 'blobs'));
    expect(blobs.filter((f) => f.includes('.'))).toEqual([]);
    expect(readdirSync(join(cache, '.locks', 'models--test-org--tiny-mlm'))).toEqual([]);
  });
});

describe("a cache written by Python's huggingface_hub", () => {
  /** Lays out models--org--name by hand as huggingface_hub does: blobs by ETag, relative links, refs/main, its .locks. */
  function pythonCache(id: string, commit: string, files: Map<string, Buffer>): string {
    const repo = repoDir(id);
    mkdirSync(join(repo, 'blobs'), { recursive: true });
    mkdirSync(join(repo, 'refs'), { recursive: true });
    mkdirSync(join(cache, '.locks', `models--${id.replace('/', '--')}`), { recursive: true });
    writeFileSync(join(repo, 'refs', 'main'), commit);
    for (const [f, data] of files) {
      const etag = f.endsWith('.safetensors') ? sha256(data) : gitSha1(data);
      writeFileSync(join(repo, 'blobs', etag), data);
      // filelock leaves its lock files behind.
      writeFileSync(join(cache, '.locks', `models--${id.replace('/', '--')}`, `${etag}.lock`), '');
      const link = join(repo, 'snapshots', commit, ...f.split('/'));
      mkdirSync(join(link, '..'), { recursive: true });
      symlinkSync(relative(join(link, '..'), join(repo, 'blobs', etag)), link);
    }
    return join(repo, 'snapshots', commit);
  }

  it('is found without any download: offline with no request, online with only the model-info request', async () => {
    const files = new Map(
      ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].map((f) => [
        f,
        tinyFiles.get(f)!,
      ]),
    );
    pythonCache('test-org/tiny-mlm', C1, files);
    const local = await cli('predict', TINY, MASKED, '--json');
    process.env['HF_HUB_OFFLINE'] = '1';
    let from = hub.requests.length;
    const offline = await cli('predict', 'test-org/tiny-mlm', MASKED, '--json');
    expect(offline.stdout).toBe(local.stdout);
    expect(hub.requests.length).toBe(from);
    delete process.env['HF_HUB_OFFLINE'];
    from = hub.requests.length;
    const online = await cli('predict', 'test-org/tiny-mlm', MASKED, '--json');
    expect(online.stdout).toBe(local.stdout);
    expect(paths(from)).toEqual(['hub GET /api/models/test-org/tiny-mlm/revision/main']);
  });

  it('a sharded checkpoint whose shards link into blobs/ loads (HF_HUB_CACHE set directly)', async () => {
    const dir = await writeCheckpoint(tempDir('mbane-ckpt-'), {
      config: readFixtureJson('tiny-mlm'),
      tensors: readTensors(join(TINY, 'model.safetensors')),
      shards: 2,
      tokenizerFrom: TINY,
    });
    process.env['HF_HUB_CACHE'] = cache = join(tempDir('mbane-hubcache-'), 'elsewhere');
    process.env['HF_HUB_OFFLINE'] = '1';
    pythonCache('test-org/sharded', C2, folderFiles(dir));
    const sharded = await cli('predict', 'test-org/sharded', MASKED, '--json');
    expect(sharded.code, sharded.stderr).toBe(0);
    expect(sharded.stdout).toBe((await cli('predict', TINY, MASKED, '--json')).stdout);
  });
});

describe('what is downloaded', () => {
  it('a sharded repository: the index and the shards it names, nothing else', async () => {
    const dir = await writeCheckpoint(tempDir('mbane-ckpt-'), {
      config: readFixtureJson('tiny-mlm'),
      tensors: readTensors(join(TINY, 'model.safetensors')),
      shards: 3,
      tokenizerFrom: TINY,
    });
    const files = folderFiles(dir, { 'model-extra.safetensors': 'not named by the index', ...NEVER });
    hub.add('test-org/sharded', { commits: { [C1]: files }, refs: { main: C1 } });
    const r = json(await cli('download', 'test-org/sharded', '--json')) as {
      path: string;
      downloaded: { files: string[] };
    };
    expect(r.downloaded.files.sort()).toEqual([
      'config.json',
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    expect((await cli('predict', 'test-org/sharded', MASKED, '--json')).stdout).toBe(
      (await cli('predict', TINY, MASKED, '--json')).stdout,
    );
  });

  it("a sentence-transformers repository: modules.json and its Pooling module's config too, and embed runs", async () => {
    const dir = await sentenceTransformers('mean', true);
    hub.add('test-org/embedder', { commits: { [C1]: folderFiles(dir) }, refs: { main: C1 } });
    const r = json(await cli('download', 'test-org/embedder', '--json')) as { downloaded: { files: string[] } };
    expect(r.downloaded.files.sort()).toEqual([
      '1_Pooling/config.json',
      'config.json',
      'model.safetensors',
      'modules.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ]);
    const snap = join(repoDir('test-org/embedder'), 'snapshots', C1);
    expect(readlinkSync(join(snap, '1_Pooling', 'config.json'))).toMatch(/^\.\.\/\.\.\/\.\.\/blobs\/[0-9a-f]{40}$/);
    const hubModel = await openModel('test-org/embedder');
    const localModel = await openModel(dir);
    try {
      expect(hubModel.head).toBe('embedding');
      expect(hubModel.source).toEqual({ id: 'test-org/embedder', revision: 'main', commit: C1 });
      const ids = { ids: Int32Array.from([1, 5, 6, 7, 2]) };
      const [a, b] = [await hubModel.runner.forward(ids), await localModel.runner.forward(ids)];
      expect([...a.outputs.get('embedding')!.data]).toEqual([...b.outputs.get('embedding')!.data]);
    } finally {
      hubModel.close();
      localModel.close();
    }
  });

  it('HF_HUB_DISABLE_SYMLINKS=1: the snapshot holds copies', async () => {
    process.env['HF_HUB_DISABLE_SYMLINKS'] = '1';
    const r = await cli('download', 'test-org/tiny-mlm');
    expect(r.code, r.stderr).toBe(0);
    const snap = r.stdout.trim();
    for (const f of readdirSync(snap)) {
      expect(lstatSync(join(snap, f)).isFile()).toBe(true);
      expect(readFileSync(join(snap, f)).equals(tinyFiles.get(f)!)).toBe(true);
    }
    expect(realpathSync(join(snap, 'model.safetensors'))).toBe(join(snap, 'model.safetensors'));
  });
});
