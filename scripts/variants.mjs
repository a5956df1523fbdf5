#!/usr/bin/env node
// Converts small checkpoints into every kind of package `convert` can write (scripts/variants-list.mjs:
// every head with every flag value, pairwise) and, where coreml-check is set up, loads each package with
// coremltools' own schema, MIL loader and type inference (see CONTRIBUTING.md).
//
//   node scripts/variants.mjs [--out DIR] [--check PATH_TO_CHECK] [--only TEXT]
//
// --out keeps the packages in DIR (default: a temporary folder, removed when all is well); --check names
// coreml-check (default: ../shared/tools/coreml-check/check beside the repository; without it the check
// is skipped and said so); --only converts the variants whose name contains TEXT ('embedding', '07-').
//
// Exit 0: every variant converted (or was refused exactly as documented) and, when checked, loads with no
// problem; 1: a conversion failed or the check found a problem; 2: bad usage, no build, or a check tool
// that does not run.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { buildCheckpoints } from './variants-checkpoints.mjs';
import { layoutVariants, variantList } from './variants-list.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');
const DEFAULT_CHECK = resolve(ROOT, '..', 'shared', 'tools', 'coreml-check', 'check');
const BATCH = 12; // packages per coreml-check run: each run spends seconds importing coremltools
const USAGE = 'usage: node scripts/variants.mjs [--out DIR] [--check PATH_TO_CHECK] [--only TEXT]';

/** Bad usage or setup: printed as one line, exit 2. */
class UsageError extends Error {}

function parseArgs(argv) {
  const o = { out: undefined, check: undefined, only: undefined, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') o.help = true;
    else if (a === '--out' || a === '--check' || a === '--only') {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${a} needs a value`);
      o[a.slice(2)] = a === '--only' ? v : resolve(v);
    } else throw new UsageError(`unknown argument ${a}`);
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

/** Converts one variant; returns its row's size, seconds and result ('ok ...', 'refused' or 'FAIL: ...'). */
async function convertOne(main, v, ckpt, pkg, checkpoints) {
  rmSync(pkg, { recursive: true, force: true });
  const t0 = performance.now();
  const args = v.args.map((a) => a.replace(/@([\w-]+)$/, (_, head) => checkpoints[head]));
  const r = await cli(main, ['convert', ckpt, '--out', pkg, ...args, '--json']);
  const seconds = (performance.now() - t0) / 1000;
  const firstLine = r.stderr.trim().split('\n')[0] ?? '';
  if (v.refused) {
    // Refused as documented: exit 2, one line naming the rule, and no package.
    const oneLine =
      r.stderr.startsWith('error: ') && r.stderr.endsWith('\n') && r.stderr.trim().split('\n').length === 1;
    const ok = r.code === 2 && oneLine && v.error.test(r.stderr) && !existsSync(pkg);
    return {
      seconds,
      size: '',
      result: ok ? 'refused' : `FAIL: expected a one-line refusal (${v.refused}), got exit ${r.code}: ${firstLine}`,
    };
  }
  if (r.code !== 0 || !existsSync(pkg)) return { seconds, size: '', result: `FAIL: exit ${r.code}: ${firstLine}` };
  const report = JSON.parse(r.stdout);
  const size = `${(report.stats.bytesWritten / 1e6).toFixed(2)} MB`;
  const f = report.fidelity;
  // --split writes head packages beside the body; a multifunction package names its functions.
  const layout =
    report.packages.length > 1
      ? `, +${report.packages.length - 1} head package(s)`
      : report.functions.length
        ? `, functions ${report.functions.join(' ')}`
        : '';
  return {
    seconds,
    size,
    result: (f ? `ok (KL ${f.kl.toExponential(1)}, top-1 ${(100 * f.top1).toFixed(0)}%)` : 'ok') + layout,
    converted: true,
    pkgs: report.packages,
    multifunction: report.functions.length > 0,
    subByteBits: subByteBits(v),
  };
}

/** The index or integer width of an iOS 18 compressed package whose blobs pack values below a byte (else undefined). */
function subByteBits(v) {
  if (v.target !== 'iOS18' || !v.compress) return undefined;
  if (v.compress === 'int4') return 4;
  const bits = Number(/^pal(\d)/.exec(v.compress)?.[1]);
  return bits < 8 ? bits : undefined;
}

/**
 * coreml-check's blob.py returns a sub-byte blob still packed, where coremltools' own reader
 * (milstoragepython/MilStorage.cpp, readUnsignedSubByteData and read_int4_data) unpacks it to one value per
 * element; coremltools' loader then reshapes to the op's shape. So the tool stops at the first compressed op with
 * "cannot reshape array of size N into shape (...)", N exactly the packed byte count. Only that line, with that
 * arithmetic, is set aside (and counted); see CONTRIBUTING.md for checking such packages with a fixed reader.
 */
function packedSubByteArtefact(problem, bits) {
  const m =
    /^PROBLEM coremltools rejects the program \(at op constexpr_\w+ -> \w+\): ValueError: cannot reshape array of size (\d+) into shape \(([\d, ]+)\)$/.exec(
      problem,
    );
  if (!m) return false;
  const elements = m[2]
    .split(',')
    .filter((d) => d.trim())
    .reduce((a, d) => a * Number(d), 1);
  return Number(m[1]) === Math.ceil((elements * bits) / 8);
}

/**
 * Runs coreml-check on `pkgs` in batches; returns each package's PROBLEM lines. The tool ends its report
 * on each package, in order, with one line: "  OK" or "  N problem(s)".
 */
function runCheck(tool, pkgs) {
  const problems = new Map();
  for (let i = 0; i < pkgs.length; i += BATCH) {
    const batch = pkgs.slice(i, i + BATCH);
    const r = spawnSync(tool, batch, { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.error || r.status === 2 || r.status === null) {
      const why = r.error?.message ?? ((r.stderr || r.stdout || '').trim().split('\n')[0] || `exit ${r.status}`);
      throw new UsageError(`${tool} did not run: ${why} (set it up once with --setup: see CONTRIBUTING.md)`);
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
    // Anything else is not coreml-check's report: say so rather than pass a package unread.
    if (at !== batch.length)
      throw new UsageError(`${tool} reported on ${at} of ${batch.length} packages; is it coreml-check?`);
    if ((r.status !== 0) !== batch.some((p) => problems.get(p).length > 0))
      throw new UsageError(`${tool} exited ${r.status}, which its report does not explain`);
  }
  return problems;
}

function table(rows) {
  const cols = ['variant', 'flags', 'size', 's', 'result'];
  const cells = rows.map((r) => [r.name, r.flags, r.size, r.seconds.toFixed(1), r.result]);
  const width = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  const line = (row) =>
    row
      .map((c, i) => (i === row.length - 1 ? c : c.padEnd(width[i])))
      .join('  ')
      .trimEnd();
  return [line(cols), line(width.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

/** Converts every variant of `list` into `out`; returns the table's rows. */
async function convertAll(main, list, out) {
  const work = mkdtempSync(join(tmpdir(), 'modernbert-ane-variants-ckpt-'));
  const rows = [];
  try {
    const checkpoints = buildCheckpoints(join(ROOT, 'test', 'fixtures'), work);
    for (const [i, v] of list.entries()) {
      if (process.stderr.isTTY) process.stderr.write(`\r${i + 1}/${list.length} ${v.name}`.padEnd(40));
      const pkg = join(out, `${v.name}.mlpackage`);
      const flags = v.args.includes('--no-fidelity')
        ? v.args.filter((a) => a !== '--no-fidelity')
        : [...v.args, '(fidelity)'];
      rows.push({
        name: v.name,
        flags: flags.join(' '),
        pkg,
        ...(await convertOne(main, v, checkpoints[v.head], pkg, checkpoints)),
      });
    }
    if (process.stderr.isTTY) process.stderr.write(`\r${' '.repeat(40)}\r`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return rows;
}

async function run() {
  const o = parseArgs(process.argv.slice(2));
  if (o.help) return console.log(USAGE);
  const built = join(ROOT, 'dist', 'cli', 'main.js');
  if (!existsSync(built)) throw new UsageError('no build: run `npm run build` first');
  if (o.check && !existsSync(o.check)) throw new UsageError(`--check ${o.check} does not exist`);
  const tool = o.check ?? (existsSync(DEFAULT_CHECK) ? DEFAULT_CHECK : undefined);
  const list = [...variantList(), ...layoutVariants()].filter((v) => !o.only || v.name.includes(o.only));
  if (list.length === 0) throw new UsageError(`no variant name contains "${o.only}"`);
  const { main } = await import(pathToFileURL(built).href);

  const out = o.out ?? mkdtempSync(join(tmpdir(), 'modernbert-ane-variants-'));
  mkdirSync(out, { recursive: true });
  let keep = Boolean(o.out);
  try {
    const rows = await convertAll(main, list, out);
    const converted = rows.filter((r) => r.converted);
    let checkNote = `check skipped: no coreml-check at ${DEFAULT_CHECK} (give --check PATH; see CONTRIBUTING.md)`;
    let problems = new Map();
    if (tool) {
      problems = runCheck(
        tool,
        converted.flatMap((r) => r.pkgs),
      );
      const setAside = [];
      for (const r of converted) {
        // coreml-check compares every function with the top-level description, which a multifunction model
        // leaves empty (coremltools' own backend/mil/load.py get_coreml_model writes a FunctionDescription per
        // function instead): only that comparison is set aside; our reader checks each FunctionDescription.
        if (r.multifunction)
          problems.set(
            r.pkg,
            problems
              .get(r.pkg)
              .filter((p) => !/^PROBLEM function \w+: (inputs|outputs) .* differ from the description \[\]$/.test(p)),
          );
        if (r.subByteBits) {
          const all = problems.get(r.pkg);
          const kept = all.filter((p) => !packedSubByteArtefact(p, r.subByteBits));
          if (kept.length < all.length) setAside.push(r.name);
          problems.set(r.pkg, kept);
        }
        const found = r.pkgs.flatMap((p) => problems.get(p));
        problems.set(r.pkg, found);
        for (const p of r.pkgs.slice(1)) problems.delete(p);
        r.result += found.length ? `, PROBLEM x${found.length}` : ', loads in coremltools';
      }
      checkNote = `checked with ${tool}: ${[...problems.values()].filter((p) => p.length).length} of ${converted.length} packages have problems`;
      if (setAside.length)
        checkNote += `; set aside in ${setAside.length} (${setAside.join(', ')}): the tool's blob reader leaves sub-byte blobs packed (see CONTRIBUTING.md)`;
    }

    console.log(table(rows));
    for (const r of converted) for (const p of problems.get(r.pkg) ?? []) console.log(`${r.name}: ${p}`);
    const failed = rows.filter((r) => r.result.startsWith('FAIL'));
    const refused = rows.filter((r) => r.result === 'refused');
    const rules = [...new Set(list.filter((v) => v.refused).map((v) => v.refused))];
    console.log(
      `\n${converted.length} converted, ${refused.length} refused as documented${rules.length ? ` (${rules.join('; ')})` : ''}, ${failed.length} failed`,
    );
    console.log(checkNote);
    const bad = failed.length > 0 || [...problems.values()].some((p) => p.length > 0);
    // A temporary folder is kept only when something is wrong: its packages are then what to look at.
    keep ||= bad;
    if (keep) console.log(`packages in ${out}`);
    process.exitCode = bad ? 1 : 0;
  } finally {
    if (!keep) rmSync(out, { recursive: true, force: true });
  }
}

run().catch((e) => {
  if (e instanceof UsageError) {
    process.stderr.write(`error: ${e.message}\n${USAGE}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`internal error: ${e?.stack ?? e}\n`);
    process.exitCode = 3;
  }
});
