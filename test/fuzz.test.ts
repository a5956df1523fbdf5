// The seeded mutation fuzzer (bench/fuzz) over every reader, a few hundred cases each: none may end in an
// internal error (anything but a one-line ModernBertError) or hang (the per-reader timeout). A failing
// case prints its replay line: reader, seed and case index. bench/fuzz.mjs runs 10,000 per reader. The
// fuzzer, a development tool kept out of the package, reads the built dist/ (npm run build first), as users do.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  describeCase,
  prepareSeeds,
  runCase,
  type CaseResult,
  type ReaderName,
  type Seeds,
} from '../bench/fuzz/run.js';
import { shutdownRuntime } from '../src/runtime/shutdown.js';
import { cleanupTempDirs, FX, tempDir } from './helpers/fixtures.js';

const SEED = 7;
// Cases per reader: more for the fast ones, within about 30 s for the file.
const CASES: Record<ReaderName, number> = {
  safetensors: 300,
  golden: 300,
  index: 120,
  config: 120,
  tokenizer: 120,
  package: 100,
  'batch-input': 60,
  'head-name': 300,
  output: 300,
};

let seeds: Seeds;
let work: string;
beforeAll(async () => {
  work = tempDir('mbane-fuzz-');
  seeds = await prepareSeeds(FX, join(work, 'seeds'));
});
afterAll(async () => {
  await shutdownRuntime();
  cleanupTempDirs();
});

describe('seeded mutation fuzzing of every reader', () => {
  for (const [reader, n] of Object.entries(CASES) as Array<[ReaderName, number]>) {
    // A batch input case runs the model, and one swapped for a FIFO waits DEVICE_WAIT_SECONDS.
    it(
      `${reader}: ${n} cases, no internal error`,
      { timeout: reader === 'batch-input' ? 120_000 : 30_000 },
      async () => {
        const counts = { error: 0, accepted: 0, internal: 0, hang: 0 };
        const bad: CaseResult[] = [];
        for (let i = 0; i < n; i++) {
          const r = await runCase(reader, seeds, SEED, i, work);
          counts[r.outcome]++;
          if (r.outcome !== 'error' && r.outcome !== 'accepted') bad.push(r);
        }
        expect(bad.map(describeCase), 'replay with bench/fuzz.mjs or runCase(reader, seeds, seed, index)').toEqual([]);
        // The mutations must reach both outcomes, or they test nothing.
        expect(counts.error).toBeGreaterThan(n / 10);
        expect(counts.accepted).toBeGreaterThan(0);
      },
    );
  }
});

describe('bench/fuzz.mjs', () => {
  // The runner compiles the fuzzer with its own tsconfig (out of dist/); a root compiler option it cannot
  // take (inlineSources without source maps) once broke it while the tests above, run from source, passed.
  it('compiles the fuzzer with its own tsconfig', { timeout: 120_000 }, () => {
    const root = join(import.meta.dirname, '..');
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'bench', 'fuzz', 'tsconfig.json'), '--noEmit'], {
      encoding: 'utf8',
    });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
