// The float32 engine's attention and gelu kernels at long lengths, with 1 thread and with the worker pool.
// Run after a build: `npm run build && node bench/attention.mjs [--keys 1024,8192] [--queries 512] [--repeat R]`
// Prints a Markdown table: the fused attention of one global query chunk (the einsum, add, softmax, einsum
// of src/model/model.ts's global layers: K [Sk, 64], Q [64, W], a per-key mask, V [64, Sk]) as GFLOP/s of its two
// products, and gelu over one MLP activation of ModernBERT-base (1,152 x Sk values) in the SIMD kernel and
// in the scalar loop it replaces (ns a value). Best of R passes (R = 1) of about 0.3 s each per cell.
import { availableParallelism, cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { attend } from '../dist/runtime/kernels/attention.js';
import { geluSimd } from '../dist/runtime/kernels/gelu.js';
import { erf } from '../dist/ops/defs/elementwise.js';
import { shutdownRuntime } from '../dist/runtime/shutdown.js';

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '1024,8192' },
    queries: { type: 'string', default: '512' },
    repeat: { type: 'string', default: '1' },
  },
});
const keys = values.keys.split(',').map(Number);
const W = Number(values.queries);
const repeat = Number(values.repeat);
const D = 64;
const threadCounts = [...new Set([1, availableParallelism()])];

const fill = (n) => {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.random() - 0.5;
  return x;
};

/** Best time in ms of `f` over runs filling ~0.3 s, after one warm-up run. */
async function best(f) {
  await f();
  let t = Infinity;
  const start = performance.now();
  for (let r = 0; r < 3 || (r < 100 && performance.now() - start < 300); r++) {
    const t0 = performance.now();
    await f();
    t = Math.min(t, performance.now() - t0);
  }
  return t;
}

function geluScalar(out, x) {
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    out[i] = 0.5 * v * (1 + erf(v * Math.SQRT1_2));
  }
}

const rows = [];
for (let pass = 0; pass < repeat; pass++) {
  for (const [i, Sk] of keys.entries()) {
    const [k, q, v, out] = [fill(Sk * D), fill(D * W), fill(D * Sk), new Float32Array(D * W)];
    const bias = new Float32Array(Sk);
    const row = (rows[i] ??= { Sk, attend: new Map(), simd: Infinity, scalar: Infinity });
    for (const t of threadCounts) {
      process.env.MODERNBERT_ANE_THREADS = String(t);
      const ms = await best(() => attend({ Sk, D, Dv: D, W, k, q, v, bias, out }));
      row.attend.set(t, Math.min(row.attend.get(t) ?? Infinity, ms));
    }
    const x = fill(1152 * Sk).map((u) => 8 * u);
    const y = new Float32Array(x.length);
    row.simd = Math.min(row.simd, await best(() => geluSimd(y, x)));
    row.scalar = Math.min(row.scalar, await best(() => geluScalar(y, x)));
  }
}
await shutdownRuntime();

console.log(
  `${cpus()[0]?.model ?? 'unknown CPU'}, ${availableParallelism()} cores, Node ${process.version}, load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}\n`,
);
console.log(
  `| keys x queries | ${threadCounts.map((t) => `attention, ${t} thread${t > 1 ? 's' : ''}: ms (GFLOP/s)`).join(' | ')} | gelu SIMD (ns a value) | gelu scalar loop (ns a value) |`,
);
console.log(`| --- | ${threadCounts.map(() => '---:').join(' | ')} | ---: | ---: |`);
for (const r of rows) {
  const flop = 4 * r.Sk * W * D;
  const cells = threadCounts.map((t) => `${r.attend.get(t).toFixed(1)} (${(flop / r.attend.get(t) / 1e6).toFixed(1)})`);
  const n = 1152 * r.Sk;
  console.log(
    `| ${r.Sk} x ${W} | ${cells.join(' | ')} | ${((r.simd / n) * 1e6).toFixed(1)} | ${((r.scalar / n) * 1e6).toFixed(1)} |`,
  );
}
