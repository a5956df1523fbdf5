// Where onnxruntime spends a packed window's time: our graph on windows of short texts (5 to 60 tokens, or
// up to half the local window), laid out as `embed` lays them out, plainly packed and in blocks
// (model/blocked.ts), with onnxruntime's own profiler on (MODERNBERT_ANE_ORT_PROFILE). Prints milliseconds per
// ONNX op type and the costliest op shapes, per layout (docs/PERFORMANCE.md, "embed against
// sentence-transformers' way").
//
//   npm run build && node bench/ort-profile.mjs [--dir /tmp/sb] [--windows 6] [--texts 400] [--seed 1] [--top 8]
//
// Without --dir it runs the built-in models/mini-trained.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: join(root, 'models', 'mini-trained') },
    windows: { type: 'string', default: '6' },
    texts: { type: 'string', default: '400' },
    seed: { type: 'string', default: '1' },
    top: { type: 'string', default: '8' },
  },
});
const scratch = mkdtempSync(join(tmpdir(), 'mba-ort-profile-'));
process.env.MODERNBERT_ANE_ORT_PROFILE = join(scratch, 'ort');

const { loadCheckpoint } = await import('../dist/model/checkpoint.js');
const { Engine } = await import('../dist/run/engine.js');
const { chooseExecutor } = await import('../dist/run/executor-choice.js');
const { packBlocks, packTexts, DEFAULT_PACK, DEFAULT_WINDOW } = await import('../dist/model/pack-texts.js');
const { blockSize } = await import('../dist/model/blocked.js');
const { splitmix32 } = await import('../dist/numeric/prng.js');

const ckpt = loadCheckpoint(values.dir);
const c = ckpt.config;
const window = Math.min(DEFAULT_WINDOW, c.maxPositions);
const B = blockSize(c.localWindow);
const next = splitmix32(Number(values.seed));
const longest = Math.min(60, B);
const texts = Array.from({ length: Number(values.texts) }, () =>
  Array.from({ length: 5 + (next() % (longest - 4)) }, () => 5 + (next() % (c.vocabSize - 10))),
);
const layouts = {
  packed: { windows: packTexts(texts, window, DEFAULT_PACK, c.padTokenId), blocks: false },
  blocks: { windows: packBlocks(texts, Math.floor(window / B) * B, B, DEFAULT_PACK, c.padTokenId), blocks: true },
};
const { factory } = await chooseExecutor({ precision: 'fp32', runtime: 'ort' });

console.log(
  `${values.dir}: ${texts.length} texts of 5-${longest} tokens, ${values.windows} windows of ${window} tokens a layout (blocks of ${B}), onnxruntime ${factory ? 'cpu' : 'missing'}`,
);
try {
  for (const [name, layout] of Object.entries(layouts)) {
    const engine = new Engine(ckpt, { precision: 'fp32' }, factory);
    const windows = layout.windows.slice(0, Number(values.windows));
    const t0 = performance.now();
    for (const w of windows)
      await engine.forward(
        { ids: w.ids, segments: w.segments },
        { head: 'none', positions: [0], pack: DEFAULT_PACK, ...(layout.blocks ? { packBlocks: true } : {}) },
      );
    const seconds = (performance.now() - t0) / 1000;
    await engine.release(); // writes the profile
    const file = readdirSync(scratch).find((f) => f.endsWith('.json'));
    const events = JSON.parse(readFileSync(join(scratch, file), 'utf8'));
    rmSync(join(scratch, file));
    report(name, windows.length, seconds, events);
  }
} finally {
  ckpt.close();
  rmSync(scratch, { recursive: true, force: true });
}

/** Milliseconds by op type, then the costliest shapes, of one layout's profile. */
function report(name, windows, seconds, events) {
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
  const total = nodes.reduce((s, e) => s + e.dur, 0) / 1000;
  const sum = (key) => {
    const by = new Map();
    for (const e of nodes) {
      const k = key(e);
      const o = by.get(k) ?? { ms: 0, n: 0 };
      o.ms += e.dur / 1000;
      o.n++;
      by.set(k, o);
    }
    return [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, Number(values.top));
  };
  const shape = (e) => (e.args.input_type_shape ?? []).map((t) => JSON.stringify(Object.values(t)[0])).join(' x ');
  console.log(
    `\n${name}: ${windows} windows in ${seconds.toFixed(2)} s (first one included); ${total.toFixed(0)} ms in nodes\n`,
  );
  console.log('| op | ms | share | nodes |\n| --- | ---: | ---: | ---: |');
  for (const [op, o] of sum((e) => e.args.op_name))
    console.log(`| ${op} | ${o.ms.toFixed(0)} | ${((100 * o.ms) / total).toFixed(1)}% | ${o.n} |`);
  console.log('\n| op and input shapes | ms | nodes |\n| --- | ---: | ---: |');
  for (const [k, o] of sum((e) => `${e.args.op_name} ${shape(e)}`))
    console.log(`| ${k} | ${o.ms.toFixed(0)} | ${o.n} |`);
}
