// Which program is the Core ML helper: the Swift source beside this file, built on first use with the Command
// Line Tools' compiler into the per-user cache (keyed by the source and the compiler), or a command named in
// MODERNBERT_ANE_COREML_HELPER. That variable is for testing: the tests name a stand-in written in Node, which
// drives every macOS code path of the CLI on any system.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ModernBertError } from '../../errors.js';
import { cacheDir, helperKey } from './cache.js';

/** Names a helper command instead of building Swift (a JSON array of arguments, or one executable's path); for testing. */
export const HELPER_ENV = 'MODERNBERT_ANE_COREML_HELPER';

/** What every Core ML command needs. */
export const MACOS_NEEDED = 'needs macOS with the Command Line Tools (xcode-select --install)';

/** The Swift source of the helper (copied beside the compiled JavaScript by the build). */
export const HELPER_SOURCE = fileURLToPath(new URL('./helper.swift', import.meta.url));

/** The oldest macOS the helper is built for (MLModel.compileModel(at:) async and .cpuAndNeuralEngine are macOS 13). */
export const MIN_MACOS = '13.0';

/** Runs a program; resolves to its output, rejects with the error (code ENOENT when it does not exist). */
export type Exec = (file: string, args: string[], timeoutMs: number) => Promise<{ stdout: string; stderr: string }>;

/** Where and how the helper is found or built. */
export interface HelperEnv {
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
  arch: string;
  exec: Exec;
  /** Told once, before a build (which takes a while). */
  onNote?: (line: string) => void;
}

const execProgram: Exec = (file, args, timeoutMs) =>
  new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr }));
      else resolve({ stdout, stderr });
    });
  });

/** This process's environment. */
export function processHelperEnv(onNote?: (line: string) => void): HelperEnv {
  return {
    env: process.env,
    platform: process.platform,
    arch: process.arch,
    exec: execProgram,
    ...(onNote ? { onNote } : {}),
  };
}

/** The helper command named in the environment, if any. */
export function helperOverride(env: NodeJS.ProcessEnv): string[] | undefined {
  const v = env[HELPER_ENV]?.trim();
  if (!v) return undefined;
  if (!v.startsWith('[')) return [v];
  let argv: unknown;
  try {
    argv = JSON.parse(v);
  } catch {
    argv = undefined;
  }
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string' && a.length > 0)) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `${HELPER_ENV} must name a program, or hold a JSON array of its arguments`,
    );
  }
  return argv as string[];
}

/** Throws the one-line "needs macOS" error for `what` unless Core ML can be reached (macOS, or a helper named for testing). */
export function requireCoreML(
  what: string,
  h: Pick<HelperEnv, 'env' | 'platform'> = { env: process.env, platform: process.platform },
): void {
  if (helperOverride(h.env) || h.platform === 'darwin') return;
  throw new ModernBertError('UNSUPPORTED', `${what} ${MACOS_NEEDED}; this system is ${h.platform}`, {
    platform: h.platform,
  });
}

/** The first line of a compiler's complaint that names an error (else its first line). */
function firstError(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.find((l) => /error:/.test(l)) ?? lines[0] ?? 'no output';
}

/** The helper's command line: the named one, or the cached build for this source and compiler (built now if missing). */
export async function helperCommand(h: HelperEnv): Promise<string[]> {
  const named = helperOverride(h.env);
  if (named) return named;
  requireCoreML('Core ML', h);
  let version: string;
  try {
    version = (await h.exec('xcrun', ['swiftc', '--version'], 60_000)).stdout;
  } catch (e) {
    const why =
      (e as NodeJS.ErrnoException).code === 'ENOENT'
        ? 'xcrun was not found'
        : firstError(String((e as { stderr?: string }).stderr ?? (e as Error).message));
    throw new ModernBertError('UNSUPPORTED', `Core ML ${MACOS_NEEDED}: ${why}`);
  }
  const source = readFileSync(HELPER_SOURCE, 'utf8');
  const target = `${h.arch === 'arm64' ? 'arm64' : 'x86_64'}-apple-macosx${MIN_MACOS}`;
  const dir = join(cacheDir(h.env, h.platform), 'helper', helperKey(source, version, target));
  const bin = join(dir, 'modernbert-ane-coreml');
  if (existsSync(bin)) return [bin];
  h.onNote?.('note: building the Core ML helper once (xcrun swiftc -O; it is kept for later runs)');
  mkdirSync(dir, { recursive: true });
  // The build compiles the very text whose hash names the folder.
  const src = join(dir, 'helper.swift');
  writeFileSync(src, source);
  const tmp = `${bin}.${process.pid}.tmp`;
  try {
    await h.exec('xcrun', ['swiftc', '-O', '-parse-as-library', '-target', target, '-o', tmp, src], 600_000);
    renameSync(tmp, bin);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new ModernBertError(
      'UNSUPPORTED',
      `could not build the Core ML helper with xcrun swiftc: ${firstError(String((e as { stderr?: string }).stderr ?? (e as Error).message))}`,
    );
  }
  return [bin];
}
