// The package as a user gets it: `npm pack`, then installed into a scratch project offline (its dependencies
// from the npm cache that `npm ci` filled, through a lockfile written from ours), then used from there with
// nothing of this repository in reach: the command line, an ES module script, a CommonJS script (with and
// without Node's require(esm)), and the README's typed examples compiled by tsc --strict against the shipped
// declarations. Needs the build (npm test builds first).

import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTempDirs, FX, ROOT, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const DOOR = 'She opened the [MASK] and walked into the room.';
let dir = '';
let project = '';
let tarball = '';

function run(cmd: string, args: string[], cwd = project, extra: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...extra } });
  expect(r.status, `${cmd} ${args.join(' ')}\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

/** A lockfile for the scratch project: the tarball, and our lock's entries of what it depends on (not dev ones). */
function scratchLock(tgz: string): unknown {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, Record<string, unknown>>;
  };
  const own = lock.packages['']!;
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
  const packages: Record<string, unknown> = {
    '': { name: 'scratch', dependencies: { 'modernbert-ane': `file:${tgz}` } },
    'node_modules/modernbert-ane': {
      version: own.version,
      resolved: `file:${tgz}`,
      integrity,
      license: own.license,
      dependencies: own.dependencies,
      optionalDependencies: own.optionalDependencies,
      bin: own.bin,
      engines: own.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) if (path !== '' && !entry.dev) packages[path] = entry;
  return { name: 'scratch', lockfileVersion: 3, requires: true, packages };
}

/** The ```ts blocks of the README's "Library" section. */
function readmeExamples(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Library\n'), readme.indexOf('\n## How it is built'));
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

beforeAll(() => {
  dir = tempDir('mbane-pack-');
  project = join(dir, 'project');
  const packed = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], ROOT);
  tarball = join(dir, (JSON.parse(packed.stdout) as { filename: string }[])[0]!.filename);
  cpSync(join(FX, 'tiny-token'), join(dir, 'tiny-token'), { recursive: true });
  run('mkdir', ['-p', project], dir);
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'scratch', private: true, dependencies: { 'modernbert-ane': `file:${tarball}` } }),
  );
  writeFileSync(join(project, 'package-lock.json'), JSON.stringify(scratchLock(tarball)));
  run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--omit=optional']);
}, 120_000);

describe('the packed package', () => {
  it('holds the license, the built library with sources in its maps, the model, and no development tools', () => {
    const files = spawnSync('tar', ['tzf', tarball], { encoding: 'utf8' }).stdout.trim().split('\n');
    expect(files).toContain('package/LICENSE');
    expect(readFileSync(join(project, 'node_modules/modernbert-ane/LICENSE'), 'utf8')).toMatch(
      /Apache License\s+Version 2\.0/,
    );
    for (const f of [
      'dist/index.js',
      'dist/index.cjs',
      'dist/index.d.ts',
      'dist/index.d.cts',
      'dist/advanced.js',
      'dist/advanced.cjs',
      'models/mini-trained/model.safetensors',
      'bin/modernbert-ane.js',
    ])
      expect(files).toContain(`package/${f}`);
    expect(files.filter((f) => /fuzz|\.whl$|^package\/(src|test|bench|scripts)\//.test(f))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(project, 'node_modules/modernbert-ane/package.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    for (const k of ['repository', 'homepage', 'bugs', 'keywords', 'license']) expect(pkg[k], k).toBeDefined();
    // Every source map carries the source it maps (src/ is not shipped).
    const maps = files.filter((f) => f.endsWith('.js.map'));
    expect(maps.length).toBeGreaterThan(50);
    for (const m of maps.slice(0, 40)) {
      const map = JSON.parse(
        readFileSync(join(project, 'node_modules/modernbert-ane', m.slice('package/'.length)), 'utf8'),
      ) as { sourcesContent?: string[] };
      expect(map.sourcesContent?.[0]?.length, m).toBeGreaterThan(0);
    }
    // Links in the README work on the npm page: absolute, or anchors of the README itself.
    const readme = readFileSync(join(project, 'node_modules/modernbert-ane/README.md'), 'utf8');
    expect(
      [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((l) => !/^(https:\/\/|#)/.test(l)),
    ).toEqual([]);
  });

  it('runs the command line', () => {
    const r = run(join(project, 'node_modules/.bin/modernbert-ane'), ['predict', DOOR, '--json']);
    expect((JSON.parse(r.stdout) as { token_str: string }[])[0]!.token_str.trim()).toBe('door');
  });

  it('under import: fill-mask puts "door" first; token spans slice the text to their words; features equal embed\'s', () => {
    const texts = join(dir, 'texts.txt');
    writeFileSync(texts, 'The cat sat on the mat.\nA second, longer sentence about the weather today.\nHi.\n');
    run(join(project, 'node_modules/.bin/modernbert-ane'), [
      'embed',
      'node_modules/modernbert-ane/models/mini-trained',
      '--input',
      texts,
      '--out',
      join(dir, 'e.npy'),
    ]);
    writeFileSync(
      join(project, 'esm.mjs'),
      `
import { readFileSync } from 'node:fs';
import { pipeline, convert, ModernBertError } from 'modernbert-ane';
const out = {};
const fill = await pipeline('fill-mask');
out.door = (await fill(${JSON.stringify(DOOR)}))[0].token_str.trim();
const text = 'Ada Lovelace lived in London, naïvely 🚀 happy.';
const ner = await pipeline('token-classification', ${JSON.stringify(join(dir, 'tiny-token'))});
const tokens = await ner(text, { ignore_labels: [] });
out.tokens = tokens.length;
out.sliced = tokens.every((t) => t.word === text.slice(t.start, t.end) && t.word.length > 0);
out.groups = (await ner(text, { aggregation_strategy: 'first', ignore_labels: [] })).every((g) => g.word === text.slice(g.start, g.end));
const lines = readFileSync(${JSON.stringify(texts)}, 'utf8').trim().split('\\n');
const extract = await pipeline('feature-extraction');
const f = await extract(lines, { normalize: true });
const npy = readFileSync(${JSON.stringify(join(dir, 'e.npy'))});
const header = npy.readUInt16LE(8);
const embed = new Float32Array(npy.buffer.slice(npy.byteOffset + 10 + header, npy.byteOffset + npy.length));
const C = f.dims[1];
let worst = 0, unit = 0;
for (let i = 0; i < lines.length; i++) {
  const row = embed.subarray(i * C, (i + 1) * C);
  const n = Math.hypot(...row);
  unit = Math.max(unit, Math.abs(Math.hypot(...f.data.subarray(i * C, (i + 1) * C)) - 1));
  for (let j = 0; j < C; j++) worst = Math.max(worst, Math.abs(row[j] / n - f.data[i * C + j]));
}
out.dims = f.dims; out.worst = worst; out.unit = unit;
const report = await convert('node_modules/modernbert-ane/models/mini-trained', { seqLens: 16, fidelity: false });
out.converted = report.out;
try { await convert('node_modules/modernbert-ane/models/mini-trained', { seqLens: 100000 }); } catch (e) { out.error = [e instanceof ModernBertError, e.message]; }
await Promise.all([fill, ner, extract].map((p) => p.dispose()));
console.log(JSON.stringify(out));
`,
    );
    const out = JSON.parse(run(process.execPath, ['esm.mjs']).stdout) as {
      door: string;
      tokens: number;
      sliced: boolean;
      groups: boolean;
      dims: number[];
      worst: number;
      unit: number;
      converted: string;
      error: [boolean, string];
    };
    expect(out.door).toBe('door');
    expect(out.tokens).toBeGreaterThan(10);
    expect(out.sliced).toBe(true);
    expect(out.groups).toBe(true);
    expect(out.dims).toEqual([3, 256]);
    expect(out.worst).toBeLessThan(1e-5);
    expect(out.unit).toBeLessThan(1e-5);
    // convert() with no `out`: the model's name, in the current folder.
    expect(out.converted).toBe('mini-trained.mlpackage');
    expect(existsSync(join(project, 'mini-trained.mlpackage', 'Manifest.json'))).toBe(true);
    expect(out.error).toEqual([
      true,
      expect.stringMatching(/^`seqLens: 100000` is longer than the model allows/) as string,
    ]);
  });

  it("under require, with Node's require(esm) and without it", () => {
    writeFileSync(
      join(project, 'cjs.cjs'),
      `
const { pipeline, ModernBertError } = require('modernbert-ane');
(async () => {
  const fill = await pipeline('fill-mask');
  const door = (await fill(${JSON.stringify(DOOR)}))[0].token_str.trim();
  await fill.dispose();
  const refused = await pipeline('text-classification').then(() => false, (e) => e instanceof ModernBertError);
  console.log(JSON.stringify({ door, refused }));
})();
`,
    );
    for (const flags of [[], ['--no-experimental-require-module']]) {
      expect(JSON.parse(run(process.execPath, [...flags, 'cjs.cjs']).stdout), flags.join(' ')).toEqual({
        door: 'door',
        refused: true,
      });
    }
  });

  it("compiles the README's examples with tsc --strict against the shipped types, as ES module and CommonJS, with no cast", () => {
    const examples = readmeExamples();
    expect(examples.length).toBeGreaterThanOrEqual(3);
    const files = examples.map((code, i) => {
      expect(code, `example ${i + 1}`).not.toMatch(/\bas (unknown|any|[A-Z]\w*)\b|<[A-Z]\w*>\w/);
      const name = `example${i + 1}.mts`;
      writeFileSync(join(project, name), code);
      return name;
    });
    writeFileSync(
      join(project, 'require.cts'),
      "import { pipeline } from 'modernbert-ane';\nexport async function door(): Promise<string> {\n  const fill = await pipeline('fill-mask');\n  return (await fill('a [MASK]'))[0]?.token_str ?? '';\n}\n",
    );
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    run(process.execPath, [
      tsc,
      '--strict',
      '--noEmit',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
      '--typeRoots',
      join(ROOT, 'node_modules', '@types'),
      '--types',
      'node',
      ...files,
      'require.cts',
    ]);
    expect(readdirSync(project).filter((f) => f.endsWith('.js'))).toEqual([]);
  });
});
