// Batch embeddings, packed against one text per window: 2,000 texts of 5 to 60 tokens (token ids from the
// fixtures' seeded PRNG, splitmix32), window 512, on the CPU engine. Prints forward passes, wall time,
// tokens/s and window fill of both, and the largest difference between their embeddings. Run after a build:
//
//   npm run build && node bench/embed.mjs [--model DIR | --synth-base] [--texts 2000] [--baseline N]
//                                         [--window 512] [--pack 64] [--seed 9] [--precision fp32]
//
// One text per window is the same packed graph with K = 1, every window padded to 512 tokens (a static
// shape, as on the Neural Engine). Each of its passes costs the same, so --baseline N runs it on the first
// N texts only and scales its wall time to all of them (said in the output). --synth-base writes synth-base
// (~600 MB) to a temporary folder first (and removes it after) and embeds with mean pooling.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openModel } from '../dist/run/load.js';
import { runTokenized } from '../dist/tasks/batch.js';
import { TASKS } from '../dist/tasks/task-table.js';
import { benchTexts } from './texts.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    'synth-base': { type: 'boolean', default: false },
    texts: { type: 'string', default: '2000' },
    baseline: { type: 'string' },
    window: { type: 'string', default: '512' },
    pack: { type: 'string', default: '64' },
    seed: { type: 'string', default: '9' },
    precision: { type: 'string', default: 'fp32' },
  },
});
const N = Number(values.texts);
const B = Math.min(N, Number(values.baseline ?? N));
const window = Number(values.window);

let tmp;
let dir = values.model ?? join(ROOT, 'models', 'mini-trained');
if (values['synth-base']) {
  tmp = mkdtempSync(join(tmpdir(), 'mbane-bench-embed-'));
  dir = join(tmp, 'synth-base');
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'modernbert-ane.js'), 'synth', 'base', '--out', dir], {
    stdio: 'inherit',
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

try {
  const model = await openModel(dir, { precision: values.precision });
  // Texts: [CLS], 3..58 random ids, [SEP]: 5 to 60 tokens, reproducible from the seed.
  const texts = benchTexts(N, Number(values.seed), model.ids);
  const plan = TASKS['feature-extraction'].plan(model, undefined, {});
  const tokens = texts.reduce((s, t) => s + t.length, 0);
  console.log(
    `${dir}: ${N} texts, ${tokens} tokens (${(tokens / N).toFixed(1)} per text), window ${window}, ${values.precision}; ${cpus().length} cores, load ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );

  const run = (list, pack) =>
    runTokenized(
      model,
      list.map((ids) => ({ text: '', ids })),
      plan,
      { window, pack },
    );
  const packed = await run(texts, Number(values.pack));
  const one = await run(texts.slice(0, B), 1);
  const scale = N / B;
  let diff = 0;
  for (let i = 0; i < B; i++) {
    const a = packed.results[i];
    const b = one.results[i];
    for (let j = 0; j < a.length; j++) diff = Math.max(diff, Math.abs(a[j] - b[j]));
  }
  // And against each text run alone, unpadded, by the unpacked graph (attention_mask, no segment ids).
  let aloneDiff = 0;
  const A = Math.min(B, 50);
  for (let i = 0; i < A; i++) {
    const e = (await model.runner.forward({ ids: texts[i] }, { head: 'embedding' })).outputs.get('embedding').data;
    const a = packed.results[i];
    for (let j = 0; j < a.length; j++) aloneDiff = Math.max(aloneDiff, Math.abs(a[j] - e[j]));
  }
  const row = (name, s, passes, seconds) =>
    `| ${name} | ${passes} | ${seconds.toFixed(1)} | ${(tokens / seconds).toFixed(0)} | ${(100 * s.fill).toFixed(1)}% |`;
  console.log('| mode | forward passes | wall s | tokens/s | window fill |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  console.log(
    row(`packed (up to ${values.pack} per window)`, packed.stats, packed.stats.windows, packed.stats.seconds),
  );
  console.log(
    row(
      `one text per window${B < N ? ` (${B} run, x${scale.toFixed(1)})` : ''}`,
      one.stats,
      N,
      one.stats.seconds * scale,
    ),
  );
  console.log(
    `packed: ${(N / packed.stats.windows).toFixed(1)}x fewer passes, ${((one.stats.seconds * scale) / packed.stats.seconds).toFixed(1)}x less wall time; max |packed - one per window| over ${B} embeddings: ${diff.toExponential(2)}, max |packed - alone, unpadded| over ${A}: ${aloneDiff.toExponential(2)}; load after ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  model.close();
} finally {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}
