// Fidelity at length, for docs/FIDELITY.md "Fidelity at length": on synth-base and synth-base-massive, at
// each length, the plain float32 model against the folded and the Hadamard-folded model (l2 norm) in float16
// emulation: KL(float32 || fp16) and top-1 over P evenly spaced positions, and the max |residual| over every
// residual of every layer and token (float32 and emulated; Infinity once the stream leaves float16's range).
// Inputs: [CLS] + the fixtures' PRNG ids of tag `seq<length>` + [SEP], as the residual table there.
// Run after `npm run build` (it reads ../dist); one model per process, so two can run side by side:
//   node bench/fidelity-length.mjs --model synth-base --lengths 512,2048,8192 --out results.jsonl
//   node bench/fidelity-length.mjs --table results.jsonl     (the markdown table of every line so far)
// Each (model, length, weights, mode) appends one JSON line to --out as soon as it is measured.
// On a busy machine the passes of one length can run as separate processes: --weights plain (or folded,
// or hadamard) with --logits DIR saves each pass's logits there, and --join DIR --out results.jsonl then
// adds the KL of every emulated pass against its float32 reference.

import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseConfig } from '../dist/model/config.js';
import { CachedWeights, Engine } from '../dist/run/engine.js';
import { AgreementMeter } from '../dist/eval/compare.js';
import { shutdownRuntime } from '../dist/runtime/shutdown.js';
import { parseOverride } from '../dist/synth/overrides.js';
import { synthIds } from '../dist/numeric/prng.js';
import { SynthWeights, synthConfigJson } from '../dist/synth/synth.js';
import { prepareVariant } from '../dist/model/variants.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'synth-base' },
    lengths: { type: 'string', default: '512,2048,8192' },
    positions: { type: 'string', default: '64' },
    modes: { type: 'string', default: 'fp16' },
    out: { type: 'string' },
    table: { type: 'string' },
    weights: { type: 'string', default: 'plain,folded,hadamard' },
    logits: { type: 'string' },
    join: { type: 'string' },
  },
});

if (args.table) {
  printTable(
    readFileSync(args.table, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)),
  );
  process.exit(0);
}

if (args.join) {
  joinLogits(args.join);
  process.exit(0);
}

const t0 = performance.now();
const log = (msg) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(7)} s] ${msg}\n`);
const config = parseConfig(synthConfigJson('base'));
const overrides = args.model === 'synth-base-massive' ? [parseOverride('model.layers.2.mlp.Wo.weight[100]=2000')] : [];
const plain = { config, weights: new CachedWeights(new SynthWeights(config, overrides)) };
const L = config.numLayers;
const TAPS = Array.from({ length: L + 1 }, (_, i) => `residual.${i}`);
const P = Number(args.positions);

/** max |x| over the residual taps (NaN counts as infinite). */
function residualMax(taps) {
  let m = 0;
  for (const t of taps.values()) for (const v of t.data) m = Math.max(m, Number.isNaN(v) ? Infinity : Math.abs(v));
  return m;
}

for (const S of args.lengths.split(',').map(Number)) {
  const ids = [config.clsTokenId, ...synthIds(S - 2, `seq${S}`, 0, config.padTokenId - 3), config.sepTokenId];
  const positions = Array.from({ length: Math.min(P, S) }, (_, i) => Math.floor(((i + 0.5) * S) / Math.min(P, S)));
  const run = async (src, precision, norm) => {
    const t = performance.now();
    const cpu = process.cpuUsage();
    const r = await new Engine(src, { precision, norm }).forward({ ids }, { positions, taps: TAPS });
    const used = process.cpuUsage(cpu);
    const res = {
      logits: r.outputs.get('logits'),
      max: residualMax(r.taps),
      seconds: (performance.now() - t) / 1000,
      cpu_s: (used.user + used.system) / 1e6,
    };
    await shutdownRuntime();
    return res;
  };
  const which = args.weights.split(',');
  const save = (name, mode, logits) =>
    args.logits &&
    writeFileSync(
      join(args.logits, `${args.model}-${S}-${name}-${mode}.f32`),
      Buffer.from(logits.data.buffer, logits.data.byteOffset, logits.data.byteLength),
    );
  let ref;
  if (which.includes('plain')) {
    log(`${args.model} S=${S}: float32 reference`);
    ref = await run(plain, 'fp32', 'layernorm');
    save('plain', 'fp32', ref.logits);
    emit({
      model: args.model,
      S,
      weights: 'plain',
      mode: 'fp32',
      kl: 0,
      top1: 1,
      max: ref.max,
      seconds: ref.seconds,
      cpu_s: ref.cpu_s,
    });
  }
  for (const [name, spec] of [
    ['folded', { rotation: 'none' }],
    ['hadamard', { rotation: 'hadamard' }],
  ]) {
    if (!which.includes(name)) continue;
    const v = prepareVariant(plain, { fold: true, norm: 'l2', seed: 0, ...spec });
    const src = { ...v.source, weights: new CachedWeights(v.source.weights) };
    for (const mode of args.modes.split(',')) {
      log(`${args.model} S=${S}: ${name} ${mode}`);
      const r = await run(src, mode, v.norm);
      save(name, mode, r.logits);
      const a = ref
        ? agreement(ref.logits.data, r.logits.data, r.logits.shape[1], positions.length)
        : { kl: null, top1: null, non_finite: null };
      emit({
        model: args.model,
        S,
        weights: name,
        mode,
        kl: a.kl,
        top1: a.top1,
        non_finite: a.non_finite,
        max: r.max,
        seconds: r.seconds,
        cpu_s: r.cpu_s,
      });
    }
  }
}
log('done');

function agreement(ref, out, V, P) {
  const meter = new AgreementMeter();
  meter.add(ref, out, V, P, undefined);
  return meter.result();
}

/** Fills in the KL of lines measured without their reference in the same process, from the saved logits. */
function joinLogits(dir) {
  const rows = readFileSync(args.out, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const V = parseConfig(synthConfigJson('base')).vocabSize;
  const read = (f) => {
    const b = readFileSync(f);
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  };
  for (const r of rows) {
    if (r.kl !== null) continue;
    const refFile = join(dir, `${r.model}-${r.S}-plain-fp32.f32`);
    if (!existsSync(refFile)) continue;
    const ref = read(refFile);
    const a = agreement(ref, read(join(dir, `${r.model}-${r.S}-${r.weights}-${r.mode}.f32`)), V, ref.length / V);
    Object.assign(r, { kl: a.kl, top1: a.top1, non_finite: a.non_finite });
  }
  writeFileSync(args.out, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
}

function emit(row) {
  log(JSON.stringify(row));
  if (args.out) appendFileSync(args.out, `${JSON.stringify(row)}\n`);
}

function printTable(rows) {
  const fmtMax = (v) =>
    v === null || !Number.isFinite(v) ? 'inf' : v >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toPrecision(3);
  console.log(
    '| model | tokens | float32 residual max | folded fp16: KL (top-1), residual max | Hadamard fp16: KL (top-1), residual max | s per fp16 pass (CPU s) |',
  );
  console.log('| --- | ---: | ---: | --- | --- | ---: |');
  const key = (r) => `${r.model} ${r.S}`;
  for (const k of [...new Set(rows.map(key))]) {
    const at = rows.filter((r) => key(r) === k && (r.weights === 'plain' || r.kl !== null));
    const ref = at.find((r) => r.weights === 'plain');
    const cell = (w) => {
      const r = at.find((x) => x.weights === w && x.mode === 'fp16');
      if (!r) return 'not measured';
      const kl = r.non_finite ? `non-finite (${r.non_finite} tokens)` : r.kl.toExponential(2);
      return `${kl} (${(100 * r.top1).toFixed(1)}%), ${fmtMax(r.max)}`;
    };
    const secs = at
      .filter((r) => r.mode === 'fp16')
      .map((r) => `${r.seconds.toFixed(0)} (${r.cpu_s.toFixed(0)})`)
      .join(', ');
    console.log(
      `| ${at[0].model} | ${at[0].S.toLocaleString('en-US')} | ${ref ? fmtMax(ref.max) : ''} | ${cell('folded')} | ${cell('hadamard')} | ${secs} |`,
    );
  }
}
