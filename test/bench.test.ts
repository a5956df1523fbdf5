// `npm run bench` and the other package scripts run files that exist; bench/run.mjs runs every benchmark.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/fixtures.js';

describe('package scripts', () => {
  it('every `node FILE` script names a file that exists', () => {
    const scripts = (
      JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    ).scripts;
    expect(scripts.bench).toBe('node bench/run.mjs');
    for (const [name, line] of Object.entries(scripts)) {
      for (const m of line.matchAll(/\bnode (\S+\.m?js)/g))
        expect(existsSync(join(ROOT, m[1]!)), `${name}: ${m[1]}`).toBe(true);
    }
  });

  it('bench/run.mjs lists every benchmark in bench/, small with --quick', () => {
    const benches = readdirSync(join(ROOT, 'bench')).filter((f) => f.endsWith('.mjs') && f !== 'run.mjs');
    const list = (...args: string[]) => {
      const r = spawnSync(process.execPath, [join(ROOT, 'bench', 'run.mjs'), '--list', ...args], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      return r.stdout.trimEnd().split('\n');
    };
    const quick = list('--quick');
    expect(quick.map((l) => l.split(' ')[1]).sort()).toEqual(benches.map((f) => `bench/${f}`).sort());
    expect(quick).toContain('node bench/gemm.mjs 128');
    expect(list().find((l) => l.includes('fidelity.mjs'))).toMatch(/--out .*mba-bench-\d+\/FIDELITY\.md$/); // never docs/ itself
    const bad = spawnSync(process.execPath, [join(ROOT, 'bench', 'run.mjs'), '--only', 'nope'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^error: no benchmark nope in bench\//);
  });
});
