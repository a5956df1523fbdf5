// The seeded mutation fuzzer (bench/fuzz/, compiled into build/fuzz/) over every reader (safetensors,
// sharded index, config, tokenizer, package, golden file), on the built code in dist/. Cases run in a
// worker thread with a watchdog, so a hang is counted (and the worker replaced), not fatal; a worker that
// dies (out of memory) counts as an internal error. Prints a table of outcomes per reader and every internal error and hang with its replay line.
//
//   npm run build && node bench/fuzz.mjs [--cases 10000] [--seed 1] [--readers safetensors,config] [--timeout-ms 20000]
//
// Record the table in docs/FUZZ.md with the command and the machine.

import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { buildFuzzer } from './fuzz/build.mjs';

const root = join(fileURLToPath(import.meta.url), '..', '..');
// Compiled once by the main thread; the worker threads load what it built.
const fuzz = isMainThread ? buildFuzzer()('run.js') : join(root, 'build', 'fuzz', 'run.js');

if (!isMainThread) {
  const { prepareSeeds, runCase } = await import(fuzz);
  const { work } = workerData;
  const seeds = await prepareSeeds(join(root, 'test', 'fixtures'), join(work, 'seeds'));
  parentPort.on('message', async ({ reader, seed, index }) => {
    const r = await runCase(reader, seeds, seed, index, work, (what) => parentPort.postMessage({ what }));
    parentPort.postMessage(r);
  });
  parentPort.postMessage({ ready: true });
} else {
  const args = process.argv.slice(2);
  const opt = (name, fallback) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : fallback;
  };
  const { READERS, describeCase } = await import(fuzz);
  const cases = Number(opt('cases', '10000'));
  const seed = Number(opt('seed', '1'));
  const timeoutMs = Number(opt('timeout-ms', '20000'));
  const readers = opt('readers', READERS.join(',')).split(',');
  const work = mkdtempSync(join(tmpdir(), 'mbane-fuzz-'));

  let worker;
  const start = () =>
    new Promise((resolve, reject) => {
      worker = new Worker(fileURLToPath(import.meta.url), {
        workerData: { work: join(work, `w${Date.now()}`) },
        resourceLimits: { maxOldGenerationSizeMb: 2048 },
      });
      worker.once('message', (m) => (m.ready ? resolve() : reject(new Error('worker did not start'))));
      worker.once('error', reject);
    });
  const runOne = (reader, index) =>
    new Promise((resolve) => {
      const w = worker;
      const done = (r) => {
        clearTimeout(timer);
        w.removeAllListeners('message');
        w.removeAllListeners('error');
        w.removeAllListeners('exit');
        resolve(r);
      };
      let what = '';
      const timer = setTimeout(() => {
        void w.terminate();
        worker = undefined;
        done({ reader, seed, index, outcome: 'hang', what, message: `no answer within ${timeoutMs} ms` });
      }, timeoutMs);
      w.on('message', (r) => (r.outcome === undefined ? (what = r.what) : done(r)));
      w.on('error', (e) => {
        worker = undefined;
        done({ reader, seed, index, outcome: 'internal', what: '', message: `worker died: ${e.message}` });
      });
      w.on('exit', (code) => {
        worker = undefined;
        done({ reader, seed, index, outcome: 'internal', what: '', message: `worker exited (${code})` });
      });
      w.postMessage({ reader, seed, index });
    });

  const table = [];
  const bad = [];
  const t0 = Date.now();
  for (const reader of readers) {
    const counts = { error: 0, accepted: 0, internal: 0, hang: 0 };
    const t1 = Date.now();
    for (let index = 0; index < cases; index++) {
      if (!worker) await start();
      const r = await runOne(reader, index);
      counts[r.outcome]++;
      if (r.outcome === 'internal' || r.outcome === 'hang') {
        bad.push(r);
        console.error(describeCase(r));
      }
      if ((index + 1) % 1000 === 0)
        console.error(`${reader}: ${index + 1}/${cases} (${((Date.now() - t1) / 1000).toFixed(0)} s)`);
    }
    table.push({ reader, cases, ...counts, seconds: Math.round((Date.now() - t1) / 1000) });
  }
  if (worker) await worker.terminate();
  rmSync(work, { recursive: true, force: true });

  console.log(
    `seed ${seed}, ${cases} cases per reader, watchdog ${timeoutMs} ms, node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}`,
  );
  console.log('| reader | cases | clear error | accepted | internal error | hang | seconds |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of table)
    console.log(`| ${r.reader} | ${r.cases} | ${r.error} | ${r.accepted} | ${r.internal} | ${r.hang} | ${r.seconds} |`);
  console.log(`total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  process.exit(bad.length > 0 ? 1 : 0);
}
