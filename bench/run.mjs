// Runs every benchmark in bench/ (each *.mjs but this one), one after another, each in a process of its own
// so that one's memory and JIT state do not weigh on the next. Builds first. `npm run bench` runs this:
//
//   npm run bench [-- --quick] [-- --only gemm,fold] [-- --list]
//
// --quick runs each at a small size (minutes in all instead of about an hour), to check that they work;
// the numbers in docs/ come from the full runs. --list prints the commands without running them.
// bench/fidelity.mjs rewrites blocks of docs/FIDELITY.md; here it writes into a copy in a temporary folder,
// so a run never edits the docs (run it alone, as docs/FIDELITY.md says, to regenerate them).

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
const USAGE = 'usage: npm run bench [-- --quick] [-- --only gemm,fold] [-- --list] [-- --help]';
let values;
try {
  ({ values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (e) {
  // An unknown or malformed option: one line, as the CLI's usage errors.
  console.error(`error: ${e.message.split('\n')[0]} (${USAGE})`);
  process.exit(2);
}
if (values.help) {
  console.log(
    `${USAGE}\n\nRuns every benchmark in bench/, each in its own process, after a build. --quick runs each at a small size\n(minutes in all), --only runs the named ones, --list prints their commands without running them.`,
  );
  process.exit(0);
}

const scratch = join(tmpdir(), `mba-bench-${process.pid}`);
const fidelityDoc = join(scratch, 'FIDELITY.md');

/** Arguments of each benchmark, full and quick, in the order they run (quickest first); others run last, without arguments. */
const ARGS = {
  gemm: { full: [], quick: ['128'] },
  attention: { full: ['--keys', '1024,2048,4096,8192'], quick: ['--keys', '256'] },
  fold: { full: [], quick: ['--layers', '2', '--repeat', '1'] },
  forward: { full: [], quick: ['--lengths', '128', '--runs', '1'] },
  convert: { full: [], quick: ['--models', 'base'] },
  fidelity: { full: ['--out', fidelityDoc], quick: ['--sections', 'prefix', '--out', fidelityDoc] },
  // One text per window costs a full 512-token pass per text: the full run measures 100 of them and scales.
  embed: { full: ['--texts', '2000', '--baseline', '100'], quick: ['--texts', '40', '--baseline', '4'] },
  compress: {
    full: ['--model', 'models/mini-trained', '--rotations', 'none,hadamard,learned'],
    quick: ['--model', 'models/mini-trained', '--forms', 'fp16,int4'],
  },
  // Whole commands on synth-base, both runtimes and the default, and embed against sorted padded batches.
  commands: { full: [], quick: ['--runs', '1', '--only', 'predict,st', '--short', '20', '--long', '4'] },
  'compress-tokens': {
    full: ['--model', 'models/mini-trained'],
    quick: ['--model', 'models/mini-trained', '--random', '8', '--forms', 'int4'],
  },
  hub: { full: [], quick: ['--model', 'models/mini-trained', '--runs', '1'] },
};

const order = (name) => (name in ARGS ? Object.keys(ARGS).indexOf(name) : Infinity);
const all = readdirSync(join(root, 'bench'))
  .filter((f) => f.endsWith('.mjs') && f !== 'run.mjs')
  .map((f) => f.slice(0, -'.mjs'.length))
  .sort((a, b) => order(a) - order(b) || a.localeCompare(b));
const only = values.only?.split(',');
const unknown = only?.filter((name) => !all.includes(name)) ?? [];
if (unknown.length > 0) {
  console.error(`error: no benchmark ${unknown.join(', ')} in bench/ (there are: ${all.join(', ')})`);
  process.exit(2);
}
const chosen = all.filter((name) => !only || only.includes(name));
const commands = chosen.map((name) => ({
  name,
  args: [join('bench', `${name}.mjs`), ...(ARGS[name]?.[values.quick ? 'quick' : 'full'] ?? [])],
}));

if (values.list) {
  for (const c of commands) console.log(`node ${c.args.join(' ')}`);
  process.exit(0);
}

const failed = [];
mkdirSync(scratch, { recursive: true });
try {
  const build = spawnSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('the build failed');
  copyFileSync(join(root, 'docs', 'FIDELITY.md'), fidelityDoc);
  for (const c of commands) {
    console.log(`\n## ${c.name}: node ${c.args.join(' ')}\n`);
    const t0 = performance.now();
    const r = spawnSync(process.execPath, c.args, { cwd: root, stdio: 'inherit' });
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    console.log(`\n(${c.name}: ${r.status === 0 ? 'done' : `FAILED, exit ${r.status ?? r.signal}`} in ${seconds} s)`);
    if (r.status !== 0) failed.push(c.name);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
if (failed.length > 0) {
  console.error(`\nfailed: ${failed.join(', ')}`);
  process.exit(1);
}
