// Float32 forward pass of synth-base (ModernBERT-base: 22 layers, hidden 768, vocab 50368) loaded from
// disk: load time, then seconds, tokens/s, GFLOP and GFLOP/s of the matrix work, and peak RSS against the
// float32 weight bytes, at 128, 512 and 1024 tokens. Run after a build:
//
//   npm run build && node bench/forward.mjs [--dir DIR] [--lengths 128,512,1024] [--runs 3] [--positions K]
//
// Without --dir it writes synth-base (config.json + float32 model.safetensors, ~600 MB) to a temporary
// folder first (and removes it after). Each length runs in a fresh child process, so the peak RSS and the
// load time are that length's alone: open the checkpoint (header and shape checks), read every tensor from
// disk, one warm-up forward (builds and prepares the graph), then --runs timed forwards.
// The forward is the full masked-LM forward, logits at every token, as transformers computes it; with
// --positions K the head runs only at K positions, as predict and verify do.
// GFLOP are counted from the graph the engine runs: 2 x (output elements) x (reduction length) for every
// conv, einsum, matmul and linear op, with the shapes of its operands: the work of the graph as it is, banded
// local attention (each block of window/2 queries against 3 blocks of keys) and all-pairs global attention.
// Long inputs: --lengths 1024,2048,4096,8192 --runs 1 --positions 15 (docs/PERFORMANCE.md, "Long inputs").
// Threads: the GEMM kernels use env MODERNBERT_ANE_THREADS (default: all cores).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    lengths: { type: 'string', default: '128,512,1024' },
    runs: { type: 'string', default: '3' },
    positions: { type: 'string' },
    child: { type: 'string' }, // internal: the length this child process measures
    keep: { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
const positions = values.positions === undefined ? undefined : Number(values.positions);

if (values.child !== undefined) await child(values.dir, Number(values.child));
else await parent();

/** Counts the FLOPs of the matrix ops of a graph from its operands' static shapes. */
function matrixFlops(graph) {
  const shapes = new Map();
  for (const v of graph.inputs) shapes.set(v.name, v.type.shape);
  for (const [name, c] of graph.consts) shapes.set(name, c.type.shape);
  for (const op of graph.ops) for (const o of op.outputs) shapes.set(o.name, o.type.shape);
  const shape = (arg) => {
    const s = shapes.get(arg);
    if (!s || s.some((d) => typeof d !== 'number')) throw new Error(`no static shape for ${arg}`);
    return s;
  };
  const numel = (s) => s.reduce((a, b) => a * b, 1);
  const byKind = { conv: 0, einsum: 0, matmul: 0, linear: 0 };
  for (const op of graph.ops) {
    const out = op.outputs[0] && shape(op.outputs[0].name);
    if (op.op === 'conv') {
      const w = shape(op.inputs.weight); // [Cout, Cin / groups, kh, kw]
      byKind.conv += 2 * numel(out) * w[1] * w[2] * w[3];
    } else if (op.op === 'einsum') {
      const eq = op.inputs.equation.value;
      const [lhs, rhs] = eq.split('->');
      const size = new Map();
      lhs.split(',').forEach((term, i) => [...term].forEach((ch, d) => size.set(ch, shape(op.inputs.values[i])[d])));
      let k = 1;
      for (const [ch, n] of size) if (!rhs.includes(ch)) k *= n;
      byKind.einsum += 2 * numel(out) * k;
    } else if (op.op === 'matmul') {
      const x = shape(op.inputs.x);
      const tx = op.inputs.transpose_x?.value?.[0] === true;
      byKind.matmul += 2 * numel(out) * (tx ? x.at(-2) : x.at(-1));
    } else if (op.op === 'linear') {
      byKind.linear += 2 * numel(out) * shape(op.inputs.x).at(-1);
    }
  }
  return { total: Object.values(byKind).reduce((a, b) => a + b, 0), byKind };
}

async function child(dir, S) {
  const { loadCheckpoint } = await import('../dist/model/checkpoint.js');
  const { CachedWeights, Engine } = await import('../dist/run/engine.js');
  const { synthIds } = await import('../dist/numeric/prng.js');
  const { shutdownRuntime } = await import('../dist/runtime/shutdown.js');
  const { kernelThreads } = await import('../dist/runtime/kernels/index.js');

  const rssMb = () => process.memoryUsage().rss / 1e6;
  let t = performance.now();
  const ckpt = loadCheckpoint(dir);
  const openS = (performance.now() - t) / 1000;

  // Read every stored tensor once (the tied decoder shares the embeddings' copy), as the first forward would.
  t = performance.now();
  const weights = new CachedWeights(ckpt.weights);
  let weightBytes = 0;
  const seen = new Set();
  for (const name of ckpt.weights.names()) {
    const stored = ckpt.weights.storedName?.(name) ?? name;
    const tensor = weights.get(name);
    if (!seen.has(stored)) weightBytes += 4 * tensor.data.length;
    seen.add(stored);
  }
  const readS = (performance.now() - t) / 1000;
  const rssLoaded = rssMb();

  const c = ckpt.config;
  const engine = new Engine({ ...ckpt, weights });
  const ids = [c.clsTokenId, ...synthIds(S - 2, `bench${S}`, 0, 50280), c.sepTokenId];
  const opts =
    positions === undefined
      ? {}
      : { positions: Array.from({ length: positions }, (_, i) => Math.floor(((i + 0.5) * S) / positions)) };

  t = performance.now();
  // Only the shape is kept: holding the logits (206 MB at 1024 tokens) would count against the peak.
  const logitsShape = (await engine.forward({ ids }, opts)).outputs.get('logits').shape;
  const warmS = (performance.now() - t) / 1000;

  const times = [];
  const cpu0 = process.cpuUsage();
  for (let r = 0; r < runs; r++) {
    t = performance.now();
    await engine.forward({ ids }, opts);
    times.push((performance.now() - t) / 1000);
  }
  const cpu = process.cpuUsage(cpu0);
  const flops = matrixFlops(engine.graph(S, opts));
  ckpt.close();
  await shutdownRuntime();
  const result = {
    S,
    threads: kernelThreads(),
    open_s: openS,
    read_s: readS,
    warm_s: warmS,
    runs_s: times,
    logits_shape: logitsShape,
    gflop: flops.total / 1e9,
    gflop_by_kind: Object.fromEntries(Object.entries(flops.byKind).map(([k, v]) => [k, v / 1e9])),
    weight_bytes: weightBytes,
    rss_after_load_mb: rssLoaded,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
    cpu_user_s: cpu.user / 1e6,
    cpu_system_s: cpu.system / 1e6,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function parent() {
  const lengths = values.lengths.split(',').map(Number);
  let dir = values.dir;
  let made;
  if (dir === undefined) {
    const { writeSynthCheckpoint } = await import('../dist/synth/synth.js');
    made = mkdtempSync(join(tmpdir(), 'mbane-bench-forward-'));
    dir = made;
    const t = performance.now();
    await writeSynthCheckpoint('base', dir);
    process.stderr.write(`wrote synth-base to ${dir} in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  }
  const loadStart = loadavg()[0].toFixed(2);
  const self = fileURLToPath(import.meta.url);
  const results = [];
  try {
    for (const S of lengths) {
      const args = [self, '--child', String(S), '--dir', dir, '--runs', String(runs)];
      if (positions !== undefined) args.push('--positions', String(positions));
      const r = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      if (r.status !== 0) throw new Error(`the ${S}-token run failed (exit ${r.status})`);
      const res = JSON.parse(r.stdout.trim().split('\n').at(-1));
      results.push(res);
      process.stderr.write(`S=${S}: ${JSON.stringify(res)}\n`);
    }
  } finally {
    if (made && !values.keep) rmSync(made, { recursive: true, force: true });
  }

  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const f = (x, d) => x.toFixed(d);
  console.log(
    `synth-base float32 forward (${positions === undefined ? 'logits at every token' : `head at ${positions} positions`}); ${cpus()[0]?.model ?? 'cpu'}, ${availableParallelism()} cores, ` +
      `${results[0]?.threads} GEMM threads, Node ${process.version}, ${runs} timed runs after a warm-up; load average ${loadStart} at the start, ${loadavg()[0].toFixed(2)} at the end`,
  );
  console.log(`float32 weights: ${f(results[0].weight_bytes / 1e6, 0)} MB\n`);
  console.log(
    '| tokens | load: open + read (s) | warm-up (s) | best (s) | median (s) | CPU s per run | tokens/s | GFLOP (conv / einsum / matmul) | GFLOP/s (best) | peak RSS (MB) | RSS / f32 weights |',
  );
  console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of results) {
    const best = Math.min(...r.runs_s);
    const k = r.gflop_by_kind;
    console.log(
      `| ${r.S} | ${f(r.open_s, 3)} + ${f(r.read_s, 2)} | ${f(r.warm_s, 2)} | ${f(best, 2)} | ${f(med(r.runs_s), 2)} | ${f((r.cpu_user_s + r.cpu_system_s) / r.runs_s.length, 2)} | ${f(r.S / best, 0)} | ${f(r.gflop, 1)} (${f(k.conv, 1)} / ${f(k.einsum, 1)} / ${f(k.matmul, 3)}) | ${f(r.gflop / best, 1)} | ${f(r.peak_rss_bytes / 1e6, 0)} | ${f(r.peak_rss_bytes / r.weight_bytes, 2)} |`,
    );
  }
  goals(results, med);
}

/** The issue's goals (issue 8) read from the results: time ratio of the longest to the 1,024-token run, GFLOP/s, RSS. */
function goals(results, med) {
  const at = (S) => results.find((r) => r.S === S);
  const cpu = (r) => (r.cpu_user_s + r.cpu_system_s) / r.runs_s.length;
  const f = (x, d) => x.toFixed(d);
  console.log('\nGoals (issue 8; median wall time of the timed runs, GFLOP of the banded graph):');
  const [short, long] = [at(1024), results.reduce((a, b) => (b.S > a.S ? b : a))];
  if (short && long.S > short.S) {
    const ratio = med(long.runs_s) / med(short.runs_s);
    console.log(
      `- time(${long.S}) / time(1024) = ${f(ratio, 1)} (goal <= 18; CPU seconds: ${f(cpu(long) / cpu(short), 1)})`,
    );
  }
  for (const r of results) {
    const gs = r.gflop / med(r.runs_s);
    console.log(
      `- ${r.S} tokens: ${f(gs, 1)} GFLOP/s ${gs >= 30 ? 'meets' : 'misses'} the goal of >= 30 (${f(r.gflop / cpu(r), 1)} GFLOP per CPU second)`,
    );
  }
  const rss = long.peak_rss_bytes / long.weight_bytes;
  console.log(
    `- peak RSS at ${long.S} tokens: ${f(rss, 2)}x the float32 weights (goal <= 1.6: ${rss <= 1.6 ? 'met' : 'not met'})`,
  );
}
