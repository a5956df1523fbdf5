// `report PKG --out page.html`: where it may write, and the page itself, opened in headless Chromium: no console
// error and no request beyond the file, its op table agreeing with `inspect --ane --json`, a strip mark per op,
// the fidelity per layer that convert stored, every tensor, and a section per function of a multifunction package.

import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserMissing, withPage } from '../scripts/browser.mjs';
import { readStoredFidelity } from '../src/report/stored-fidelity.js';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import { cleanupTempDirs, FX, readFixtureJson, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

interface OpJson {
  index: number;
  name: string;
  device: string;
  rule: string;
  layer: number | string;
}
interface AneJson {
  functions: { name: string; ops: OpJson[] }[];
}

const LAYERS = readFixtureJson('tiny-mlm').num_hidden_layers as number;
const dir = tempDir('mbane-report-');
const pkg = join(dir, 'tiny.mlpackage');
const multi = join(dir, 'multi.mlpackage');

beforeAll(async () => {
  // With the fidelity report (and its per-layer figures), packed so that the page has islands to show.
  const r = await cli('convert', join(FX, 'tiny-mlm'), '--out', pkg, '--seq-len', '32', '--pack', '2');
  expect(r.code, r.stderr).toBe(0);
  const m = await cli(
    'convert',
    join(FX, 'tiny-mlm'),
    '--out',
    multi,
    '--seq-len',
    '16',
    '--functions',
    'mlm,embedding',
    '--target',
    'iOS18',
    '--no-fidelity',
  );
  expect(m.code, m.stderr).toBe(0);
}, 120_000);

describe('report', () => {
  it('writes one page, and refuses what it must not overwrite in one line', async () => {
    const page = join(dir, 'page.html');
    const r = await cli('report', pkg, '--out', page);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*page\.html \(\d+ kB\): 1 function, \d+ ops\n$/);
    const html = readFileSync(page, 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain(
      `content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"`,
    );
    expect(html).not.toMatch(/\b(src|href)=/); // nothing to fetch: everything is inline
    expectOneLineError(
      await cli('report', pkg, '--out', page),
      /page\.html already exists \(use --force to replace it\)/,
    );
    expect((await cli('report', pkg, '--out', page, '--force')).code).toBe(0);
    expectOneLineError(await cli('report', pkg, '--out', join(pkg, 'page.html')), /is inside the package/);
    const link = join(dir, 'link.html');
    symlinkSync(join(dir, 'elsewhere.html'), link);
    expectOneLineError(await cli('report', pkg, '--out', link, '--force'), /link\.html is a symbolic link to nothing/);
    mkdirSync(join(dir, 'folder.html'));
    expectOneLineError(
      await cli('report', pkg, '--out', join(dir, 'folder.html'), '--force'),
      /is a folder, not a file/,
    );
    expectOneLineError(
      await cli('report', join(FX, 'tiny-mlm'), '--out', join(dir, 'x.html')),
      /report describes a Core ML package/,
    );
    expectOneLineError(
      await cli('report', join(dir, 'none.mlpackage'), '--out', join(dir, 'x.html')),
      /does not exist/,
    );
    expectOneLineError(await cli('report', pkg, '--out', join(dir, 'no', 'x.html')), /does not exist/);
    expect(existsSync(join(dir, 'x.html'))).toBe(false);
  });

  it('stores per-layer fidelity and outliers in the package, which the page reads back', async () => {
    const info = json(await cli('inspect', pkg, '--json')) as { metadata: Record<string, string> };
    const f = readStoredFidelity(info.metadata.fidelity)!;
    expect(f.layers).toHaveLength(LAYERS + 1); // and the embeddings
    for (const l of f.layers!) {
      expect(l.rel_error!).toBeGreaterThanOrEqual(0);
      expect(l.rel_error!).toBeLessThan(0.05);
      expect(l.converted_max!).toBeGreaterThan(0);
      expect(Math.abs(l.emulated_max! - l.converted_max!) / l.converted_max!).toBeLessThan(0.05);
      expect(l.reference_max!).toBeGreaterThan(0);
    }
    expect(readStoredFidelity('not json')).toBeNull();
    expect(
      readStoredFidelity(
        JSON.stringify({
          precision: 'fp16',
          kl: null,
          top1: 0,
          top5: 0,
          tokens: 3,
          inputs: 'x',
          layers: [
            { layer: 0, rel_error: null, reference_max: 1, converted_max: 1, emulated_max: null },
            { layer: 'bad' },
          ],
        }),
      )!.layers,
    ).toHaveLength(1);
  });

  const missing = browserMissing();
  it('renders in headless Chromium with no console error, and its op table is inspect --ane --json', async () => {
    if (missing) {
      // .ci/run installs Chromium where it can; elsewhere this check says it did not run, and why.
      console.warn(`report browser test SKIPPED: ${missing}`);
      return;
    }
    const page = join(dir, 'browser.html');
    expect((await cli('report', pkg, '--out', page, '--force')).code).toBe(0);
    const ane = json(await cli('inspect', '--ane', '--json', pkg)) as AneJson;
    const ops = ane.functions[0]!.ops;
    const seen = await withPage(page, async (p, problems) => {
      const rows = await p.$$eval('#ops-f0 tbody tr', (trs) =>
        trs.map((tr) => ({
          index: Number(tr.getAttribute('data-index')),
          device: tr.getAttribute('data-device'),
          rule: tr.getAttribute('data-rule'),
          name: tr.children[1]!.textContent,
        })),
      );
      const strips = await p.$$eval('.strip', (ds) =>
        ds.map((d) => ({
          layer: d.getAttribute('data-layer'),
          marks: d.querySelectorAll('rect').length,
          colors: [...d.querySelectorAll('rect')].map((r) => r.getAttribute('fill')),
        })),
      );
      await p.selectOption('select[data-table="ops-f0"]', 'off');
      const visible = await p.$$eval(
        '#ops-f0 tbody tr',
        (trs) => trs.filter((tr) => !tr.hasAttribute('hidden')).length,
      );
      const fidelityRows = await p.$$eval('#fidelity-layers tr', (trs) => trs.length);
      const tensorRows = await p.$$eval('#tensors tbody tr', (trs) => trs.length);
      const charts = await p.$$eval('svg', (s) => s.length);
      const shot = await p.screenshot({ fullPage: false });
      return { rows, strips, visible, fidelityRows, tensorRows, charts, shot, problems: [...problems] };
    });
    expect(seen.problems).toEqual([]);
    expect(seen.rows).toEqual(ops.map((o) => ({ index: o.index, device: o.device, rule: o.rule, name: o.name })));
    expect(seen.strips.reduce((s, x) => s + x.marks, 0)).toBe(ops.length);
    expect(seen.strips.map((s) => s.layer)).toEqual([
      'input',
      ...Array.from({ length: LAYERS }, (_, i) => `layer ${i}`),
      'output',
    ]);
    expect(seen.strips.flatMap((s) => s.colors).filter((c) => c !== '#2e8b57').length).toBe(
      ops.filter((o) => o.device !== 'ane').length,
    );
    expect(seen.visible).toBe(ops.filter((o) => o.device !== 'ane').length);
    expect(seen.fidelityRows).toBe(1 + LAYERS + 1);
    expect(seen.tensorRows).toBeGreaterThan(10);
    expect(seen.charts).toBeGreaterThanOrEqual(2 + seen.strips.length);
    expect([...seen.shot.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]); // a PNG
  });

  it('shows each function of a multifunction package, and says when no fidelity report is stored', async () => {
    const page = join(dir, 'multi.html');
    expect((await cli('report', multi, '--out', page)).code).toBe(0);
    const html = readFileSync(page, 'utf8');
    expect(html).toMatch(/<h2 id="f0">Function mlm<\/h2>/);
    expect(html).toMatch(/<h2 id="f1">Function embedding<\/h2>/);
    expect(html).toContain('This package stores no fidelity report (converted with --no-fidelity).');
    if (missing) return;
    const problems = await withPage(page, async (_, found) => [...found]);
    expect(problems).toEqual([]);
  });
});
