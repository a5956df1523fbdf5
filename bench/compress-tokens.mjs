// Why a compressed form loses top-1 agreement at a given KL, behind docs/FIDELITY.md's note on int4 and
// synth-base-massive: per real token, the float32 reference's top token, its margin over the runner-up, and
// what the emulated compressed model (folded, fp16 emulation, l2 norm) ranks first. Run after a build:
//
//   npm run build && node bench/compress-tokens.mjs --model DIR [--random 32] [--forms fp16,int4,pal4]
//
// A form is a `convert --compress` mode at iOS 18, optionally with `:GLOB` tensors kept at float16
// (e.g. int4:model.embeddings.tok_embeddings.weight); 'fp16' is uncompressed.

import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    random: { type: 'string', default: '32' },
    forms: { type: 'string', default: 'fp16,int4,pal4' },
  },
});
if (!values.model) throw new Error('--model DIR is required');
const dist = (p) => import(pathToFileURL(join(fileURLToPath(new URL('..', import.meta.url)), 'dist', p)).href);
const { loadCheckpoint } = await dist('model/checkpoint.js');
const { resolveInputs } = await dist('eval/inputs.js');
const { float32Pass, headColumns, realPositions } = await dist('learn/stream-rows.js');
const { Engine } = await dist('run/engine.js');
const { foldWeights } = await dist('rotation/fold.js');
const { IdentityRotation } = await dist('rotation/rotation.js');
const { CompressedWeights } = await dist('compress/compressed-weights.js');
const { compressSpec } = await dist('compress/spec.js');
const { shutdownRuntime } = await dist('runtime/shutdown.js');

const ck = loadCheckpoint(values.model);
const c = ck.config;
const seqs = resolveInputs(
  { random: Number(values.random), seed: 0 },
  {
    vocabSize: c.vocabSize,
    maxLen: c.maxPositions,
    clsTokenId: c.clsTokenId,
    sepTokenId: c.sepTokenId,
    special: [c.padTokenId],
  },
);
const src = { config: c, weights: ck.weights, embedding: ck.embedding };
const reference = (await float32Pass(src, seqs, 16)).outputs;
await shutdownRuntime();

/** One token: KL(ref ‖ emulated), the two top tokens and the reference's margin (logits). */
function token(ref, out, V, P, p) {
  let [ri, r2, ei] = [0, -Infinity, 0];
  for (let v = 1; v < V; v++) {
    const r = ref[v * P + p];
    if (r > ref[ri * P + p]) [r2, ri] = [ref[ri * P + p], v];
    else if (r > r2) r2 = r;
    if (out[v * P + p] > out[ei * P + p]) ei = v;
  }
  const lse = (a) => {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, a[v * P + p]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(a[v * P + p] - m);
    return m + Math.log(s);
  };
  const [lr, le] = [lse(ref), lse(out)];
  let kl = 0;
  for (let v = 0; v < V; v++) kl += Math.exp(ref[v * P + p] - lr) * (ref[v * P + p] - lr - (out[v * P + p] - le));
  return {
    kl,
    ri,
    ei,
    margin: ref[ri * P + p] - r2,
    pTop: Math.exp(ref[ri * P + p] - lr),
    shiftRef: out[ri * P + p] - ref[ri * P + p] - (le - lr),
    shiftEmu: out[ei * P + p] - ref[ei * P + p] - (le - lr),
  };
}

const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const fmt = (x) => x.toExponential(2);
console.log(
  `${values.model}: ${values.random} random token ids, fp16 emulation, folded, target iOS18; ${cpus().length} cores, load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
console.log(
  '| weights | KL | top-1 | distinct reference top tokens (count) | emulated top tokens (count) | median margin | median p(top) | median log-prob shift of the reference top / of the emulated top |',
);
console.log('| --- | ---: | ---: | --- | --- | ---: | ---: | --- |');
for (const form of values.forms.split(',')) {
  const [mode, ...keep] = form.split(':');
  let w = foldWeights(ck.weights, c, new IdentityRotation(c.hidden));
  if (mode !== 'fp16') w = new CompressedWeights(w, compressSpec({ mode, target: 'iOS18', weights: 'fp16', keep }));
  const engine = new Engine({ ...src, weights: w }, { precision: 'fp16', norm: 'l2' });
  const rows = [];
  for (const [i, s] of seqs.entries()) {
    const out = headColumns((await engine.forward(s)).outputs);
    for (const p of realPositions(s)) rows.push(token(reference[i].data, out.data, out.V, out.P, p));
  }
  await shutdownRuntime();
  const counts = (key) =>
    [...rows.reduce((m, r) => m.set(r[key], (m.get(r[key]) ?? 0) + 1), new Map())]
      .sort((a, b) => b[1] - a[1])
      .map(([t, n]) => `${t} (${n})`)
      .join(', ');
  const kl = rows.reduce((a, r) => a + r.kl, 0) / rows.length;
  const top1 = rows.filter((r) => r.ri === r.ei).length / rows.length;
  console.log(
    `| ${form} | ${fmt(kl)} | ${(100 * top1).toFixed(1)}% | ${counts('ri')} | ${counts('ei')} | ${fmt(med(rows.map((r) => r.margin)))} | ${fmt(med(rows.map((r) => r.pTop)))} | ${med(rows.map((r) => r.shiftRef)).toFixed(3)} / ${med(rows.map((r) => r.shiftEmu)).toFixed(3)} |`,
  );
}
ck.close?.();
