// `download` from a Hugging Face Hub on the loopback interface (the tests' server, test/helpers/hub-server.ts,
// compiled here with the project's TypeScript): a cold download into an empty cache (streamed to disk and
// hashed as it arrives), a second run online (one model-info request), and one offline. Wall seconds, MB/s,
// peak RSS and CPU seconds of each run, in a fresh child process each. Run after a build:
//
//   npm run build && node bench/hub.mjs [--model DIR] [--runs N]
//
// Without --model it serves synth-base (ModernBERT-base's shapes, 596 MB of float32 weights), written to a
// temporary folder first.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { model: { type: 'string' }, runs: { type: 'string', default: '3' } } });
const root = fileURLToPath(new URL('..', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'mba-bench-hub-'));

/**
 * Runs the CLI in a child with `env`, which reports its own peak RSS and CPU time after the command; not
 * spawnSync, which would stop this process's event loop, and so the server.
 */
async function run(args, env) {
  const wrapper = join(work, 'run-cli.mjs');
  writeFileSync(
    wrapper,
    `const { main } = await import(${JSON.stringify(pathToFileURL(join(root, 'dist', 'cli', 'main.js')).href)});
const code = await main(process.argv.slice(2));
const u = process.resourceUsage();
// VmHWM, not maxRSS: Linux carries a process's maxRSS over fork and exec, so a child of this server (which
// holds the served files in memory) would report at least the parent's size.
const { readFileSync } = await import('node:fs');
const hwm = /VmHWM:\\s+(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
process.stderr.write('MAXRSS ' + (hwm ?? u.maxRSS) + ' CPU ' + (u.userCPUTime + u.systemCPUTime) + '\\n');
process.exit(code);
`,
  );
  const t0 = performance.now();
  const child = spawn(process.execPath, [wrapper, ...args], { env: { ...process.env, ...env } });
  const r = { stdout: '', stderr: '' };
  child.stdout.on('data', (d) => (r.stdout += d));
  child.stderr.on('data', (d) => (r.stderr += d));
  r.status = await new Promise((done) => child.on('exit', done));
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const [, rss, cpu] = /MAXRSS (\d+) CPU (\d+)/.exec(r.stderr);
  return { out: JSON.parse(r.stdout), seconds, maxRss: Number(rss) * 1024, cpu: Number(cpu) / 1e6 };
}

const rows = [];
let hub;
try {
  execFileSync(process.execPath, [
    join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
    join(root, 'test', 'helpers', 'hub-server.ts'),
    '--outDir',
    work,
    '--module',
    'nodenext',
    '--moduleResolution',
    'nodenext',
    '--target',
    'es2022',
    '--types',
    'node',
    '--skipLibCheck',
  ]);
  const { FakeHub, folderFiles, commitOf } = await import(pathToFileURL(join(work, 'hub-server.js')).href);
  let model = values.model;
  if (!model) {
    model = join(work, 'synth-base');
    execFileSync(process.execPath, [join(root, 'bin', 'modernbert-ane.js'), 'synth', 'base', '--out', model], {
      stdio: 'inherit',
    });
  }
  const files = folderFiles(model);
  const bytes = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].reduce(
    (s, f) => s + (files.get(f)?.length ?? 0),
    0,
  );
  hub = new FakeHub();
  await hub.start();
  hub.add('bench/model', { commits: { [commitOf('bench')]: files }, refs: { main: commitOf('bench') } });
  const mb = bytes / 1e6;
  console.log(
    `serving ${model} as bench/model (${mb.toFixed(1)} MB of checkpoint files) at ${hub.endpoint}; ${cpus().length} cores, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  const row = (what, r) =>
    rows.push({
      what,
      seconds: r.seconds.toFixed(2),
      'MB/s': r.out.downloaded.bytes ? (r.out.downloaded.bytes / 1e6 / r.seconds).toFixed(0) : '-',
      'peak RSS MB': (r.maxRss / 1e6).toFixed(0),
      'CPU s': r.cpu.toFixed(2),
    });
  for (let i = 0; i < Number(values.runs); i++) {
    const home = join(work, `hf-${i}`);
    const env = { HF_ENDPOINT: hub.endpoint, HF_HOME: home, HF_HUB_OFFLINE: '' };
    const cold = await run(['download', 'bench/model', '--json'], env);
    if (cold.out.downloaded.bytes !== bytes)
      throw new Error(`downloaded ${cold.out.downloaded.bytes} bytes, expected ${bytes}`);
    row('cold: empty cache', cold);
    if (i === 0) {
      row('cached, online (model info only)', await run(['download', 'bench/model', '--json'], env));
      row(
        'cached, HF_HUB_OFFLINE=1',
        await run(['download', 'bench/model', '--json'], { ...env, HF_HUB_OFFLINE: '1' }),
      );
    }
    rmSync(home, { recursive: true, force: true });
  }
  console.table(rows);
  console.log(
    `load after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}; model file ${(statSync(join(model, 'model.safetensors')).size / 1e6).toFixed(1)} MB`,
  );
} finally {
  await hub?.stop();
  rmSync(work, { recursive: true, force: true });
}
