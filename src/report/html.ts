// `report PKG`: one self-contained HTML page about a package: predicted Neural Engine placement per op and per
// layer, the partitions, op counts against the budget, the float16 fidelity per layer and the outliers that
// convert stored, and the size and compression of every tensor. No network: inline CSS, SVG and a few lines of
// script, under a Content-Security-Policy that forbids every fetch.

import type { StoredFidelity, StoredLayer } from './stored-fidelity.js';
import type { FunctionPlacement, PackagePlacement } from '../ane/predict-package.js';
import type { LayerOf, PlacedOp } from '../ane/placement.js';
import { deviceName, describeIsland, si } from '../ane/format.js';
import { label, type Device } from '../ane/rules.js';
import { esc, lineChartSvg } from './plot.js';
import type { TensorRow } from './tensors.js';

export interface ReportInput {
  path: string;
  placement: PackagePlacement;
  /** The package's metadata (userDefined). */
  metadata: Record<string, string>;
  tensors: TensorRow[];
  /** The stored fidelity report (convert's), when there is one. */
  fidelity: StoredFidelity | null;
  version: string;
}

const COLOR: Record<Device, string> = { ane: '#2e8b57', cpu: '#e08a1e', 'gpu-or-cpu': '#c0392b' };
const int = (n: number) => n.toLocaleString('en-US');
const pct = (a: number, b: number) => (b > 0 ? `${((100 * a) / b).toFixed(1)}%` : 'n/a');
const attr = (s: string | number) => esc(String(s));

const CSS = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1180px; padding: 0 16px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; } h3 { font-size: 15px; margin-top: 20px; }
.banner { background: #fff6db; border: 1px solid #e8d48b; padding: 8px 12px; border-radius: 4px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; min-width: 170px; }
.card b { display: block; font-size: 20px; }
.over { color: #c0392b; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border-bottom: 1px solid #eee; padding: 3px 8px; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.strip { display: flex; align-items: center; gap: 8px; margin: 2px 0; }
.strip span { width: 70px; text-align: right; font-size: 12px; color: #555; }
.legend i { display: inline-block; width: 12px; height: 12px; margin: 0 4px -2px 12px; }
.scroll { max-height: 520px; overflow: auto; border: 1px solid #eee; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; } dt { color: #555; } dd { margin: 0; }
.muted { color: #777; }
`;

// Filters the op table: all ops, or those off the Neural Engine.
const SCRIPT = `
for (const sel of document.querySelectorAll('select[data-table]')) {
  sel.addEventListener('change', () => {
    for (const row of document.getElementById(sel.dataset.table).tBodies[0].rows) row.hidden = sel.value === 'off' && row.dataset.device === 'ane';
  });
}
`;

/** The whole page. */
export function renderReport(r: ReportInput): string {
  const title = `Neural Engine report: ${r.path.split(/[\\/]/).filter(Boolean).at(-1) ?? r.path}`;
  const body = [
    `<h1>${esc(title)}</h1>`,
    `<p class="banner"><b>Predicted, not measured.</b> Placement and time come from published rules and one published measurement (the rules table below names each source and how sure it is). On a Mac, Xcode's performance report or <code>MLComputePlan</code> measures the real placement.</p>`,
    packageSection(r),
    ...r.placement.functions.map((f, k) => functionSection(f, k, r.placement.functions.length)),
    fidelitySection(r.fidelity),
    tensorSection(r.tensors, r.metadata),
    rulesSection(r.placement.functions[0]!),
    `<p class="muted">modernbert-ane ${esc(r.version)}</p>`,
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
${body.join('\n')}
<script>${SCRIPT}</script>
</body>
</html>
`;
}

function packageSection(r: ReportInput): string {
  const m = r.metadata;
  const rows: [string, string | undefined][] = [
    ['package', r.path],
    ['source model', m.source_model],
    ['head', m.head],
    ['sequence lengths', m.sequence_lengths],
    ['rotation', m.rotation],
    ['norm', m.norm],
    ['weights', m.weights],
    ['converter', m.converter],
    ['functions', r.placement.functions.length > 1 ? r.placement.functions.map((f) => f.name).join(', ') : undefined],
  ];
  return `<h2>Package</h2><dl>${rows
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v!)}</dd>`)
    .join('')}</dl>`;
}

function functionSection(f: FunctionPlacement, k: number, of: number): string {
  const p = f.placement;
  const t = p.totals;
  const id = `f${k}`;
  const cards = [
    [`${int(p.opCount)}`, `non-constant ops, budget ${int(p.budget)}`, p.opCount > p.budget],
    [pct(t.aneFlops, t.flops), `of FLOPs on the Neural Engine (${si(t.flops, 'FLOP')} in all)`, false],
    [pct(t.aneWeightBytes, t.weightBytes), `of weight bytes on the Neural Engine (${si(t.weightBytes, 'B')})`, false],
    [
      `${p.boundaries.body}`,
      `boundaries inside the body (head ${p.boundaries.head}, tail ${p.boundaries.tail})`,
      p.boundaries.body > 0,
    ],
  ] as const;
  const time =
    f.time.matrixFlops > 0
      ? `<h3>Predicted time (a model, not a measurement)</h3><table><tr><th>chip</th><th class="n">rated peak, TFLOP/s</th><th class="n">predicted, ms</th><th class="n">bound at peak, ms</th></tr>${f.time.chips.map((c) => `<tr><td>${c.chip} ${label(c.confidence)}</td><td class="n">${c.peakTflops}</td><td class="n">${c.ms.toFixed(2)}</td><td class="n">${c.boundMs.toFixed(2)}</td></tr>`).join('')}</table><p class="muted">${esc(f.time.note)}.</p>`
      : '<p class="muted">No matrix work on the Neural Engine: no time predicted.</p>';
  return [
    `<h2 id="${id}">${of > 1 ? `Function ${esc(f.name)}` : 'Placement'}</h2>`,
    `<div class="cards">${cards.map(([v, what, bad]) => `<div class="card${bad ? ' over' : ''}"><b>${esc(v)}</b>${esc(what)}</div>`).join('')}</div>`,
    budgetBar(p.opCount, p.budget),
    `<h3>Per layer</h3><p class="legend">One mark per op, in program order.${(['ane', 'cpu', 'gpu-or-cpu'] as Device[]).map((d) => `<i style="background:${COLOR[d]}"></i>${deviceName(d)} (${int(p.devices[d])})`).join('')}</p>`,
    layerStrips(p.ops),
    time,
    `<h3>Partitions</h3>`,
    p.islands.length === 0
      ? '<p>Every op on the Neural Engine: one partition.</p>'
      : `<table><tr><th>region</th><th>island</th><th>crossing in</th><th>crossing out</th></tr>${p.islands.map((i) => `<tr><td>${i.region}</td><td>${esc(describeIsland(i))}</td><td>${esc(i.fromAne.join(', '))}</td><td>${esc(i.toAne.join(', '))}</td></tr>`).join('')}</table>`,
    `<h3>Op counts</h3>`,
    opCounts(p.ops),
    `<h3>Findings</h3>`,
    p.findings.length === 0
      ? '<p>None.</p>'
      : `<table><tr><th>rule</th><th></th><th>finding</th></tr>${p.findings.map((x) => `<tr><td>${x.rule}</td><td>${x.warn ? 'warning' : 'note'}</td><td>${esc(x.message)}${x.ops.length ? ` <span class="muted">(${esc(x.ops.join(', '))}${x.count > x.ops.length ? ', ...' : ''})</span>` : ''}</td></tr>`).join('')}</table>`,
    `<h3>Every op</h3><p>Show <select data-table="ops-${id}"><option value="all">all ops</option><option value="off">ops off the Neural Engine</option></select></p>`,
    opTable(p.ops, `ops-${id}`),
  ].join('\n');
}

function budgetBar(count: number, budget: number): string {
  const W = 600;
  const max = Math.max(count, budget) * 1.1;
  const x = (v: number) => (W * v) / max;
  return `<svg width="${W + 120}" height="34" role="img" aria-label="ops against the budget"><rect x="0" y="8" width="${x(count).toFixed(1)}" height="16" fill="${count > budget ? COLOR['gpu-or-cpu'] : COLOR.ane}"/><line x1="${x(budget).toFixed(1)}" x2="${x(budget).toFixed(1)}" y1="2" y2="32" stroke="#222" stroke-width="2"/><text x="${(x(budget) + 6).toFixed(1)}" y="14" font-size="11">budget ${int(budget)}</text><text x="${(x(count) + 6).toFixed(1)}" y="30" font-size="11">${int(count)} ops</text></svg>`;
}

const layerName = (l: LayerOf) => (l === 'in' ? 'input' : l === 'out' ? 'output' : `layer ${l}`);

/** A strip per layer: one rectangle per op, coloured by device, with the op in its tooltip. */
function layerStrips(ops: PlacedOp[]): string {
  const groups = new Map<string, PlacedOp[]>();
  for (const o of ops) {
    const key = layerName(o.layer);
    (groups.get(key) ?? groups.set(key, []).get(key)!).push(o);
  }
  const widest = Math.max(1, ...[...groups.values()].map((g) => g.length));
  const W = 1000;
  const w = W / widest;
  return [...groups]
    .map(([name, g]) => {
      const rects = g
        .map(
          (o, i) =>
            `<rect x="${(i * w).toFixed(2)}" y="0" width="${Math.max(w, 0.5).toFixed(2)}" height="14" fill="${COLOR[o.device]}"><title>#${o.index} ${esc(o.name)} (${o.op}): ${deviceName(o.device)}, rule ${o.rule}</title></rect>`,
        )
        .join('');
      return `<div class="strip" data-layer="${attr(name)}"><span>${esc(name)}</span><svg width="${W}" height="14" role="img" aria-label="${attr(name)}">${rects}</svg><span>${g.length}</span></div>`;
    })
    .join('\n');
}

function opCounts(ops: PlacedOp[]): string {
  const by = new Map<string, Record<Device, number>>();
  for (const o of ops) {
    const r = by.get(o.op) ?? by.set(o.op, { ane: 0, cpu: 0, 'gpu-or-cpu': 0 }).get(o.op)!;
    r[o.device]++;
  }
  const rows = [...by].sort((a, b) => total(b[1]) - total(a[1]));
  return `<table><tr><th>op</th><th class="n">count</th><th class="n">Neural Engine</th><th class="n">CPU</th><th class="n">GPU or CPU</th></tr>${rows.map(([op, r]) => `<tr><td>${esc(op)}</td><td class="n">${total(r)}</td><td class="n">${r.ane}</td><td class="n">${r.cpu}</td><td class="n">${r['gpu-or-cpu']}</td></tr>`).join('')}</table>`;
}

const total = (r: Record<Device, number>) => r.ane + r.cpu + r['gpu-or-cpu'];

function opTable(ops: PlacedOp[], id: string): string {
  const head =
    '<thead><tr><th class="n">#</th><th>name</th><th>op</th><th>device</th><th>rule</th><th>layer</th><th>region</th><th class="n">FLOPs</th><th class="n">bytes moved</th><th class="n">weight bytes</th></tr></thead>';
  const rows = ops.map(
    (o) =>
      `<tr data-index="${o.index}" data-device="${o.device}" data-rule="${o.rule}"><td class="n">${o.index}</td><td>${esc(o.name)}</td><td>${esc(o.op)}</td><td>${deviceName(o.device)}</td><td>${o.rule}</td><td>${esc(String(o.layer))}</td><td>${o.region ?? ''}</td><td class="n">${int(o.flops)}</td><td class="n">${int(o.bytes)}</td><td class="n">${int(o.weightBytes)}</td></tr>`,
  );
  return `<div class="scroll"><table id="${id}">${head}<tbody>${rows.join('')}</tbody></table></div>`;
}

function fidelitySection(f: StoredFidelity | null): string {
  const head = '<h2>Float16 fidelity and outliers</h2>';
  if (!f) return `${head}<p>This package stores no fidelity report (converted with --no-fidelity).</p>`;
  const summary = `<p>${esc(`${f.precision} emulation against the float32 checkpoint, ${f.tokens} tokens of ${f.inputs}: KL ${f.kl === null ? 'not finite' : f.kl.toExponential(2)}, top-1 ${(100 * f.top1).toFixed(1)}%, top-5 ${(100 * f.top5).toFixed(1)}%`)}</p>`;
  const layers = f.layers;
  if (!layers || layers.length === 0)
    return `${head}${summary}<p>No per-layer figures: the package was converted by a version that did not store them.</p>`;
  const pts = (k: keyof StoredLayer) =>
    layers.map((l) => [l.layer, l[k] === null ? Number.NaN : Number(l[k])] as [number, number]);
  const err = lineChartSvg({
    width: 560,
    height: 380,
    title: 'Relative error of the residual stream (float16 emulation vs float32)',
    xLabel: 'layer (0 = embeddings)',
    yLabel: '||fp16 - fp32|| / ||fp32||',
    logY: true,
    series: [{ name: 'converted', points: pts('rel_error') }],
  });
  const out = lineChartSvg({
    width: 580,
    height: 380,
    title: 'Outliers: max |activation| of the residual stream',
    xLabel: 'layer (0 = embeddings)',
    yLabel: 'max |activation|',
    logY: true,
    series: [
      { name: 'as trained (fp32)', points: pts('reference_max') },
      { name: 'converted (fp32)', points: pts('converted_max') },
      { name: 'converted (fp16)', points: pts('emulated_max') },
      { name: 'float16 max 65504', points: layers.map((l) => [l.layer, 65504] as [number, number]) },
    ],
  });
  const num = (v: number | null) => (v === null ? 'not finite' : v.toPrecision(4));
  const table = `<table id="fidelity-layers"><tr><th class="n">layer</th><th class="n">relative error</th><th class="n">max |a|, as trained</th><th class="n">converted, fp32</th><th class="n">converted, fp16</th></tr>${layers.map((l) => `<tr><td class="n">${l.layer}</td><td class="n">${l.rel_error === null ? 'not finite' : l.rel_error.toExponential(2)}</td><td class="n">${num(l.reference_max)}</td><td class="n">${num(l.converted_max)}</td><td class="n">${num(l.emulated_max)}</td></tr>`).join('')}</table>`;
  return `${head}${summary}<p class="muted">The converted stream is folded (and maybe rotated), so its error is measured against itself in float32 on the same weights; its maxima differ from the checkpoint's by design.</p><div class="cards">${err}${out}</div>${table}`;
}

function tensorSection(rows: TensorRow[], meta: Record<string, string>): string {
  const stored = rows.reduce((s, r) => s + r.storedBytes, 0);
  const fp16 = rows.reduce((s, r) => s + r.fp16Bytes, 0);
  const compression = meta.compression ? `<p>Compression: ${esc(meta.compression)}</p>` : '';
  const body = rows
    .map(
      (r) =>
        `<tr><td>${esc(r.name)}</td><td>${esc(r.shape.join(' x '))}</td><td>${esc(r.dtype)}</td><td class="n">${int(r.storedBytes)}</td><td class="n">${int(r.fp16Bytes)}</td><td>${esc(r.compression)}</td><td class="n">${r.fp16Bytes ? (r.storedBytes / r.fp16Bytes).toFixed(3) : ''}</td></tr>`,
    )
    .join('');
  return `<h2>Tensors</h2><p>${rows.length} constant tensors, ${si(stored, 'B')} stored (${si(fp16, 'B')} in float16).</p>${compression}<div class="scroll"><table id="tensors"><thead><tr><th>tensor</th><th>shape</th><th>dtype</th><th class="n">stored bytes</th><th class="n">float16 bytes</th><th>compression</th><th class="n">ratio</th></tr></thead><tbody>${body}</tbody></table></div>`;
}

function rulesSection(f: FunctionPlacement): string {
  const rows = f.placement.rules
    .map(
      (r) =>
        `<tr><td>${r.id}</td><td class="n">${r.row || ''}</td><td>${esc(r.check)}</td><td>${r.device ? deviceName(r.device) : 'warns'}</td><td>${r.enabled ? (r.warn ? 'warn' : '') : 'off'}</td><td>${label(r.confidence)}</td><td>${esc(r.source)}</td></tr>`,
    )
    .join('');
  return `<h2>Rules</h2><p>[A] Apple documented, [C] community observation, [P] via private APIs, [G] inferred, [M] measured (a rules file's correction). The first placement rule that matches an op decides its device.</p><table id="rules"><tr><th>rule</th><th class="n">row</th><th>checks</th><th>device</th><th></th><th></th><th>source</th></tr>${rows}</table>`;
}
