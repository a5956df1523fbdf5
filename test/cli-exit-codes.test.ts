// The CLI's exit codes for what goes wrong inside: a broken invariant of ours (ModernBertError INTERNAL, or
// any other exception) is exit 3 with "internal error:", never exit 2 as if the user's input were at fault.

import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { ModernBertError } from '../src/errors.js';
import { cli } from './helpers/cli.js';
import { FX } from './helpers/fixtures.js';

const failure = vi.hoisted(() => ({ error: undefined as unknown }));
vi.mock('../src/model/checkpoint.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/model/checkpoint.js')>();
  return {
    ...real,
    loadCheckpoint: (dir: string) => {
      if (failure.error !== undefined) throw failure.error;
      return real.loadCheckpoint(dir);
    },
  };
});

describe('exit codes of internal errors', () => {
  it.each([
    ['a ModernBertError INTERNAL', new ModernBertError('INTERNAL', 'value "x" was not computed')],
    ['any other exception', new TypeError('cannot read properties of undefined')],
  ])('%s: exit 3, one "internal error:" line; the stack with --debug', async (_what, error) => {
    failure.error = error;
    try {
      const r = await cli('inspect', join(FX, 'tiny-mlm'));
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/^internal error: .* \(run with --debug for the stack trace\)\n$/);
      const d = await cli('inspect', join(FX, 'tiny-mlm'), '--debug');
      expect(d.code).toBe(3);
      expect(d.stderr).toMatch(/^\s+at /m);
    } finally {
      failure.error = undefined;
    }
  });

  it('a user error stays exit 2', async () => {
    failure.error = new ModernBertError('BAD_INPUT', 'the user gave something wrong');
    try {
      expect((await cli('inspect', join(FX, 'tiny-mlm'))).code).toBe(2);
    } finally {
      failure.error = undefined;
    }
  });
});
