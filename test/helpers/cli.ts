// Running the command line in-process with captured output, and what a user error must look like.

import { expect } from 'vitest';
import type { Io } from '../../src/cli/context.js';
import { main } from '../../src/cli/main.js';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `modernbert-ane argv...` through main() with captured output. */
export async function cli(...argv: string[]): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: Io = { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), isTTY: false };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

/** The parsed JSON output of a run. */
export const json = (r: Run): unknown => JSON.parse(r.stdout);

/** A user error: exit 2, exactly one line on stderr naming the problem, nothing on stdout, no stack. */
export function expectOneLineError(r: Run, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr.endsWith('\n')).toBe(true);
  expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(/^error: /);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr).toMatch(pattern);
}
