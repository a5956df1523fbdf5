// Float32 forward pass of synth-base (ModernBERT-base: 22 layers, hidden 768) on three runtimes, each in a
// child process of its own (so each has its own peak RSS), driven in turn by this process (interleaved runs,
// so that the shared machine's load falls on all three alike):
//
//   engine     our engine (graph/interpreter.ts), the graph of src/model/model.ts
//   ort-ours   onnxruntime-node on the same graph, lowered by src/onnx/ (what --runtime ort runs)
//   ort-plain  onnxruntime-node on a plain ModernBERT export (bench/plain-modernbert.mjs) of the checkpoint's weights:
//              standard layout (1, S, C), MatMul projections, (1, H, S, D) attention with full S x S
//              scores and an in-graph sliding-window mask: what an optimum/transformers.js export does
//
// The forward is the body (last hidden state, head 'none'): at 8,192 tokens the masked-LM logits alone
// would be 1.6 GB. Outputs are compared (max abs difference against the engine) to show that the three
// compute the same model.
//
// --embed adds `embed` over bench/embed.mjs's text set (2,000 texts of 5 to 60 tokens, packed up to 64 per
// 512-token window) on our engine and on --runtime ort, one child each, one after the other: texts/s, CPU
// seconds, peak RSS, and the largest difference between their embeddings. `--lengths none` runs it alone.
//
//   npm run build && node bench/ort.mjs [--dir /tmp/sb] [--lengths 128,512,1024,8192] [--runs 5] [--long-runs 1] [--skip-engine-above N]
//                                       [--runtimes engine,ort-ours,ort-plain] [--embed] [--texts 2000] [--window 512] [--pack 64] [--seed 9]
//
// Without --dir it writes synth-base (~600 MB) to a temporary folder first. The medians are printed as a
// Markdown table (docs/PERFORMANCE.md, "onnxruntime"). Threads: onnxruntime's default (one per core); ours:
// MODERNBERT_ANE_THREADS (default all cores).

import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { plainModel } from './plain-modernbert.mjs';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    lengths: { type: 'string', default: '128,512,1024,8192' },
    runs: { type: 'string', default: '5' },
    'long-runs': { type: 'string', default: '1' }, // runs at 4,096 tokens and more (our engine takes minutes there)
    'skip-engine-above': { type: 'string' },
    runtimes: { type: 'string', default: 'engine,ort-ours,ort-plain' }, // a subset, e.g. without ort-plain's S x S scores at 8,192
    embed: { type: 'boolean', default: false },
    texts: { type: 'string', default: '2000' },
    window: { type: 'string', default: '512' },
    pack: { type: 'string', default: '64' },
    seed: { type: 'string', default: '9' },
    child: { type: 'string' },
  },
});

if (values.child?.startsWith('embed-')) await embedChild(values.child.slice('embed-'.length), values.dir);
else if (values.child) await child(values.child, values.dir);
else await parent();

// ---- the parent: start the three children per length, run them in turn, print medians -----------------

async function parent() {
  let dir = values.dir;
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), 'mbane-ort-bench-'));
    const { writeSynthCheckpoint } = await import('../dist/synth/synth.js');
    await writeSynthCheckpoint('base', dir);
  }
  const lengths = values.lengths === 'none' ? [] : values.lengths.split(',').map(Number);
  const runs = Number(values.runs);
  const skipAbove = values['skip-engine-above'] === undefined ? Infinity : Number(values['skip-engine-above']);
  process.stderr.write(
    `cores ${availableParallelism()}, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} at the start\n`,
  );
  const rows = [];
  for (const S of lengths) {
    const names = values.runtimes.split(',').filter((n) => n !== 'engine' || S <= skipAbove);
    const kids = names.map((name) => start(name, dir));
    const ready = await Promise.all(kids.map((k) => k.ask({ op: 'prepare', S })));
    const times = Object.fromEntries(names.map((n) => [n, []]));
    const cpus = Object.fromEntries(names.map((n) => [n, []]));
    const outs = {};
    for (let r = 0; r < (S >= 4096 ? Number(values['long-runs']) : runs); r++) {
      for (const [i, k] of kids.entries()) {
        const res = await k.ask({ op: 'run', S, first: r === 0 });
        times[names[i]].push(res.seconds);
        cpus[names[i]].push(res.cpu);
        if (r === 0) outs[names[i]] = res.sample;
      }
    }
    const done = await Promise.all(kids.map((k) => k.ask({ op: 'exit' })));
    const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const row = { S, load: loadavg()[0] };
    names.forEach((n, i) => {
      row[n] = {
        median: med(times[n]),
        all: times[n],
        cpu: med(cpus[n]),
        peakMB: done[i].peakMB,
        prepare: ready[i].seconds,
      };
    });
    const ref = outs.engine ?? outs['ort-plain'] ?? outs[names[0]];
    row.maxDiff = Object.fromEntries(names.map((n) => [n, Math.max(...outs[n].map((v, j) => Math.abs(v - ref[j])))]));
    rows.push(row);
    process.stderr.write(`${JSON.stringify(row)}\n`);
  }
  const embedRows = values.embed ? await embedBoth(dir) : [];
  if (!values.dir) rmSync(dir, { recursive: true, force: true });
  if (embedRows.length) {
    console.log(`| embed, ${values.texts} texts | texts/s | wall s | CPU s | peak RSS | load |`);
    console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const r of embedRows)
      console.log(
        `| ${r.name} | ${r.textsPerSecond.toFixed(1)} | ${r.seconds.toFixed(1)} | ${r.cpu.toFixed(1)} | ${r.peakMB} MB | ${r.load.toFixed(1)} |`,
      );
    const [a, b] = embedRows.map((r) => r.sample);
    if (b)
      console.log(
        `max |engine - ort| over the first ${a.length / embedRows[0].dims} embeddings: ${Math.max(...a.map((v, j) => Math.abs(v - b[j]))).toExponential(2)}`,
      );
  }
  if (!rows.length) return;
  const f = (r, n) => (r[n] ? `${r[n].median.toFixed(2)} s, ${r[n].cpu.toFixed(1)} CPU s (${r[n].peakMB} MB)` : '-');
  console.log('| tokens | engine | ort-ours | ort-plain | ort-ours / ort-plain | engine / ort-ours | load |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const ratio = (a, b) => (r[a] && r[b] ? `${(r[a].median / r[b].median).toFixed(2)}x` : '-');
    console.log(
      `| ${r.S} | ${f(r, 'engine')} | ${f(r, 'ort-ours')} | ${f(r, 'ort-plain')} | ${ratio('ort-ours', 'ort-plain')} | ${ratio('engine', 'ort-ours')} | ${r.load.toFixed(1)} |`,
    );
  }
}

function start(name, dir) {
  const p = fork(fileURLToPath(import.meta.url), ['--child', name, '--dir', dir], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let waiting;
  p.on('message', (m) => waiting?.(m));
  p.on('exit', (code) => code && waiting?.(Promise.reject(new Error(`${name} exited with ${code}`))));
  return {
    ask: (m) =>
      new Promise((res) => {
        waiting = res;
        p.send(m);
      }),
  };
}

// ---- embed: the 2,000-text set on each runtime, one child after the other --------------------------------

async function embedBoth(dir) {
  const rows = [];
  // --runtimes picks here too: 'engine' and 'ort-ours' (--runtime ort); ort-plain has no embed.
  const picked = values.runtimes.split(',');
  for (const name of ['engine', 'ort'].filter((n) => picked.includes(n === 'ort' ? 'ort-ours' : n))) {
    const args = [
      '--child',
      `embed-${name}`,
      '--dir',
      dir,
      ...['texts', 'window', 'pack', 'seed'].flatMap((k) => [`--${k}`, values[k]]),
    ];
    const p = fork(fileURLToPath(import.meta.url), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const row = await new Promise((res, rej) => {
      p.on('message', res);
      // A child that dies by a signal, or exits before answering, is an error too (not a silent stop).
      p.on('exit', (code, signal) =>
        rej(new Error(`embed on ${name} exited (${signal ?? `code ${code}`}) before reporting`)),
      );
    });
    rows.push({ name: name === 'engine' ? 'our engine' : '--runtime ort', ...row, load: loadavg()[0] });
    process.stderr.write(`embed ${name}: ${JSON.stringify({ ...row, sample: undefined })}\n`);
  }
  return rows;
}

// One runtime: a warm-up on the first window's texts (the graph, onnxruntime's session), then all texts.
async function embedChild(name, dir) {
  const { openModel } = await import('../dist/run/load.js');
  const { runTokenized } = await import('../dist/tasks/batch.js');
  const { TASKS } = await import('../dist/tasks/task-table.js');
  const { chooseRuntime, executorFor } = await import('../dist/run/runtime-choice.js');
  const { shutdownRuntime } = await import('../dist/runtime/shutdown.js');
  const { benchTexts } = await import('./texts.mjs');
  const executor = executorFor(await chooseRuntime({ runtime: name }));
  const model = await openModel(dir, { precision: 'fp32', executor });
  const texts = benchTexts(Number(values.texts), Number(values.seed), model.ids).map((ids) => ({ text: '', ids }));
  const o = { window: Number(values.window), pack: Number(values.pack) };
  const plan = TASKS['feature-extraction'].plan(model, undefined, {});
  await runTokenized(model, texts.slice(0, o.pack), plan, o);
  const cpu0 = process.cpuUsage();
  const { results, stats } = await runTokenized(model, texts, plan, o);
  const cpu = process.cpuUsage(cpu0);
  const first = results.slice(0, 50).map((r) => Array.from(r));
  // Wait until the message is written: a large one sent just before process.exit is lost.
  await new Promise((res) =>
    process.send(
      {
        texts: texts.length,
        windows: stats.windows,
        seconds: stats.seconds,
        textsPerSecond: texts.length / stats.seconds,
        cpu: (cpu.user + cpu.system) / 1e6,
        peakMB: Math.round(process.resourceUsage().maxRSS / 1024),
        dims: first[0].length,
        sample: first.flat(),
      },
      res,
    ),
  );
  model.close();
  await shutdownRuntime();
  process.exit(0);
}

// ---- a child: one runtime, prepared once per length, one forward per request ---------------------------

async function child(name, dir) {
  const { loadCheckpoint } = await import('../dist/model/checkpoint.js');
  const { Engine } = await import('../dist/run/engine.js');
  const { synthIds } = await import('../dist/numeric/prng.js');
  const { shutdownRuntime } = await import('../dist/runtime/shutdown.js');
  const { chooseRuntime, executorFor } = await import('../dist/run/runtime-choice.js');
  const ckpt = loadCheckpoint(dir);
  const c = ckpt.config;
  let forward;
  process.on('message', async (m) => {
    if (m.op === 'exit') {
      process.send({ peakMB: Math.round(process.resourceUsage().maxRSS / 1024) });
      await shutdownRuntime();
      process.exit(0);
    }
    const ids = [c.clsTokenId, ...synthIds(m.S - 2, `bench${m.S}`, 0, 50280), c.sepTokenId];
    const t0 = performance.now();
    if (m.op === 'prepare') {
      forward = await prepare(name, ckpt, m.S, { Engine, chooseRuntime, executorFor });
      // onnxruntime's first run allocates and plans; at 4,096 tokens and more it is the timed run itself.
      if (name !== 'engine' && m.S < 4096) await forward(ids);
      process.send({ seconds: (performance.now() - t0) / 1000 });
      return;
    }
    const cpu0 = process.cpuUsage();
    const out = await forward(ids);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    // CPU seconds of the whole process (every thread: onnxruntime's pool, our kernels' workers): what the
    // run costs whatever else the machine does.
    process.send({ seconds, cpu: (cpu.user + cpu.system) / 1e6, sample: Array.from(out.subarray(0, 4096)) });
  });
}

// Returns ids -> last hidden state in (S, C) order (row per token).
async function prepare(name, ckpt, S, { Engine, chooseRuntime, executorFor }) {
  const C = ckpt.config.hidden;
  const tokenMajor = (t) => {
    const out = new Float32Array(S * C); // (1, C, 1, S) -> (S, C)
    for (let ch = 0; ch < C; ch++) for (let s = 0; s < S; s++) out[s * C + ch] = t.data[ch * S + s];
    return out;
  };
  if (name === 'engine' || name === 'ort-ours') {
    const executor = name === 'engine' ? undefined : executorFor(await chooseRuntime({ runtime: 'ort' }));
    const engine = new Engine(ckpt, { head: 'none' }, executor);
    return async (ids) => tokenMajor((await engine.forward({ ids })).outputs.get('hidden_states'));
  }
  const ort = (await import('onnxruntime-node')).default;
  // The same session options as --runtime ort (threads included), so that only the graphs differ.
  const { ortSessionOptions } = await import('../dist/run/ort-executor.js');
  const session = await ort.InferenceSession.create(await plainModel(ckpt, S), ortSessionOptions('cpu')); // batch 1 of its batch axis
  return async (ids) => {
    const feeds = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, S]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(S).fill(1n), [1, S]),
    };
    return (await session.run(feeds)).last_hidden_state.data;
  };
}
