// Finding or building the Core ML helper, and the cache keys: the "needs macOS" errors, a missing compiler,
// the swiftc command line, one build per source and compiler, the override for testing.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModernBertError } from '../src/errors.js';
import {
  HELPER_SOURCE,
  helperCommand,
  helperOverride,
  MACOS_NEEDED,
  requireCoreML,
  type Exec,
  type HelperEnv,
} from '../src/run/coreml/build.js';
import { cacheDir, compiledPaths, helperKey, packageHash } from '../src/run/coreml/cache.js';
import { cleanupTempDirs, tempDir } from './helpers/fixtures.js';
import { expectError } from './helpers/run.js';

afterAll(cleanupTempDirs);

/** A fake xcrun: answers --version, "builds" by writing the output file, and logs every call. */
function fakeXcrun(
  version = 'swift-driver version: 1.115 Apple Swift version 6.0.3\nTarget: arm64-apple-macosx15.0\n',
) {
  const calls: string[][] = [];
  const exec: Exec = async (file, args) => {
    calls.push([file, ...args]);
    if (args.includes('--version')) return { stdout: version, stderr: '' };
    writeFileSync(args[args.indexOf('-o') + 1]!, '#!/bin/sh\n');
    return { stdout: '', stderr: '' };
  };
  return { exec, calls };
}

const mac = (env: NodeJS.ProcessEnv, exec: Exec, notes: string[] = []): HelperEnv => ({
  env,
  platform: 'darwin',
  arch: 'arm64',
  exec,
  onNote: (l) => notes.push(l),
});

describe('the helper command', () => {
  it('off macOS, Core ML needs macOS with the Command Line Tools', () => {
    expect(() => requireCoreML('bench', { env: {}, platform: 'linux' })).toThrow(
      `bench ${MACOS_NEEDED}; this system is linux`,
    );
    expect(MACOS_NEEDED).toBe('needs macOS with the Command Line Tools (xcode-select --install)');
    expect(() => requireCoreML('bench', { env: {}, platform: 'darwin' })).not.toThrow();
    // A helper named for testing stands in for macOS.
    expect(() =>
      requireCoreML('bench', { env: { MODERNBERT_ANE_COREML_HELPER: '/x/helper' }, platform: 'win32' }),
    ).not.toThrow();
  });

  it('without xcrun (no Command Line Tools): one line that says how to install them', async () => {
    const enoent: Exec = async () => {
      throw Object.assign(new Error('spawn xcrun ENOENT'), { code: 'ENOENT' });
    };
    const e = await expectError(
      () => helperCommand(mac({ MODERNBERT_ANE_COREML_CACHE: tempDir() }, enoent)),
      'UNSUPPORTED',
    );
    expect(e.message).toBe(`Core ML ${MACOS_NEEDED}: xcrun was not found`);
    const noTools: Exec = async () => {
      throw Object.assign(new Error('exit 1'), {
        code: 1,
        stderr:
          'xcrun: error: invalid active developer path (/Library/Developer/CommandLineTools), missing xcrun at: ...\n',
      });
    };
    const e2 = await expectError(
      () => helperCommand(mac({ MODERNBERT_ANE_COREML_CACHE: tempDir() }, noTools)),
      'UNSUPPORTED',
    );
    expect(e2.message).toBe(
      `Core ML ${MACOS_NEEDED}: xcrun: error: invalid active developer path (/Library/Developer/CommandLineTools), missing xcrun at: ...`,
    );
  });

  it('builds once with xcrun swiftc -O into a folder keyed by source and compiler, and reuses it', async () => {
    const cache = tempDir();
    const { exec, calls } = fakeXcrun();
    const notes: string[] = [];
    const [bin] = await helperCommand(mac({ MODERNBERT_ANE_COREML_CACHE: cache }, exec, notes));
    const build = calls.find((c) => c.includes('-o'))!;
    expect(build.slice(0, 7)).toEqual([
      'xcrun',
      'swiftc',
      '-O',
      '-parse-as-library',
      '-target',
      'arm64-apple-macosx13.0',
      '-o',
    ]);
    expect(readFileSync(build[8]!, 'utf8')).toBe(readFileSync(HELPER_SOURCE, 'utf8'));
    expect(bin).toBe(
      join(
        cache,
        'helper',
        helperKey(
          readFileSync(HELPER_SOURCE, 'utf8'),
          (await exec('xcrun', ['swiftc', '--version'], 1)).stdout,
          'arm64-apple-macosx13.0',
        ),
        'modernbert-ane-coreml',
      ),
    );
    expect(existsSync(bin!)).toBe(true);
    expect(notes).toEqual(['note: building the Core ML helper once (xcrun swiftc -O; it is kept for later runs)']);
    // Again: no build, no note.
    calls.length = 0;
    expect(await helperCommand(mac({ MODERNBERT_ANE_COREML_CACHE: cache }, exec, notes))).toEqual([bin]);
    expect(calls.filter((c) => c.includes('-o'))).toEqual([]);
    expect(notes).toHaveLength(1);
    // Another compiler builds its own.
    const other = fakeXcrun('Apple Swift version 6.1\n');
    const [bin2] = await helperCommand(mac({ MODERNBERT_ANE_COREML_CACHE: cache }, other.exec));
    expect(bin2).not.toBe(bin);
    // An Intel Mac builds for x86_64.
    const intel = fakeXcrun();
    await helperCommand({ ...mac({ MODERNBERT_ANE_COREML_CACHE: tempDir() }, intel.exec), arch: 'x64' });
    expect(intel.calls.find((c) => c.includes('-o'))).toContain('x86_64-apple-macosx13.0');
  });

  it("a failed build is one line with the compiler's first error, and leaves no binary", async () => {
    const cache = tempDir();
    const failing: Exec = async (_f, args) => {
      if (args.includes('--version')) return { stdout: 'Apple Swift version 5.9\n', stderr: '' };
      throw Object.assign(new Error('exit 1'), {
        stderr: "helper.swift:12:5: warning: x\nhelper.swift:40:9: error: cannot find 'MLComputePlan' in scope\n",
      });
    };
    const e = await expectError(
      () => helperCommand(mac({ MODERNBERT_ANE_COREML_CACHE: cache }, failing)),
      'UNSUPPORTED',
    );
    expect(e.message).toBe(
      "could not build the Core ML helper with xcrun swiftc: helper.swift:40:9: error: cannot find 'MLComputePlan' in scope",
    );
    const { exec } = fakeXcrun('Apple Swift version 5.9\n');
    const [bin] = await helperCommand(mac({ MODERNBERT_ANE_COREML_CACHE: cache }, exec));
    expect(existsSync(bin!)).toBe(true);
  });

  it('MODERNBERT_ANE_COREML_HELPER names a program or a JSON argument list, on any system', async () => {
    expect(helperOverride({})).toBeUndefined();
    expect(helperOverride({ MODERNBERT_ANE_COREML_HELPER: '/opt/helper' })).toEqual(['/opt/helper']);
    expect(helperOverride({ MODERNBERT_ANE_COREML_HELPER: '["node", "/a b/standin.mjs"]' })).toEqual([
      'node',
      '/a b/standin.mjs',
    ]);
    for (const bad of ['[]', '["node", 3]', '[not json'])
      expect(() => helperOverride({ MODERNBERT_ANE_COREML_HELPER: bad })).toThrow(ModernBertError);
    const never: Exec = async () => {
      throw new Error('no exec with an override');
    };
    expect(
      await helperCommand({
        env: { MODERNBERT_ANE_COREML_HELPER: '/opt/helper' },
        platform: 'linux',
        arch: 'x64',
        exec: never,
      }),
    ).toEqual(['/opt/helper']);
  });
});

describe('cache keys', () => {
  it('the cache folder: the override, ~/Library/Caches on macOS, XDG elsewhere', () => {
    expect(cacheDir({ MODERNBERT_ANE_COREML_CACHE: '/tmp/x' }, 'darwin')).toBe('/tmp/x');
    expect(cacheDir({}, 'darwin')).toMatch(/\/Library\/Caches\/modernbert-ane\/coreml$/);
    expect(cacheDir({ XDG_CACHE_HOME: '/xdg' }, 'linux')).toBe('/xdg/modernbert-ane/coreml');
    expect(compiledPaths('/c', 'ab'.repeat(32))).toEqual({
      compiled: `/c/models/${'ab'.repeat(16)}.mlmodelc`,
      record: `/c/models/${'ab'.repeat(16)}.json`,
    });
  });

  it('the helper key changes with the source, the compiler and the target', () => {
    const k = helperKey('src', 'swift 6', 't');
    expect(k).toMatch(/^[0-9a-f]{32}$/);
    expect(helperKey('src', 'swift 6\n', 't')).toBe(k);
    expect(
      new Set([
        k,
        helperKey('src2', 'swift 6', 't'),
        helperKey('src', 'swift 6.1', 't'),
        helperKey('src', 'swift 6', 'u'),
      ]).size,
    ).toBe(4);
  });

  it("a package's hash covers every file's path, size and bytes, not where the package is", () => {
    const make = (dir: string, files: Record<string, string>) => {
      for (const [p, text] of Object.entries(files)) {
        mkdirSync(join(dir, p, '..'), { recursive: true });
        writeFileSync(join(dir, p), text);
      }
      return dir;
    };
    const files = {
      'Manifest.json': '{}',
      'Data/com.apple.CoreML/model.mlmodel': 'abc',
      'Data/com.apple.CoreML/weights/weight.bin': 'w',
    };
    const a = packageHash(make(join(tempDir(), 'a.mlpackage'), files));
    expect(packageHash(make(join(tempDir(), 'b.mlpackage'), files))).toBe(a);
    expect(
      packageHash(make(join(tempDir(), 'c.mlpackage'), { ...files, 'Data/com.apple.CoreML/weights/weight.bin': 'x' })),
    ).not.toBe(a);
    expect(packageHash(make(join(tempDir(), 'd.mlpackage'), { ...files, 'Data/extra.txt': '' }))).not.toBe(a);
    // The same bytes split differently between two files are another package.
    expect(
      packageHash(
        make(join(tempDir(), 'e.mlpackage'), {
          ...files,
          'Manifest.json': '{}a',
          'Data/com.apple.CoreML/model.mlmodel': 'bc',
        }),
      ),
    ).not.toBe(a);
  });
});
