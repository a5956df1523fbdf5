#!/usr/bin/env node
// Converts small checkpoints into every kind of package `convert` can write (scripts/variants-list.mjs:
// every head with every flag value, pairwise) and, where coreml-check is set up, loads each package with
// coremltools' own schema, MIL loader and type inference (see CONTRIBUTING.md).
//
//   node scripts/variants.mjs [--out DIR] [--check PATH_TO_CHECK]
//
// Exit 0: every variant converted (or was refused exactly as documented) and, when checked, loads with no
// problem; 1: a conversion failed or the check found a problem; 2: bad usage or no build.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildCheckpoints } from './variants-checkpoints.mjs';
import { variantList } from './variants-list.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');
const DEFAULT_CHECK = resolve(ROOT, '..', 'shared', 'tools', 'coreml-check', 'check');
const BATCH = 12; // packages per coreml-check run: its start-up (coremltools import) takes seconds

function usage(message) {
  process.stderr.write(`error: ${message}\nusage: node scripts/variants.mjs [--out DIR] [--check PATH_TO_CHECK]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { out: undefined, check: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') usage('showing usage');
    if (a !== '--out' && a !== '--check') usage(`unknown argument ${a}`);
    const v = argv[++i];
    if (v === undefined || v.startsWith('--')) usage(`${a} needs a value`);
    o[a.slice(2)] = resolve(v);
  }
  return o;
}

/** Runs `modernbert-ane argv...` in this process through the built CLI, capturing its output. */
async function cli(main, argv) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), isTTY: false });
  return { code, stdout, stderr };
}

/** Converts one variant; returns its row: size and result ('ok', 'refused' or 'FAIL: ...'). */
async function convertOne(main, v, ckpt, pkg) {
  rmSync(pkg, { recursive: true, force: true });
  const t0 = performance.now();
  const r = await cli(main, ['convert', ckpt, '--out', pkg, ...v.args, '--json']);
  const seconds = (performance.now() - t0) / 1000;
  const firstLine = r.stderr.trim().split('\n')[0] ?? '';
  if (v.refused) {
    // A documented refusal: exit 2, one line naming it, and no package.
    const oneLine = r.stderr.endsWith('\n') && r.stderr.trim().split('\n').length === 1 && r.stderr.startsWith('error: ');
    const ok = r.code === 2 && oneLine && v.error.test(r.stderr) && !existsSync(pkg);
    return { seconds, size: '', result: ok ? 'refused' : `FAIL: expected a one-line refusal (${v.refused}), got exit ${r.code}: ${firstLine}` };
  }
  if (r.code !== 0 || !existsSync(pkg)) return { seconds, size: '', result: `FAIL: exit ${r.code}: ${firstLine}` };
  const report = JSON.parse(r.stdout);
  const size = `${(report.stats.bytesWritten / 1e6).toFixed(2)} MB`;
  const f = report.fidelity;
  return { seconds, size, result: f ? `ok (KL ${f.kl.toExponential(1)}, top-1 ${(100 * f.top1).toFixed(0)}%)` : 'ok', converted: true };
}

/**
 * Runs coreml-check on `pkgs` in batches; returns each package's PROBLEM lines. The tool prints one
 * closing line per package ("  OK" or "  N problem(s)"), in order.
 */
function runCheck(tool, pkgs) {
  const problems = new Map();
  for (let i = 0; i < pkgs.length; i += BATCH) {
    const batch = pkgs.slice(i, i + BATCH);
    const r = spawnSync(tool, batch, { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.error || r.status === 2 || r.status === null) {
      throw new Error(`${tool} did not run (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr || r.stdout || '').trim()}`);
    }
    let at = 0;
    let current = [];
    for (const line of r.stdout.split('\n')) {
      if (line.startsWith('  PROBLEM ') || line.startsWith('  ... and ')) current.push(line.trim());
      else if (/^ {2}(OK|\d+ problem\(s\))$/.test(line)) {
        if (line.trim() !== 'OK' && current.length === 0) current.push(line.trim());
        problems.set(batch[at++], current);
        current = [];
      }
    }
    if (at !== batch.length) throw new Error(`${tool} reported on ${at} of ${batch.length} packages: ${r.stdout.slice(-2000)}`);
    if ((r.status !== 0) !== batch.some((p) => problems.get(p).length > 0)) throw new Error(`${tool} exited ${r.status}, which its report does not explain`);
  }
  return problems;
}

function table(rows) {
  const cols = ['variant', 'flags', 'size', 's', 'result'];
  const cells = rows.map((r) => [r.name, r.flags, r.size, r.seconds.toFixed(1), r.result]);
  const width = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  const line = (row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(width[i]))).join('  ').trimEnd();
  return [line(cols), line(width.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

async function run() {
  const o = parseArgs(process.argv.slice(2));
  const built = join(ROOT, 'dist', 'cli', 'main.js');
  if (!existsSync(built)) usage('no build: run `npm run build` first');
  const { main } = await import(pathToFileURL(built).href);
  const tool = o.check ?? (existsSync(DEFAULT_CHECK) ? DEFAULT_CHECK : undefined);
  if (o.check && !existsSync(o.check)) usage(`--check ${o.check} does not exist`);

  const out = o.out ?? mkdtempSync(join(tmpdir(), 'modernbert-ane-variants-'));
  mkdirSync(out, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'modernbert-ane-variants-ckpt-'));
  const list = variantList();
  const rows = [];
  try {
    const checkpoints = buildCheckpoints(join(ROOT, 'test', 'fixtures'), work);
    for (const [i, v] of list.entries()) {
      if (process.stderr.isTTY) process.stderr.write(`\r${i + 1}/${list.length} ${v.name}`.padEnd(40));
      const pkg = join(out, `${v.name}.mlpackage`);
      const flags = [...v.args.filter((a) => a !== '--no-fidelity'), ...(v.args.includes('--no-fidelity') ? [] : ['(fidelity)'])].join(' ');
      rows.push({ name: v.name, flags, pkg, ...(await convertOne(main, v, checkpoints[v.head], pkg)) });
    }
    if (process.stderr.isTTY) process.stderr.write('\r'.padEnd(41) + '\r');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  const converted = rows.filter((r) => r.converted);
  let checkNote;
  let problems = new Map();
  if (!tool) {
    checkNote = `check skipped: no coreml-check at ${DEFAULT_CHECK} (give --check PATH; see CONTRIBUTING.md)`;
  } else {
    problems = runCheck(tool, converted.map((r) => r.pkg));
    for (const r of converted) r.result += problems.get(r.pkg).length ? `, PROBLEM x${problems.get(r.pkg).length}` : ', loads in coremltools';
    checkNote = `checked with ${tool}: ${[...problems.values()].filter((p) => p.length).length} of ${converted.length} packages have problems`;
  }

  console.log(table(rows));
  for (const r of converted) {
    for (const p of problems.get(r.pkg) ?? []) console.log(`${r.name}: ${p}`);
  }
  const failed = rows.filter((r) => r.result.startsWith('FAIL'));
  const refused = rows.filter((r) => r.result === 'refused');
  console.log(`\n${converted.length} converted, ${refused.length} refused as documented (${[...new Set(list.filter((v) => v.refused).map((v) => v.refused))].join('; ')}), ${failed.length} failed`);
  console.log(checkNote);
  console.log(`packages in ${out}`);
  const bad = failed.length > 0 || [...problems.values()].some((p) => p.length > 0);
  process.exitCode = bad ? 1 : 0;
}

run().catch((e) => {
  process.stderr.write(`\ninternal error: ${e?.message ?? e}\n`);
  process.exitCode = 3;
});
