// Predicted Neural Engine placement of every kind of package `convert` writes (scripts/variants-list.mjs: every
// head with every flag value, pairwise, and every layout), plus 8,192-token banded packages: no op off the
// Neural Engine inside the body, float32 packages wholly off it, and convert saying so in its output.

import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCheckpoints } from '../scripts/variants-checkpoints.mjs';
import { layoutVariants, variantList, type Variant } from '../scripts/variants-list.mjs';
import { cli, json } from './helpers/cli.js';
import { cleanupTempDirs, FX, readFixtureJson, tempDir } from './helpers/fixtures.js';
import { writeFileSync } from 'node:fs';

afterAll(cleanupTempDirs);

interface AneJson {
  path: string;
  functions: {
    name: string;
    op_count: number;
    devices: { ane: number; cpu: number; 'gpu-or-cpu': number };
    boundaries: { head: number; body: number; tail: number };
    islands: { region: string; ops: number; types: Record<string, number>; first: { name: string } }[];
    shares: { flops: number | null };
  }[];
}

const dir = tempDir('mbane-ane-variants-');
const ckpts = buildCheckpoints(FX, dir) as Record<string, string>;

/** Converts with convert's own flags; a learned rotation becomes a Hadamard one (the same graph, without a second of learning). */
async function convertVariant(v: Variant): Promise<{ ane: AneJson[]; stdout: string; stderr: string }> {
  const args = v.args
    .map((a) => a.replace(/@([\w-]+)$/, (_, head: string) => ckpts[head]!))
    .filter((a) => a !== '--tokenizer');
  const learned = args.indexOf('learned');
  if (learned > 0) args.splice(learned - 1, 4, '--rotation', 'hadamard');
  const out = join(dir, `${v.name}.mlpackage`);
  const r = await cli(
    'convert',
    ckpts[v.head]!,
    '--out',
    out,
    '--force',
    ...args.filter((a) => a !== '--no-fidelity'),
    '--no-fidelity',
    '--json',
  );
  expect(r.code, r.stderr).toBe(0);
  return { ane: (json(r) as { ane: AneJson[] }).ane, stdout: r.stdout, stderr: r.stderr };
}

describe('every package convert writes', () => {
  const variants = [...variantList(), ...layoutVariants()].filter((v) => !v.refused);

  it.each(variants.map((v) => [v.name, v] as [string, Variant]))(
    '%s: nothing off the Neural Engine inside the body',
    async (_, v) => {
      const { ane, stderr } = await convertVariant(v);
      const fp32 = v.weights === 'fp32' || v.args.includes('fp32');
      for (const pp of ane) {
        for (const f of pp.functions) {
          const where = `${pp.path} ${f.name}`;
          if (fp32) {
            // Float32 runs on the GPU or CPU: nothing on the Neural Engine, so no islands either.
            expect(f.devices.ane, where).toBe(0);
            expect(f.islands, where).toEqual([]);
            continue;
          }
          expect(f.devices.ane, where).toBeGreaterThan(0);
          // Off it: elementwise work of the input preparation, and the float32 output cast of iOS 15 packages.
          expect(f.shares.flops!, where).toBeGreaterThan(0.95);
          expect(
            f.islands.filter((i) => i.region === 'body'),
            where,
          ).toEqual([]);
          // At the tail, only the cast of the output to float32 I/O (iOS 15).
          for (const i of f.islands.filter((x) => x.region === 'tail')) expect(i.types, where).toEqual({ cast: 1 });
        }
      }
      expect(
        stderr.split('\n').filter((l) => /off it inside the body/.test(l)),
        stderr,
      ).toEqual([]);
    },
  );
});

describe('8,192 tokens, banded', () => {
  const config = (readFixtureJson('synth-tiny-long', 'golden.json') as { config: Record<string, unknown> }).config;

  it.each([
    ['mlm', []],
    ['packed', ['--pack', '4']],
  ] as [string, string[]][])(
    '%s: every op but the input preparation on the Neural Engine, within the budget',
    async (_, extra) => {
      const ckpt = join(dir, 'tiny-long');
      writeFileSync(join(dir, 'tiny-long.json'), JSON.stringify(config));
      expect((await cli('synth', join(dir, 'tiny-long.json'), '--out', ckpt, '--force')).code).toBe(0);
      const r = await cli(
        'convert',
        ckpt,
        '--out',
        join(dir, `long-${extra.length}.mlpackage`),
        '--force',
        '--seq-len',
        '8192',
        '--no-fidelity',
        ...extra,
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(
        /^Neural Engine \(predicted\): [\d,]+ of [\d,]+ ops \(budget 6,000\), (100\.0|99\.\d)% of FLOPs, [\d.]+% of weight bytes; off it: \d+ at the head, 0 inside the body, 0 at the tail; ~[\d.]+ ms on an M1 \(a model, not a measurement\)$/m,
      );
    },
  );
});
