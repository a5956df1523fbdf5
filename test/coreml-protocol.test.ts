// The Core ML helper's protocol from the Node side: array encoding both ways, the client's handling of every
// kind of reply (and of a helper that dies, hangs, prints garbage or answers the wrong id), and the session's
// caches, against the Node stand-in (test/helpers/coreml-standin.mjs, our engine in place of Core ML).

import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMLPackage } from '../src/coreml/mil-read.js';
import { ModernBertError } from '../src/errors.js';
import { f16BitsToF32 } from '../src/numeric/fp16.js';
import { processHelperEnv, type HelperEnv } from '../src/run/coreml/build.js';
import { CPU_ONLY_HINT, HelperProcess } from '../src/run/coreml/client.js';
import { coremlExecutorFactory } from '../src/run/coreml/executor.js';
import { decodeArray, encodeArray } from '../src/run/coreml/protocol.js';
import { CoreMLSession } from '../src/run/coreml/session.js';
import { PackageRunner } from '../src/run/package-runner.js';
import { cli } from './helpers/cli.js';
import { cleanupTempDirs, ROOT, tempDir } from './helpers/fixtures.js';
import { expectError } from './helpers/run.js';

const STANDIN = join(ROOT, 'test', 'helpers', 'coreml-standin.mjs');
const standin = (...args: string[]) => [process.execPath, STANDIN, ...args];
const MINI = join(ROOT, 'models', 'mini-trained');
let pkg = '';
let cache = '';

/** A session on the stand-in, its cache in the test's folder. */
function session(args: string[] = [], timeouts = {}, cacheDir = cache): CoreMLSession {
  const env: HelperEnv = {
    ...processHelperEnv(),
    env: { MODERNBERT_ANE_COREML_HELPER: JSON.stringify(standin(...args)), MODERNBERT_ANE_COREML_CACHE: cacheDir },
  };
  return new CoreMLSession(env, timeouts);
}

beforeAll(async () => {
  const dir = tempDir('mbane-coreml-');
  pkg = join(dir, 'mini.mlpackage');
  cache = join(dir, 'cache');
  const r = await cli('convert', MINI, '--out', pkg, '--seq-len', '16,32', '--tokenizer');
  expect(r.code, r.stderr).toBe(0);
});
afterAll(cleanupTempDirs);

describe('arrays on the wire', () => {
  it('int32 and float32 round-trip exactly, as little-endian bytes', () => {
    const ids = encodeArray({ shape: [1, 3], data: new Int32Array([1, -2, 2 ** 31 - 1]) }, 'int32');
    expect(Buffer.from(ids.data, 'base64')).toEqual(
      Buffer.from([1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
    );
    expect(Array.from(decodeArray(ids, 'x').data)).toEqual([1, -2, 2 ** 31 - 1]);
    const f = new Float32Array([0.1, -3.5e38, 1e-45]);
    const w = encodeArray({ shape: [3], data: f }, 'float32');
    expect(decodeArray(w, 'x')).toEqual({ dtype: 'float32', shape: [3], data: f });
  });

  it('float16 rounds to nearest even and decodes to the same values', () => {
    const w = encodeArray({ shape: [2, 2], data: new Float32Array([1, 1 + 2 ** -11, 65504, -1e-4]) }, 'float16');
    const bits = new Uint16Array(new Uint8Array(Buffer.from(w.data, 'base64')).buffer);
    expect(Array.from(bits.subarray(0, 3))).toEqual([0x3c00, 0x3c00, 0x7bff]); // 1 + 2^-11 is a tie: to even
    const back = decodeArray(w, 'x');
    expect(back.shape).toEqual([2, 2]);
    expect(Array.from(back.data)).toEqual(Array.from(bits, f16BitsToF32));
    // float64 outputs (a model could declare them) decode to float32.
    const d = {
      dtype: 'float64',
      shape: [2],
      data: Buffer.from(new Float64Array([0.5, -2]).buffer).toString('base64'),
    };
    expect(Array.from(decodeArray(d, 'x').data)).toEqual([0.5, -2]);
  });

  it('refuses ids that are no int32, and arrays whose bytes do not fit their shape', async () => {
    expect(() => encodeArray({ shape: [1], data: new Float32Array([1.5]) }, 'int32')).toThrow(/not an int32/);
    const bad = { dtype: 'float32', shape: [2, 2], data: Buffer.alloc(12).toString('base64') };
    const e = await expectError(() => decodeArray(bad, 'output "logits"'), 'INTERNAL');
    expect(e.message).toMatch(/output "logits": 12 bytes do not hold shape \[2, 2\] of float32/);
    await expectError(() => decodeArray({ dtype: 'bfloat16', shape: [1], data: '' }, 'x'), 'INTERNAL');
    await expectError(() => decodeArray({ dtype: 'int32', shape: [-1], data: '' }, 'x'), 'INTERNAL');
  });
});

describe('the helper process', () => {
  it('numbers its requests and matches each reply to its id', async () => {
    const p = new HelperProcess(standin());
    try {
      const [a, b] = await Promise.all([p.request('hello', {}, 30_000), p.request('hello', {}, 30_000)]);
      expect(a).toMatchObject({ id: 1, ok: true, protocol: 1 });
      expect(b).toMatchObject({ id: 2, ok: true });
      const err = await expectError(() => p.request('frobnicate', {}, 30_000), 'UNSUPPORTED');
      expect(err.message).toBe('Core ML: unknown op "frobnicate"');
      // An error reply leaves the helper usable.
      expect(await p.request('hello', {}, 30_000)).toMatchObject({ id: 4 });
    } finally {
      await p.close();
    }
  });

  it('a helper that dies: one line that says so and suggests cpu-only, and every later request fails the same way', async () => {
    const s = session(['--misbehave', 'die-on-load']);
    try {
      const ref = { path: pkg, functionName: 'main', functions: ['main'] };
      const e = await expectError(() => s.load(ref, 'cpu-and-ne'), 'UNSUPPORTED');
      expect(e.message).toBe(`the Core ML helper was killed by SIGKILL during load; ${CPU_ONLY_HINT}`);
      expect((await expectError(() => s.load(ref, 'cpu-only'), 'UNSUPPORTED')).message).toBe(e.message);
    } finally {
      await s.close();
    }
  });

  it('a helper that exits at start, or cannot be started', async () => {
    const s = session(['--misbehave', 'die-at-start']);
    expect((await expectError(() => s.hello(), 'UNSUPPORTED')).message).toMatch(
      /^the Core ML helper exited with code 7 during hello; /,
    );
    await s.close();
    const p = new HelperProcess(['/nonexistent/modernbert-ane-coreml']);
    expect((await expectError(() => p.request('hello', {}, 5000), 'UNSUPPORTED')).message).toMatch(
      /could not be started \(\/nonexistent\/modernbert-ane-coreml: ENOENT\)/,
    );
    await p.close();
  });

  it('a helper that hangs is stopped at the time limit', async () => {
    const s = session(['--misbehave', 'hang-on-predict'], { predict: 1500 });
    try {
      const m = await s.load({ path: pkg, functionName: 'main', functions: ['main'] }, 'all');
      const t0 = performance.now();
      const e = await expectError(() => s.predict(m.handle, {}), 'UNSUPPORTED');
      expect(e.message).toBe(`the Core ML helper did not answer predict within 2 s (stopped it); ${CPU_ONLY_HINT}`);
      expect(performance.now() - t0).toBeLessThan(10_000);
      await expectError(
        () => s.load({ path: pkg, functionName: 'main', functions: ['main'] }, 'cpu-only'),
        'UNSUPPORTED',
      );
    } finally {
      await s.close();
    }
  });

  it('garbage, a stray line, the wrong id or a reply without its fields break the protocol (exit 3, one line)', async () => {
    const ref = { path: pkg, functionName: 'main', functions: ['main'] };
    const run = async (kind: string, f: (s: CoreMLSession) => Promise<unknown>) => {
      const s = session(['--misbehave', kind]);
      try {
        return (await expectError(() => f(s), 'INTERNAL')).message;
      } finally {
        await s.close();
      }
    };
    const predict = async (s: CoreMLSession) => s.predict((await s.load(ref, 'all')).handle, {});
    expect(await run('garbage-on-predict', predict)).toBe(
      'the Core ML helper broke its protocol: it printed a line that is not a JSON reply: "Loading Neural Engine program... done"',
    );
    expect(await run('stray-line', (s) => s.hello())).toMatch(
      /broke its protocol: it answered request 1 \(hello\) with id undefined/,
    );
    expect(await run('wrong-id', (s) => s.compile(pkg))).toMatch(
      /broke its protocol: it answered request 2 \(compile\) with id 102/,
    );
    expect(await run('bad-reply', (s) => s.load(ref, 'all'))).toMatch(
      /broke its protocol: its reply to load has load_ms = undefined/,
    );
  });
});

describe('the session', () => {
  it('compiles a package once into a cache keyed by its content, records the time, and a new session reuses it', async () => {
    const fresh = join(tempDir(), 'cache');
    const session2 = () => session([], {}, fresh);
    const a = session2();
    try {
      const c = await a.compile(pkg);
      expect(c.compiledNow).toBe(true);
      expect(c.compileMs).toBeGreaterThan(0);
      expect(c.compiled.startsWith(join(fresh, 'models'))).toBe(true);
      expect(await a.compile(pkg)).toBe(await a.compile(pkg)); // one compile per session
      expect(JSON.parse(readFileSync(c.compiled.replace(/\.mlmodelc$/, '.json'), 'utf8')).compile_ms).toBe(c.compileMs);
      const b = session2();
      const again = await b.compile(pkg);
      expect(again).toMatchObject({ compiled: c.compiled, compiledNow: false, compileMs: c.compileMs });
      await b.close();
      // A copy elsewhere has the same content, hence the same entry.
      const copy = join(tempDir(), 'copy.mlpackage');
      cpSync(pkg, copy, { recursive: true });
      const c2 = session2();
      expect((await c2.compile(copy)).compiled).toBe(c.compiled);
      // Any byte changed (here the manifest's text) is another package.
      const manifest = join(copy, 'Manifest.json');
      writeFileSync(manifest, `${readFileSync(manifest, 'utf8')} `);
      const c3 = session2();
      const other = await c3.compile(copy);
      expect(other.compiled).not.toBe(c.compiled);
      expect(other.compiledNow).toBe(true);
      await c2.close();
      await c3.close();
    } finally {
      await a.close();
    }
  });

  it('loads each function once per compute units, names a function only for multifunction packages, and predicts', async () => {
    const s = session();
    try {
      const read = readMLPackage(pkg);
      const factory = coremlExecutorFactory(s, 'cpu-and-ne');
      const runner = new PackageRunner(read, pkg, 'fp32', factory);
      const ref = new PackageRunner(read, pkg, 'fp16');
      expect(runner.hasTap('residual.1')).toBe(false);
      expect(ref.hasTap('residual.1')).toBe(true);
      const seq = { ids: [1, 50, 60, 70, 2] };
      const ours = (await ref.forward(seq)).outputs.get('logits')!;
      const theirs = (await runner.forward(seq)).outputs.get('logits')!;
      expect(theirs.shape).toEqual(ours.shape);
      expect(Array.from(theirs.data)).toEqual(Array.from(ours.data));
      expect(s.lastPredictMs).toBeGreaterThan(0);
      const m1 = await s.model({ path: pkg, functionName: 'main', functions: ['main'] }, 'cpu-and-ne');
      await runner.forward(seq);
      expect(await s.model({ path: pkg, functionName: 'main', functions: ['main'] }, 'cpu-and-ne')).toBe(m1);
      expect((await s.model({ path: pkg, functionName: 'main', functions: ['main'] }, 'cpu-only')).handle).not.toBe(
        m1.handle,
      );
      // The stand-in, as Core ML, refuses a function name for a one-function package: the session gives none.
      await expectError(
        () => s.load({ path: pkg, functionName: 'main', functions: ['main', 'other'] }, 'all'),
        'UNSUPPORTED',
      );
      // Internal values cannot be read from Core ML.
      await expectError(() => runner.forward(seq, { taps: ['residual.1'] }), 'BAD_ARGUMENT');
      // A checkpoint's graph is no package: an error, or the fallback's.
      expect(() => factory(read.graph, 'fp32')).toThrow(ModernBertError);
    } finally {
      await s.close();
    }
  });

  it('plan needs macOS 14.4', async () => {
    const s = session(['--os', '14.3.1']);
    try {
      const e = await expectError(
        () => s.plan({ path: pkg, functionName: 'main', functions: ['main'] }, 'all'),
        'UNSUPPORTED',
      );
      expect(e.message).toBe('plan needs macOS 14.4 or later (MLComputePlan); this is macOS 14.3.1');
    } finally {
      await s.close();
    }
  });

  it('MODERNBERT_ANE_COREML_TIMEOUT_S must be a positive number', () => {
    expect(
      () => new CoreMLSession({ ...processHelperEnv(), env: { MODERNBERT_ANE_COREML_TIMEOUT_S: 'soon' } }),
    ).toThrow(/positive number of seconds/);
    expect(existsSync(STANDIN)).toBe(true);
  });
});
