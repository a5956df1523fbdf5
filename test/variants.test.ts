// scripts/variants.mjs, which converts every kind of package for coreml-check: its list covers every flag
// value with every head, it expects refusals only where documented, its checkpoints are what they claim,
// a few of its variants convert and read back, and the script turns the check's report into its exit code.

import { spawnSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { buildCheckpoints } from '../scripts/variants-checkpoints.mjs';
import {
  COMPRESSIONS,
  FACTORS,
  HEADS,
  layoutVariants,
  refusal,
  requiredPairs,
  uncoveredPairs,
  variantList,
  type Combination,
  type Variant,
} from '../scripts/variants-list.mjs';
import { cli, json } from './helpers/cli.js';
import { cleanupTempDirs, FX, readTensors, ROOT, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const list = variantList();
const accepted = list.filter((v) => !v.refused);
const FLAGS = Object.keys(FACTORS) as (keyof typeof FACTORS)[];
/** A quick variant of `head` to convert in a test: one length, no rotation learning, no fidelity report if it can. */
const quickOf = (head: string): Variant =>
  accepted
    .filter((v) => v.head === head && v.lengths === 'one' && v.rotation !== 'learned')
    .sort((x, y) => Number(x.fidelity) - Number(y.fidelity))[0]!;

describe('the variant list', () => {
  it('puts every value of every flag with every head in a variant that must convert', () => {
    for (const head of HEADS) {
      for (const flag of FLAGS) {
        for (const value of FACTORS[flag])
          expect(
            accepted.some((v) => v.head === head && v[flag] === value),
            `${head} with ${flag} ${value}`,
          ).toBe(true);
      }
    }
  });

  it('covers every pair of flag values that some accepted combination holds, and none that none does', () => {
    expect(uncoveredPairs(list)).toEqual([]);
    const required = requiredPairs();
    expect(required.has('head=seqcls-cls lengths=enumerated')).toBe(true);
    expect(required.has('head=embedding-cls input=mask lengths=enumerated')).toBe(true);
    expect(required.has('norm=l2 lengths=enumerated target=iOS15')).toBe(true);
    expect(required.has('norm=no-fold rotation=hadamard')).toBe(false); // refused, so never required
    // Dropping any accepted variant leaves something uncovered: the list has no redundant conversion.
    for (const v of accepted)
      expect(
        uncoveredPairs(
          list.filter((w) => w !== v),
          required,
        ).length,
        v.name,
      ).toBeGreaterThan(0);
  });

  it('expects a refusal exactly where convert documents one, for each rule and each target before iOS18', () => {
    for (const v of list) expect(v.refused).toBe(refusal(v)?.reason ?? null);
    const refused = list.filter((v) => v.refused);
    expect(
      refused
        .filter((v) => v.norm === 'no-fold')
        .map((v) => v.rotation)
        .sort(),
    ).toEqual(['hadamard', 'learned']);
    expect(
      refused
        .filter((v) => v.input === 'mask' && v.pack === 'none')
        .map((v) => v.target)
        .sort(),
    ).toEqual(['iOS15', 'iOS16', 'iOS17']);
    expect(
      refused
        .filter((v) => v.pack === 'pack')
        .map((v) => v.refused)
        .sort(),
    ).toEqual(['--pack with --mask-input', '--pack with several --seq-len']);
    const at = (c: Partial<Combination>): Combination => ({
      head: 'mlm',
      norm: 'l2',
      rotation: 'none',
      input: 'ids',
      lengths: 'one',
      target: 'iOS17',
      weights: 'fp16',
      pack: 'none',
      ...c,
    });
    expect(refusal(at({ input: 'mask', lengths: 'enumerated', target: 'iOS18' }))).toBeNull();
    expect(refusal(at({ norm: 'no-fold' }))).toBeNull();
    expect(refusal(at({ target: 'iOS15', weights: 'fp16' }))).toBeNull(); // float16 weights before iOS16 keep float32 I/O
  });

  it('converts every compressed form at every target that can express it, and expects the refusals elsewhere', () => {
    const forms = (refused: boolean) =>
      list.filter((v) => v.compress && Boolean(v.refused) === refused).map((v) => `${v.compress}@${v.target}`);
    const older = ['pal8', 'pal6', 'pal4', 'pal2', 'int8'];
    expect(forms(false).sort()).toEqual(
      [
        ...['iOS16', 'iOS17'].flatMap((t) => older.map((m) => `${m}@${t}`)),
        ...COMPRESSIONS.map((m) => `${m}@iOS18`),
      ].sort(),
    );
    expect(forms(true).sort()).toEqual(['int4@iOS17', 'pal3@iOS17', 'pal4-grouped@iOS17', 'pal4@iOS15']);
    expect(list.find((v) => v.compress === 'pal4-grouped')!.args.join(' ')).toContain(
      '--compress pal4 --group-size 16',
    );
  });

  it('gives each variant a unique name and the flags of its values', () => {
    expect(new Set(list.map((v) => v.name)).size).toBe(list.length);
    for (const v of list) {
      const a = v.args.join(' ');
      expect(a.includes('--no-fold'), v.name).toBe(v.norm === 'no-fold');
      expect(a.includes(`--rotation ${v.rotation}`), v.name).toBe(true);
      expect(a.includes('--mask-input'), v.name).toBe(v.input === 'mask');
      expect(a.includes(`--seq-len ${v.lengths === 'one' ? '16' : '8,16,32'}`), v.name).toBe(true);
      expect(a.includes(`--target ${v.target} --weights ${v.weights}`), v.name).toBe(true);
      expect(a.includes('--no-fidelity'), v.name).toBe(!v.fidelity);
      expect(a.includes('--learn-seconds'), v.name).toBe(v.rotation === 'learned');
    }
    expect(list.filter((v) => v.fidelity).map((v) => v.head)).toEqual(HEADS); // one fidelity report per head
  });
});

describe('the layout variants (--split, --functions, --add-head, --buckets)', () => {
  const layouts = layoutVariants();
  it('cover each layout, packed multifunction packages, a pooled head of each input kind, iOS15 I/O, and the refusal before iOS18', () => {
    expect(new Set(layouts.map((v) => v.layout))).toEqual(
      new Set(['split', 'functions', 'add-head', 'buckets', 'functions-pack', 'buckets-pack', 'split-decoder']),
    );
    // The split decoder compressed: a grouped palette (iOS 18), int8 (iOS 17), one table per tensor (iOS 16).
    expect(layouts.filter((v) => v.layout === 'split-decoder').map((v) => v.args.join(' '))).toEqual([
      expect.stringMatching(/--compress pal4 --group-size 8/),
      expect.stringMatching(/--target iOS17 --compress int8/),
      expect.stringMatching(/--target iOS16 --compress pal4 --no-fidelity$/),
    ]);
    const has = (layout: string, re: RegExp) =>
      layouts.some((v) => !v.refused && v.layout === layout && re.test(v.args.join(' ')));
    expect(has('split', /--mask-input/) && has('split', /--target iOS15/) && has('split', /embedding/)).toBe(true);
    expect(has('buckets', /--functions/) && has('add-head', /@embedding/)).toBe(true);
    expect(has('functions-pack', /--pack/) && has('buckets-pack', /--pack .*--seq-len \d+,\d+/)).toBe(true);
    expect(layouts.filter((v) => v.refused).map((v) => v.args.join(' '))).toEqual([
      expect.stringMatching(/--functions .*--target iOS17/),
    ]);
    expect(new Set([...list, ...layouts].map((v) => v.name)).size).toBe(list.length + layouts.length);
  });
});

describe('the checkpoints and a few conversions', () => {
  const dir = tempDir('mbane-variants-');
  const ckpts = buildCheckpoints(FX, dir);

  it('builds the checkpoints each head needs', () => {
    const open = (head: keyof typeof ckpts) => {
      const c = loadCheckpoint(ckpts[head]);
      c.close();
      return c;
    };
    expect(open('seqcls-cls').config.classifierPooling).toBe('cls');
    expect(open('seqcls-mean').config.classifierPooling).toBe('mean');
    expect(open('embedding-mean').embedding).toEqual({ pooling: 'mean', normalize: false });
    expect(open('embedding-cls').embedding).toEqual({ pooling: 'cls', normalize: false });
    expect(open('embedding-normalized').embedding).toEqual({ pooling: 'mean', normalize: true });
    // The sentence-transformers body is tiny-mlm's "model." tensors, renamed, byte for byte.
    const body = readTensors(join(ckpts['embedding-cls'], 'model.safetensors'));
    const mlm = readTensors(join(FX, 'tiny-mlm', 'model.safetensors'));
    expect([...body.keys()].sort()).toEqual(
      [...mlm.keys()]
        .filter((n) => n.startsWith('model.'))
        .map((n) => n.slice(6))
        .sort(),
    );
    for (const [name, t] of body) expect(t.data, name).toEqual(mlm.get(`model.${name}`)!.data);
  });

  // One quick variant per head, read back with inspect.
  const quick = HEADS.map(quickOf);
  const output = (head: string): string =>
    head === 'none' ? 'hidden_states' : head.startsWith('embedding') ? 'embedding' : 'logits';
  it.each(quick.map((v) => [v.name, v] as [string, Variant]))(
    '%s converts and reads back with its flags',
    async (_, v) => {
      const pkg = join(dir, `${v.name}.mlpackage`);
      // The fidelity report only adds metadata, and seconds: skipped here.
      const r = await cli('convert', ckpts[v.head], '--out', pkg, ...v.args, '--no-fidelity', '--json');
      expect(r.code, r.stderr).toBe(0);
      const info = json(await cli('inspect', pkg, '--json')) as {
        target: string;
        sequence_lengths: number[];
        inputs: { name: string }[];
        outputs: { name: string }[];
        metadata: Record<string, string>;
        weight_dtypes: string[];
      };
      expect(info.target).toBe(v.target);
      expect(info.sequence_lengths).toEqual([16]);
      expect(info.inputs.map((f) => f.name)).toEqual(
        v.input === 'mask' ? ['input_ids', 'mask'] : v.pack === 'pack' ? ['input_ids', 'segment_ids'] : ['input_ids'],
      );
      expect(info.metadata.texts_per_window).toBe(v.pack === 'pack' ? '3' : undefined);
      expect(info.outputs.map((f) => f.name)).toEqual([output(v.head)]);
      expect(info.metadata.head).toBe(v.head.replace(/-.*/, ''));
      expect(info.metadata.norm).toBe(
        { l2: 'folded, l2-norm RMSNorm (overflow-safe)', rms: 'folded, x*x RMSNorm', 'no-fold': 'LayerNorm' }[v.norm],
      );
      expect(info.metadata.rotation).toMatch(
        v.norm === 'no-fold'
          ? /^none \(not folded\)$/
          : v.rotation === 'none'
            ? /^none \(folded\)$/
            : new RegExp(`^${v.rotation} `),
      );
      expect(info.weight_dtypes.filter((d) => d.startsWith('fp'))).toEqual([v.weights]);
    },
  );
});

describe('scripts/variants.mjs (built by npm test)', () => {
  // A stand-in for coreml-check that reports the same thing about every package.
  const fakeCheck = (report: string, code: number): string => {
    const path = join(tempDir('mbane-fake-check-'), 'check');
    writeFileSync(
      path,
      `#!/bin/sh\nfor p in "$@"; do echo "$p: specificationVersion 8, mlProgram"; printf '${report}\\n'; done\nexit ${code}\n`,
    );
    chmodSync(path, 0o755);
    return path;
  };
  const v = quickOf('mlm');
  const run = (check: string) =>
    spawnSync(
      process.execPath,
      [
        join(ROOT, 'scripts', 'variants.mjs'),
        '--only',
        v.name,
        '--check',
        check,
        '--out',
        tempDir('mbane-variants-out-'),
      ],
      { cwd: ROOT, encoding: 'utf8', timeout: 60_000 },
    );

  it('passes when the check finds nothing, and fails naming the variant and the problem when it does', () => {
    const ok = run(fakeCheck('  OK', 0));
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`^${v.name} .* ok.*, loads in coremltools$`, 'm'));
    expect(ok.stdout).toMatch(/1 converted, 0 refused as documented, 0 failed/);

    const bad = run(
      fakeCheck('  PROBLEM conv -> x: package declares fp16, coremltools infers fp32\\n  1 problem(s)', 1),
    );
    expect(bad.status, bad.stderr).toBe(1);
    expect(bad.stdout).toContain(`${v.name}: PROBLEM conv -> x: package declares fp16, coremltools infers fp32`);
    expect(bad.stdout).toMatch(/1 of 1 packages have problems/);

    const broken = run(fakeCheck('', 2));
    expect(broken.status).toBe(2);
    expect(broken.stderr).toMatch(/^error: .* did not run/);
  });
});
