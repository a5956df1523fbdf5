// Times norm folding + rotation of a ModernBERT-base-sized model (random weights): every output tensor is
// computed once, as conversion does. Run after `npm run build`:
//   node bench/fold.mjs [--rotation hadamard|identity|dense] [--repeat 3] [--layers 22] [--hidden 768] [--intermediate 1152] [--vocab 50368]
// Prints each run's wall seconds (the first is cold: fresh memory, unoptimized code, as in a real conversion)
// and this process's CPU seconds (user; system, which is mostly page faults on fresh memory) and page faults:
// a shared, busy machine inflates CPU time less than wall time.

import { parseArgs } from 'node:util';
import { DenseRotation, foldWeights, HadamardRotation, IdentityRotation } from '../dist/rotation/index.js';
import { MemoryWeights } from '../dist/io/weights.js';

const { values } = parseArgs({
  options: {
    rotation: { type: 'string', default: 'hadamard' },
    repeat: { type: 'string', default: '3' },
    layers: { type: 'string', default: '22' },
    hidden: { type: 'string', default: '768' },
    intermediate: { type: 'string', default: '1152' },
    vocab: { type: 'string', default: '50368' },
  },
});
const layers = Number(values.layers);
const n = Number(values.hidden);
const inter = Number(values.intermediate);
const vocab = Number(values.vocab);

/** Uniform random weights from a cheap xorshift (the values do not matter, only the shapes). */
let state = 0x12345678;
function tensor(shape, base, amp) {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    data[i] = base + ((state >>> 0) / 4294967296 - 0.5) * 2 * amp;
  }
  return { shape, data };
}

const weights = new Map();
weights.set('model.embeddings.tok_embeddings.weight', tensor([vocab, n], 0, 0.035));
weights.set('model.embeddings.norm.weight', tensor([n], 1, 0.1));
for (let i = 0; i < layers; i++) {
  const p = `model.layers.${i}`;
  if (i > 0) weights.set(`${p}.attn_norm.weight`, tensor([n], 1, 0.1));
  weights.set(`${p}.attn.Wqkv.weight`, tensor([3 * n, n], 0, 0.035));
  weights.set(`${p}.attn.Wo.weight`, tensor([n, n], 0, 0.035));
  weights.set(`${p}.mlp_norm.weight`, tensor([n], 1, 0.1));
  weights.set(`${p}.mlp.Wi.weight`, tensor([2 * inter, n], 0, 0.035));
  weights.set(`${p}.mlp.Wo.weight`, tensor([n, inter], 0, 0.035));
}
weights.set('model.final_norm.weight', tensor([n], 1, 0.1));
weights.set('decoder.weight', weights.get('model.embeddings.tok_embeddings.weight'));

function makeRotation(kind) {
  if (kind === 'hadamard') return new HadamardRotation(n, 0);
  if (kind === 'identity') return new IdentityRotation(n);
  if (kind === 'dense') return new DenseRotation(n, new HadamardRotation(n, 0).rightMul(identity(n), n, n));
  throw new Error(`unknown rotation ${kind}`);
}

function identity(size) {
  const m = new Float32Array(size * size);
  for (let i = 0; i < size; i++) m[i * size + i] = 1;
  return m;
}

/** Folds once, computing every output tensor; returns wall and CPU seconds, the values produced and the slowest tensor. */
function foldAll() {
  const t0 = performance.now();
  const usage0 = process.resourceUsage();
  const folded = foldWeights(
    new MemoryWeights(weights),
    { numLayers: layers, hidden: n },
    makeRotation(values.rotation),
  );
  let count = 0;
  let slowest = { name: '', ms: 0 };
  for (const name of folded.names()) {
    const t = performance.now();
    count += folded.get(name).data.length;
    const ms = performance.now() - t;
    if (ms > slowest.ms) slowest = { name, ms };
  }
  const usage = process.resourceUsage();
  return {
    seconds: (performance.now() - t0) / 1000,
    user: (usage.userCPUTime - usage0.userCPUTime) / 1e6,
    system: (usage.systemCPUTime - usage0.systemCPUTime) / 1e6,
    faults: usage.minorPageFault - usage0.minorPageFault,
    count,
    slowest,
  };
}

const runs = Array.from({ length: Number(values.repeat) }, foldAll);
const best = runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
console.log(
  `fold + ${values.rotation} rotation, ${layers} layers, hidden ${n}, intermediate ${inter}, vocab ${vocab}, ` +
    `${(best.count / 1e6).toFixed(1)}M values: best ${best.seconds.toFixed(2)} s wall\n` +
    runs
      .map(
        (r, i) =>
          `  run ${i + 1}: ${r.seconds.toFixed(2)} s wall, ${r.user.toFixed(2)} s user + ${r.system.toFixed(2)} s system CPU, ` +
          `${(r.faults / 1000).toFixed(0)}k page faults\n`,
      )
      .join('') +
    `  slowest tensor of the best run: ${best.slowest.name}, ${(best.slowest.ms / 1000).toFixed(2)} s`,
);
