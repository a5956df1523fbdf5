// The float16 fidelity study behind docs/FIDELITY.md: for mini-trained, synth-base and synth-base-massive,
// every weight form (plain LayerNorm, folded, Hadamard, learned; l2 and x*x norms) in every float16
// emulation mode, against the plain float32 model: KL over real tokens, top-1 agreement, max |residual|.
// Also: the learned rotations' reports; synth-base-mild (a channel near 350, past what the x*x norm squares)
// in the x*x form, where folding overflows and a learned rotation has room; the proxy-versus-KL study; and
// a PrefixQuant-style experiment.
// Run after `npm run build` (it reads ../dist):
//   node bench/fidelity.mjs [--sections table,mild,proxy,prefix] [--learn-seconds 25] [--out docs/FIDELITY.md]
// Each section replaces its block between <!-- fidelity:NAME --> and <!-- /fidelity:NAME --> in --out
// (the prose around the blocks is kept), and prints its timings.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseConfig } from '../dist/model/config.js';
import { additiveMask, CachedWeights, Engine } from '../dist/run/engine.js';
import { AgreementMeter } from '../dist/eval/compare.js';
import { resolveInputs } from '../dist/eval/inputs.js';
import { opArgs } from '../dist/graph/interpreter.js';
import { loadCheckpoint } from '../dist/model/checkpoint.js';
import { buildModel } from '../dist/model/model.js';
import { roundToF16 } from '../dist/numeric/fp16.js';
import { agreementOf } from '../dist/learn/emulated-agreement.js';
import { fp16Proxy, prepareProxy } from '../dist/learn/fp16-proxy.js';
import { DenseRotation, HadamardRotation } from '../dist/rotation/index.js';
import { learnRotation, optimise } from '../dist/learn/learned.js';
import { readerSensitivity } from '../dist/learn/stream-readers.js';
import { identityMatrix } from '../dist/learn/stiefel.js';
import { float32Pass } from '../dist/learn/stream-rows.js';
import { numericsFor } from '../dist/runtime/numerics.js';
import { opDef } from '../dist/ops/index.js';
import { shutdownRuntime } from '../dist/runtime/shutdown.js';
import { parseOverride } from '../dist/synth/overrides.js';
import { SynthWeights, synthConfigJson } from '../dist/synth/synth.js';
import { loadTokenizer } from '../dist/tokenizer/tokenizer.js';
import { prepareVariant } from '../dist/model/variants.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    sections: { type: 'string', default: 'table,mild,proxy,prefix' },
    'learn-seconds': { type: 'string', default: '25' },
    out: { type: 'string', default: join(root, 'docs', 'FIDELITY.md') },
  },
});
const sections = new Set(args.sections.split(','));
const LEARN_SECONDS = Number(args['learn-seconds']);
const MODES = ['fp16', 'fp16-fused', 'fp16-acc16'];
const FX = join(root, 'test', 'fixtures');
/** synth-base-mild: row 100 of layer 2's mlp.Wo set to this, so channel 100 peaks near 350: past what x*x squares. */
const MILD = 36;
const t0 = performance.now();
const since = (t) => ((performance.now() - t) / 1000).toFixed(1);
const log = (msg) => process.stderr.write(`[${since(t0).padStart(6)} s] ${msg}\n`);

// ---- models and inputs ------------------------------------------------------------------------------

/** A model: its source (weights cached once), evaluation cases, and calibration for rotation learning. */
async function openModel(name) {
  if (name === 'mini-trained') {
    const ck = loadCheckpoint(join(root, 'models', 'mini-trained'));
    const src = { config: ck.config, weights: new CachedWeights(ck.weights) };
    const tok = await loadTokenizer(join(root, 'models', 'mini-trained'));
    const ids = idsOf(src.config, tok.maskTokenId);
    const builtin = resolveInputs({}, ids, tok);
    const prompts = resolveInputs({ golden: join(FX, 'mini-trained', 'golden.safetensors') }, ids).filter((s) =>
      s.label.startsWith('prompts['),
    );
    // convert's default calibration for a model with a tokenizer: the built-in sentences.
    return {
      name,
      src,
      cases: [
        { name: 'built-in sentences', seqs: builtin },
        { name: 'golden prompts', seqs: prompts },
      ],
      calibration: builtin,
      calibrationName: 'the built-in sentences (the first case: in-sample)',
    };
  }
  const config = parseConfig(synthConfigJson('base'));
  const overrides =
    name === 'synth-base'
      ? []
      : [parseOverride(`model.layers.2.mlp.Wo.weight[100]=${name === 'synth-base-massive' ? 2000 : MILD}`)];
  const src = { config, weights: new CachedWeights(new SynthWeights(config, overrides)) };
  const ids = idsOf(config);
  // synth-base-mild has no golden of its own: the synth goldens share their input ids.
  const golden = resolveInputs(
    { golden: join(FX, name === 'synth-base-mild' ? 'synth-base' : name, 'golden.safetensors') },
    ids,
  );
  const pick = (label) => ({ name: label.replace('[0]', ''), seqs: golden.filter((s) => s.label === label) });
  // convert's default calibration for a model without a tokenizer: 128 random ids, seed 0 (held out).
  return {
    name,
    src,
    cases: [pick('seed_example[0]'), pick('len300[0]')],
    calibration: resolveInputs({ random: 128, seed: 0 }, ids),
    calibrationName: '128 random token ids, seed 0 (held out)',
  };
}

function idsOf(c, maskId = -1) {
  return {
    vocabSize: c.vocabSize,
    maxLen: c.maxPositions,
    clsTokenId: c.clsTokenId,
    sepTokenId: c.sepTokenId,
    special: [c.padTokenId, maskId],
  };
}

/** How a table names a weight form. */
function formName(v) {
  const norm = v.norm === 'layernorm' ? 'LayerNorm' : v.norm === 'l2' ? 'l2 norm' : 'x*x norm';
  const base =
    {
      layernorm: 'plain',
      folded: 'folded (Q = I)',
      'folded-rms': 'folded (Q = I)',
      hadamard: 'Hadamard (seed 0)',
      'hadamard-rms': 'Hadamard (seed 0)',
    }[v.name] ?? v.name;
  return `${base}, ${norm}`;
}

const realOf = (s) => s.ids.flatMap((_, i) => (!s.attention || s.attention[i] ? [i] : []));
const TAPS = (L) => Array.from({ length: L + 1 }, (_, i) => `residual.${i}`);

/** Head output as (V, P) columns. */
function columns(outputs) {
  const t = outputs.get('logits') ?? outputs.get('hidden_states');
  return { data: t.data, V: t.shape[1], P: t.shape.length === 4 ? t.shape[3] : 1 };
}

/** max |value| of the residual taps over real tokens (NaN counts as infinite). */
function residualMax(taps, real) {
  let m = 0;
  for (const t of taps.values()) {
    const S = t.shape[3];
    for (let c = 0; c < t.shape[1]; c++) {
      for (const p of real) {
        const v = t.data[c * S + p];
        m = Math.max(m, Number.isNaN(v) ? Infinity : Math.abs(v));
      }
    }
  }
  return m;
}

/** Float32 reference of the plain model: outputs per sequence and residual max per case. */
async function reference(model) {
  const engine = new Engine(model.src, { precision: 'fp32', norm: 'layernorm' });
  const out = {};
  for (const c of model.cases) {
    const refs = [];
    let max = 0;
    for (const s of c.seqs) {
      const r = await engine.forward(s, { taps: TAPS(model.src.config.numLayers) });
      refs.push(columns(r.outputs));
      max = Math.max(max, residualMax(r.taps, realOf(s)));
    }
    out[c.name] = { refs, max, floor: outputFloor(refs, c.seqs) };
  }
  await shutdownRuntime();
  return out;
}

/** KL of the reference against its own logits rounded to float16: what a float16 output alone costs. */
function outputFloor(refs, seqs) {
  const m = new AgreementMeter();
  refs.forEach((r, i) =>
    m.add(r.data, roundToF16(Float32Array.from(r.data)), r.V, r.P, r.P === 1 ? undefined : realOf(seqs[i])),
  );
  return m.result().kl;
}

/** Runs one variant in one precision over a case: agreement with the reference and residual max. */
async function measureCase(engine, c, ref, L) {
  const meter = new AgreementMeter();
  const perToken = [];
  let max = 0;
  const t = performance.now();
  for (const [i, s] of c.seqs.entries()) {
    const r = await engine.forward(s, { taps: TAPS(L) });
    const o = columns(r.outputs);
    meter.add(ref.refs[i].data, o.data, o.V, o.P, o.P === 1 ? undefined : realOf(s));
    for (const p of o.P === 1 ? [0] : realOf(s)) perToken.push(tokenKl(ref.refs[i], o, p));
    max = Math.max(max, residualMax(r.taps, realOf(s)));
  }
  const finite = perToken.filter(Number.isFinite).sort((a, b) => a - b);
  return {
    ...meter.result(),
    median: finite.length ? finite[finite.length >> 1] : Infinity,
    max,
    seconds: (performance.now() - t) / 1000,
  };
}

/** KL of one token column. */
function tokenKl(ref, out, p) {
  const m = new AgreementMeter();
  m.add(ref.data, out.data, out.V, out.P, [p]);
  const r = m.result();
  return r.non_finite ? Infinity : r.kl;
}

// ---- the main table ---------------------------------------------------------------------------------

const VARIANTS = [
  { fold: false, rotation: 'none', norm: 'l2' },
  { fold: true, rotation: 'none', norm: 'l2' },
  { fold: true, rotation: 'none', norm: 'rms' },
  { fold: true, rotation: 'hadamard', norm: 'l2' },
  { fold: true, rotation: 'hadamard', norm: 'rms' },
  { fold: true, rotation: 'learned', norm: 'l2' },
];

async function tableFor(name, o = { variants: VARIANTS, modes: MODES, learnNorm: 'l2' }) {
  const model = await openModel(name);
  const L = model.src.config.numLayers;
  log(`${name}: float32 reference`);
  const ref = await reference(model);
  const t = performance.now();
  log(`${name}: learning a rotation (${LEARN_SECONDS} s budget, fp16, ${o.learnNorm})`);
  const learned = await learnRotation(model.src, {
    seed: 0,
    calibration: model.calibration,
    norm: o.learnNorm,
    precision: 'fp16',
    budgetSeconds: LEARN_SECONDS,
    maxSteps: 200,
  });
  const learnSeconds = (performance.now() - t) / 1000;
  log(`${name}: ${learned.report.note} (${learnSeconds.toFixed(1)} s)`);
  const rows = [];
  for (const spec of o.variants) {
    // On synth-base (no outlier) the x*x forms say nothing the l2 ones do not.
    if (name === 'synth-base' && spec.norm === 'rms') continue;
    const v = prepareVariant(
      model.src,
      { ...spec, seed: 0 },
      spec.rotation === 'learned' ? learned.rotation : undefined,
    );
    const label =
      spec.rotation === 'learned'
        ? `learned (${learned.report.chosen === 'learned' ? 'kept' : `fell back to ${learned.report.chosen}`}), ${spec.norm === 'l2' ? 'l2' : 'x*x'} norm`
        : formName(v);
    const weights = new CachedWeights(v.source.weights); // folded once, shared by every mode
    const row = { variant: label, modes: {} };
    for (const mode of ['fp32', ...o.modes]) {
      const engine = new Engine({ ...v.source, weights }, { precision: mode, norm: v.norm });
      row.modes[mode] = {};
      for (const c of model.cases) row.modes[mode][c.name] = await measureCase(engine, c, ref[c.name], L);
      await shutdownRuntime();
      log(
        `${name} ${label} ${mode}: ${model.cases.map((c) => `${c.name} KL ${fmtKl(row.modes[mode][c.name])} (${row.modes[mode][c.name].seconds.toFixed(1)} s)`).join(', ')}`,
      );
    }
    rows.push(row);
  }
  return { model, ref, rows, learned, learnSeconds, modes: o.modes };
}

const fmtKl = (r) => (r.non_finite ? `non-finite (${r.non_finite}/${r.tokens})` : r.kl.toExponential(2));
const fmtMax = (v) =>
  Number.isFinite(v) ? (v >= 1000 ? Math.round(v).toLocaleString('en-US') : v.toPrecision(3)) : 'inf';
const pct = (v) => `${(100 * v).toFixed(1)}%`;

function tableMarkdown(results) {
  const lines = [];
  for (const { model, ref, rows, learned, learnSeconds, modes } of results) {
    for (const c of model.cases) {
      const tokens = c.seqs.reduce((s, q) => s + realOf(q).length, 0);
      lines.push(
        `#### ${model.name}, ${c.name} (${c.seqs.length} sequence${c.seqs.length > 1 ? 's' : ''}, ${tokens} tokens; float32 residual max ${fmtMax(ref[c.name].max)})`,
        '',
      );
      lines.push(
        `KL(float32 ‖ emulated), mean over tokens, with top-1 agreement; max |residual| of the emulated run. Float16 logits alone (the reference's logits rounded to float16) cost KL ${ref[c.name].floor.toExponential(2)}.`,
        '',
      );
      const others = modes.filter((m) => m !== 'fp16');
      lines.push(
        `| weights | fp32: KL, max res | fp16: KL (top-1), max res | fp16: median token KL |${others.map((m) => ` ${m}: KL (top-1), max res |`).join('')}`,
      );
      lines.push(`| --- | --- | --- | --- |${others.map(() => ' --- |').join('')}`);
      for (const r of rows) {
        const cell = (m) => {
          const x = r.modes[m][c.name];
          return m === 'fp32' ? `${fmtKl(x)}, ${fmtMax(x.max)}` : `${fmtKl(x)} (${pct(x.top1)}), ${fmtMax(x.max)}`;
        };
        const med = r.modes.fp16[c.name].median;
        lines.push(
          `| ${r.variant} | ${cell('fp32')} | ${cell('fp16')} | ${Number.isFinite(med) ? med.toExponential(2) : 'non-finite'} |${others.map((m) => ` ${cell(m)} |`).join('')}`,
        );
      }
      lines.push('');
    }
    const rep = learned.report;
    const cand = (k) =>
      `${k} KL ${fmtKl(rep.candidates[k])}, median token ${rep.candidates[k].median_kl.toExponential(2)}, proxy ${rep.candidates[k].proxy.toFixed(4)}`;
    lines.push(
      `Learned rotation for ${model.name} (${rep.norm === 'l2' ? 'l2' : 'x*x'} norm): calibration ${model.calibrationName}; ${rep.tokens} tokens, ${rep.rows} stream rows; start ${rep.start}; ${rep.steps} steps; on the calibration tokens (fp16): ${['folded', 'hadamard', 'learned'].map(cand).join('; ')}; chosen: **${rep.chosen}**. Time ${learnSeconds.toFixed(1)} s (float32 pass ${rep.seconds.calibration.toFixed(1)} s, three fp16 measurements ${rep.seconds.measure.toFixed(1)} s, optimisation ${rep.seconds.optimise.toFixed(1)} s).`,
      '',
    );
    const runTimes = rows.map(
      (r) =>
        `${r.variant}: ${['fp32', ...modes].map((m) => `${m} ${r.modes[m][model.cases.at(-1).name].seconds.toFixed(1)} s`).join(', ')}`,
    );
    lines.push(
      `Seconds for the ${model.cases.at(-1).name} case (forward passes with residual taps; 2 CPU cores): ${runTimes.join('; ')}.`,
      '',
    );
  }
  return lines.join('\n');
}

// ---- proxy versus measured KL ---------------------------------------------------------------------

/** Rotations along the way: Hadamard with several seeds and snapshots of the optimisation from both starts. */
async function proxyStudy(name, evalCase) {
  const model = await openModel(name);
  const { config } = model.src;
  const n = config.hidden;
  const c = model.cases.find((x) => x.name === evalCase);
  log(`proxy study ${name}: float32 passes`);
  const calPass = await float32Pass(model.src, model.calibration, 8192);
  const evPass = await float32Pass(model.src, c.seqs, 8192);
  const M = readerSensitivity(model.src);
  const data = prepareProxy(calPass.stream, M);
  const flat = prepareProxy(calPass.stream, identityMatrix(n));
  const evData = prepareProxy(evPass.stream, M);
  const limit = 0.8 * 65504;
  const qs = [['Q = I (folded)', identityMatrix(n)]];
  for (const seed of [0, 1, 2])
    qs.push([`Hadamard, seed ${seed}`, new HadamardRotation(n, seed).rightMul(identityMatrix(n), n, n)]);
  for (const [start, q0, every] of [
    ['Hadamard 0', qs[1][1], [5, 10, 40]],
    ['Q = I', identityMatrix(n), [40]],
  ]) {
    optimise(
      data,
      q0,
      { limit },
      {
        seed: 0,
        maxSteps: 40,
        budget: 600,
        tick: () => {},
        onStep: (k, q) => {
          if (every.includes(k)) qs.push([`from ${start}, step ${k}`, Float32Array.from(q)]);
        },
      },
    );
  }
  // The unweighted proxy's own optimum (M = I): what ignoring the readers' sensitivity gives.
  qs.push([
    'from Q = I, M = I proxy, step 40',
    optimise(flat, identityMatrix(n), { limit }, { seed: 0, maxSteps: 40, budget: 600, tick: () => {} }).q,
  ]);
  const rows = [];
  for (const [label, q] of qs) {
    const t = performance.now();
    const v = prepareVariant(
      model.src,
      { fold: true, rotation: 'learned', norm: 'l2', seed: 0 },
      new DenseRotation(n, q),
    );
    const engine = new Engine(v.source, { precision: 'fp16', norm: 'l2' }); // folds once for both inputs
    const cal = await agreementOf(engine, model.calibration, calPass.outputs);
    const ev = await agreementOf(engine, c.seqs, evPass.outputs);
    await shutdownRuntime();
    const row = {
      label,
      proxy: fp16Proxy(data, q, { limit }).loss,
      flat: fp16Proxy(flat, q, { limit }).loss,
      evalProxy: fp16Proxy(evData, q, { limit }).loss,
      cal,
      ev,
    };
    rows.push(row);
    log(
      `proxy study ${name} ${label}: proxy ${row.proxy.toFixed(4)} calibration KL ${cal.kl.toExponential(2)} (median ${cal.median_kl.toExponential(2)}) ${evalCase} KL ${ev.kl.toExponential(2)} (median ${ev.median_kl.toExponential(2)}) (${since(t)} s)`,
    );
  }
  return { name, evalCase, calibrationName: model.calibrationName, rows };
}

/** Spearman rank correlation. */
function spearman(a, b) {
  const rank = (x) => {
    const order = x.map((v, i) => [v, i]).sort((p, q) => p[0] - q[0]);
    const r = new Array(x.length);
    order.forEach(([, i], k) => (r[i] = k));
    return r;
  };
  const ra = rank(a);
  const rb = rank(b);
  const n = a.length;
  const d2 = ra.reduce((s, v, i) => s + (v - rb[i]) ** 2, 0);
  return 1 - (6 * d2) / (n * (n * n - 1));
}

function proxyMarkdown(studies) {
  const lines = [];
  for (const s of studies) {
    lines.push(
      `#### ${s.name}: calibration ${s.calibrationName}; held-out case ${s.evalCase}; fp16 emulation, l2 norm`,
      '',
    );
    lines.push(
      '| rotation | proxy | proxy, M = I | fp16 KL (median token) | proxy, held out | fp16 KL (median token), held out |',
      '| --- | --- | --- | --- | --- | --- |',
    );
    const e = (v) => v.toExponential(2);
    for (const r of s.rows)
      lines.push(
        `| ${r.label} | ${r.proxy.toFixed(4)} | ${r.flat.toFixed(4)} | ${e(r.cal.kl)} (${e(r.cal.median_kl)}) | ${r.evalProxy.toFixed(4)} | ${e(r.ev.kl)} (${e(r.ev.median_kl)}) |`,
      );
    const col = (f) => s.rows.map(f);
    const rho = (a, b) => spearman(col(a), col(b)).toFixed(2);
    lines.push(
      '',
      `Spearman rank correlation with the proxy: calibration mean KL ${rho(
        (r) => r.proxy,
        (r) => r.cal.kl,
      )}, median token KL ${rho(
        (r) => r.proxy,
        (r) => r.cal.median_kl,
      )}; held out mean KL ${rho(
        (r) => r.evalProxy,
        (r) => r.ev.kl,
      )}, median token KL ${rho(
        (r) => r.evalProxy,
        (r) => r.ev.median_kl,
      )}. The M = I proxy: calibration mean KL ${rho(
        (r) => r.flat,
        (r) => r.cal.kl,
      )}, median ${rho(
        (r) => r.flat,
        (r) => r.cal.median_kl,
      )}.`,
      '',
    );
  }
  return lines.join('\n');
}

// ---- PrefixQuant-style: the outlier tokens in float32 --------------------------------------------------

/**
 * Runs a graph in fp16 except for the `keep` tokens, whose values stay float32 in every op (their columns,
 * or rows of token-major tensors): each op runs in both numerics and the results are merged. Attention of
 * an fp16 token then reads the kept tokens' keys and values in float32, as PrefixQuant keeps its prefixed
 * outlier tokens' KV cache in high precision.
 */
async function runMixed(graph, seq, keep) {
  const S = seq.ids.length;
  const half = numericsFor('fp16');
  const full = numericsFor('fp32');
  const env = new Map([
    ['input_ids', { dtype: 'int32', shape: [1, S], data: Int32Array.from(seq.ids) }],
    ['mask', { dtype: 'fp32', shape: [1, S, 1, S], data: additiveMask(seq.attention, S) }],
  ]);
  const consts = { half: new Map(), full: new Map() };
  const constant = (name, which) => {
    const cache = consts[which];
    if (!cache.has(name)) {
      const c = graph.consts.get(name);
      if (!c) return undefined;
      let data = c.load();
      if (which === 'half' && data instanceof Float32Array) data = roundToF16(Float32Array.from(data));
      cache.set(name, { dtype: c.type.dtype, shape: c.type.shape, data });
    }
    return cache.get(name);
  };
  const argsFor = (op, which) => opArgs(op, which === 'half' ? half : full, (n) => env.get(n) ?? constant(n, which));
  for (const op of graph.ops) {
    const lo = await opDef(op.op).run(argsFor(op, 'half'));
    const hi = await opDef(op.op).run(argsFor(op, 'full'));
    const inputs = new Set(
      Object.values(op.inputs).flatMap((a) =>
        typeof a === 'string' ? [env.get(a)?.data] : Array.isArray(a) ? a.map((x) => env.get(x)?.data) : [],
      ),
    );
    op.outputs.forEach((o, k) => {
      const a = lo[k];
      if (!(a.data instanceof Float32Array) || inputs.has(a.data)) return env.set(o.name, a); // relabelled input
      const out = roundToF16(Float32Array.from(a.data));
      const b = hi[k].data;
      const sh = a.shape;
      if (sh.length === 4 && sh[3] === S) {
        for (let i = 0; i < out.length; i += S) for (const p of keep) out[i + p] = b[i + p];
      } else if (sh.length >= 2 && sh[1] === S) {
        const inner = sh.slice(2).reduce((x, y) => x * y, 1);
        for (let outer = 0; outer < sh[0]; outer++)
          for (const p of keep)
            for (let j = 0; j < inner; j++) out[(outer * S + p) * inner + j] = b[(outer * S + p) * inner + j];
      }
      env.set(o.name, { ...a, data: out });
    });
  }
  return env.get(graph.outputs[0]);
}

async function prefixStudy(name, caseName) {
  const model = await openModel(name);
  const { config } = model.src;
  const c = model.cases.find((x) => x.name === caseName);
  const ref = await reference({ ...model, cases: [c] });
  // The outlier tokens, from the float32 residual taps: largest max |residual| first.
  const engine = new Engine(model.src, { precision: 'fp32', norm: 'layernorm' });
  const ranked = [];
  for (const [i, s] of c.seqs.entries()) {
    const r = await engine.forward(s, { taps: TAPS(config.numLayers) });
    for (const p of realOf(s)) ranked.push({ seq: i, pos: p, max: residualMax(r.taps, [p]) });
  }
  await shutdownRuntime();
  ranked.sort((a, b) => b.max - a.max);
  const tokens = ranked.length;
  const over = ranked.filter((r) => r.max > 256).length;
  const budgets = [...new Set([0, 1, Math.ceil(tokens * 0.1), over, tokens])]
    .filter((k) => k <= tokens)
    .sort((a, b) => a - b);
  const rows = [];
  for (const spec of VARIANTS.slice(0, 3)) {
    const v = prepareVariant(model.src, { ...spec, seed: 0 });
    const weights = new CachedWeights(v.source.weights);
    for (const k of budgets) {
      const kept = ranked.slice(0, k);
      const meter = new AgreementMeter();
      const rest = new AgreementMeter(); // the tokens left in float16 only
      for (const [i, s] of c.seqs.entries()) {
        const keep = kept.filter((r) => r.seq === i).map((r) => r.pos);
        const graph = buildModel({ ...v.source, weights }, { seqLen: s.ids.length, norm: v.norm });
        const o = columns(new Map([['logits', await runMixed(graph, s, keep)]]));
        meter.add(ref[c.name].refs[i].data, o.data, o.V, o.P, realOf(s));
        const others = realOf(s).filter((p) => !keep.includes(p));
        if (others.length) rest.add(ref[c.name].refs[i].data, o.data, o.V, o.P, others);
      }
      rows.push({ variant: formName(v), k, all: meter.result(), rest: rest.result() });
      log(`prefix ${name} ${caseName} ${v.name} k=${k}: KL ${fmtKl(meter.result())}`);
    }
    await shutdownRuntime();
  }
  return {
    name,
    caseName,
    tokens,
    over,
    top: ranked.slice(0, 3).map((r) => r.max),
    median: ranked[Math.floor(tokens / 2)].max,
    rows,
  };
}

function prefixMarkdown(studies) {
  const lines = [];
  for (const s of studies) {
    lines.push(
      `#### ${s.name}, ${s.caseName}: ${s.tokens} tokens, ${s.over} with max |residual| > 256 (largest ${s.top.map(fmtMax).join(', ')}; median ${fmtMax(s.median)}); fp16 emulation`,
      '',
    );
    lines.push(
      '| weights | tokens kept in float32 | KL (top-1), all tokens | KL (top-1), tokens left in fp16 |',
      '| --- | --- | --- | --- |',
    );
    for (const r of s.rows)
      lines.push(
        `| ${r.variant} | ${r.k} | ${fmtKl(r.all)} (${pct(r.all.top1)}) | ${r.rest.tokens ? `${fmtKl(r.rest)} (${pct(r.rest.top1)})` : '-'} |`,
      );
    lines.push('');
  }
  return lines.join('\n');
}

// ---- writing ------------------------------------------------------------------------------------------

function writeBlock(name, body, command, seconds) {
  const path = args.out;
  const text = existsSync(path)
    ? readFileSync(path, 'utf8')
    : `# Float16 fidelity\n\n<!-- fidelity:${name} -->\n<!-- /fidelity:${name} -->\n`;
  const open = `<!-- fidelity:${name} -->`;
  const close = `<!-- /fidelity:${name} -->`;
  const stamp = `_Generated by \`${command}\` in ${seconds.toFixed(0)} s on ${cpus().length} CPU cores (${cpus()[0]?.model ?? 'unknown CPU'}), Node ${process.version}._`;
  const block = `${open}\n${stamp}\n\n${body.trim()}\n${close}`;
  const i = text.indexOf(open);
  const j = text.indexOf(close);
  writeFileSync(
    path,
    i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + close.length) : `${text.trimEnd()}\n\n${block}\n`,
  );
}

const command = (section) =>
  `node bench/fidelity.mjs --sections ${section}${section === 'table' || section === 'mild' ? ` --learn-seconds ${LEARN_SECONDS}` : ''}`;

if (sections.has('table')) {
  const t = performance.now();
  const results = [];
  for (const name of ['mini-trained', 'synth-base-massive', 'synth-base']) results.push(await tableFor(name));
  writeBlock('table', tableMarkdown(results), command('table'), (performance.now() - t) / 1000);
  log(`table written (${since(t)} s)`);
}
if (sections.has('mild')) {
  const t = performance.now();
  const variants = [VARIANTS[1], VARIANTS[2], VARIANTS[4], { fold: true, rotation: 'learned', norm: 'rms' }];
  const results = [await tableFor('synth-base-mild', { variants, modes: ['fp16'], learnNorm: 'rms' })];
  writeBlock('mild', tableMarkdown(results), command('mild'), (performance.now() - t) / 1000);
  log(`mild written (${since(t)} s)`);
}
if (sections.has('proxy')) {
  const t = performance.now();
  const studies = [
    await proxyStudy('synth-base-massive', 'seed_example'),
    await proxyStudy('mini-trained', 'golden prompts'),
  ];
  writeBlock('proxy', proxyMarkdown(studies), command('proxy'), (performance.now() - t) / 1000);
  log(`proxy study written (${since(t)} s)`);
}
if (sections.has('prefix')) {
  const t = performance.now();
  const studies = [
    await prefixStudy('synth-base-massive', 'seed_example'),
    await prefixStudy('mini-trained', 'golden prompts'),
  ];
  writeBlock('prefix', prefixMarkdown(studies), command('prefix'), (performance.now() - t) / 1000);
  log(`prefix study written (${since(t)} s)`);
}
await shutdownRuntime();
log('done');
