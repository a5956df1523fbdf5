// GEMM throughput on ModernBERT-base-sized products, with 1 thread (inline) and with the worker pool.
// Run after a build: `npm run build && node bench/gemm.mjs [--repeat R] [S ...]` (default S = 128 512 1024).
// Prints a Markdown table of each product's best time over R passes of the whole table (R = 1): on a
// shared machine another process can take a core for seconds, and passes spread the products over time.
// Operands are allocF32 arrays, so the pool works on them in place.
import { availableParallelism, cpus } from 'node:os';
import { allocF32, gemm, shutdownKernels } from '../dist/runtime/kernels/index.js';

const argv = process.argv.slice(2);
const repeatAt = argv.indexOf('--repeat');
const repeat = repeatAt >= 0 ? Number(argv.splice(repeatAt, 2)[1]) : 1;
const seqs = argv.length > 0 ? argv.map(Number) : [128, 512, 1024];
const threadCounts = [...new Set([1, 2, availableParallelism()])];

// Products as the interpreter issues them: a 1x1 convolution is C[Cout, S] = W[Cout, Cin] · X[Cin, S].
const shapes = [];
for (const S of seqs) {
  shapes.push(
    { name: `Wqkv    S=${S}`, M: 2304, N: S, K: 768 },
    { name: `Wo      S=${S}`, M: 768, N: S, K: 768 },
    { name: `MLP Wi  S=${S}`, M: 2304, N: S, K: 768 },
    { name: `MLP Wo  S=${S}`, M: 768, N: S, K: 1152 },
    { name: `decoder S=${S}`, M: 50368, N: S, K: 768 },
    { name: `QK^T/h  S=${S}`, M: S, N: S, K: 64 },
    { name: `PV/h    S=${S}`, M: 64, N: S, K: S },
  );
}
shapes.push({ name: 'A·B 1024x768 · 768x2304', M: 1024, N: 2304, K: 768 });

const fill = (x) => {
  for (let i = 0; i < x.length; i++) x[i] = Math.random() - 0.5;
  return x;
};

/** Best time in ms over runs filling ~0.3 s, after one warm-up run. */
async function time(args) {
  await gemm(args);
  let best = Infinity;
  const start = performance.now();
  for (let r = 0; r < 3 || (r < 50 && performance.now() - start < 300); r++) {
    const t0 = performance.now();
    await gemm(args);
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

const best = shapes.map(() => new Map(threadCounts.map((t) => [t, Infinity])));
for (let pass = 0; pass < repeat; pass++) {
  for (const [i, s] of shapes.entries()) {
    const a = fill(allocF32(s.M * s.K));
    const b = fill(allocF32(s.K * s.N));
    const c = allocF32(s.M * s.N);
    for (const t of threadCounts) {
      process.env.MODERNBERT_ANE_THREADS = String(t);
      best[i].set(t, Math.min(best[i].get(t), await time({ M: s.M, N: s.N, K: s.K, a, b, c })));
    }
  }
}
await shutdownKernels();

console.log(
  `Node ${process.version}, ${cpus()[0]?.model ?? 'cpu'}, ${availableParallelism()} threads available, best of ${repeat} pass(es)`,
);
console.log(`| product (M x N x K) | ${threadCounts.map((t) => `ms (${t}T) | GFLOP/s (${t}T)`).join(' | ')} |`);
console.log(`|---|${threadCounts.map(() => '---:|---:').join('|')}|`);
const totals = new Map(threadCounts.map((t) => [t, { flop: 0, ms: 0 }]));
for (const [i, s] of shapes.entries()) {
  const flop = 2 * s.M * s.N * s.K;
  const cells = threadCounts.flatMap((t) => {
    const ms = best[i].get(t);
    totals.get(t).flop += flop;
    totals.get(t).ms += ms;
    return [ms.toFixed(2), (flop / ms / 1e6).toFixed(1)];
  });
  console.log(`| ${s.name} (${s.M} x ${s.N} x ${s.K}) | ${cells.join(' | ')} |`);
}
const overall = threadCounts.map((t) => `${t}T ${(totals.get(t).flop / totals.get(t).ms / 1e6).toFixed(1)}`);
console.log(`\nAll products together (total flops / total time), GFLOP/s: ${overall.join(', ')}`);
