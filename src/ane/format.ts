// The prediction as text (inspect --ane, convert's summary line) and as JSON (inspect --ane --json, report).

import type { FunctionPlacement, PackagePlacement } from './predict-package.js';
import type { Island } from './placement.js';
import { label, type Device, type Rule } from './rules.js';

const DEVICE_NAME: Record<Device, string> = { ane: 'Neural Engine', cpu: 'CPU', 'gpu-or-cpu': 'GPU or CPU' };

/** "Neural Engine", "CPU", "GPU or CPU". */
export function deviceName(d: Device): string {
  return DEVICE_NAME[d];
}

const pct = (a: number, b: number) => (b > 0 ? `${((100 * a) / b).toFixed(1)}%` : 'n/a');
const int = (n: number) => n.toLocaleString('en-US');

/** Engineering units: 1.23 G, 45.6 M, ... */
export function si(n: number, unit: string): string {
  for (const [f, p] of [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ] as const)
    if (n >= f) return `${(n / f).toPrecision(3)} ${p}${unit}`;
  return `${n} ${unit}`;
}

/** What an island is, in a few words: its region, ops, op types and where it sits. */
export function describeIsland(i: Island): string {
  const types = Object.entries(i.types)
    .map(([t, n]) => (n > 1 ? `${t} x${n}` : t))
    .join(', ');
  const where =
    i.first.index === i.last.index
      ? `op ${i.first.index} "${i.first.name}"`
      : `ops ${i.first.index}-${i.last.index} ("${i.first.name}" .. "${i.last.name}")`;
  return `${i.region}: ${i.ops} op${i.ops === 1 ? '' : 's'} (${types}) at ${where}, ${i.fromAne.length} tensor${i.fromAne.length === 1 ? '' : 's'} in from the Neural Engine, ${i.toAne.length} out to it`;
}

/** One line for convert: ops against the budget, shares on the Neural Engine, islands, predicted time. */
export function summaryLine(f: FunctionPlacement): string {
  const p = f.placement;
  const off = p.opCount - p.devices.ane;
  const count = (r: 'head' | 'body' | 'tail') => p.islands.filter((i) => i.region === r).reduce((s, i) => s + i.ops, 0);
  const m1 = f.time.chips[0];
  const time = p.devices.ane > 0 && m1 ? `; ~${m1.ms.toFixed(1)} ms on an ${m1.chip} (a model, not a measurement)` : '';
  if (p.devices.ane === 0)
    return `Neural Engine (predicted): none of ${int(p.opCount)} ops (${p.findings.find((x) => x.rule === 'fp32') ? 'float32 runs on the GPU or CPU' : 'see inspect --ane'})`;
  return `Neural Engine (predicted): ${int(p.devices.ane)} of ${int(p.opCount)} ops (budget ${int(p.budget)}), ${pct(p.totals.aneFlops, p.totals.flops)} of FLOPs, ${pct(p.totals.aneWeightBytes, p.totals.weightBytes)} of weight bytes; off it: ${off === 0 ? 'none' : `${count('head')} at the head, ${count('body')} inside the body, ${count('tail')} at the tail`}${time}`;
}

/** The lines of `inspect --ane` for one function. */
export function placementLines(f: FunctionPlacement, of: number): [string, string][] {
  const p = f.placement;
  const t = p.totals;
  const lines: [string, string][] = [];
  if (of > 1) lines.push(['function', `${f.name} (${of} functions)`]);
  lines.push([
    'ops',
    `${int(p.opCount)} non-constant (budget ${int(p.budget)}${p.opCount > p.budget ? ', OVER' : ''}): ${(Object.keys(p.devices) as Device[]).map((d) => `${deviceName(d)} ${int(p.devices[d])}`).join(', ')}${p.seqLen ? `; costed at S = ${int(p.seqLen)}` : ''}`,
  ]);
  lines.push([
    'Neural Engine',
    `${pct(t.aneFlops, t.flops)} of FLOPs (${si(t.aneFlops, 'FLOP')} of ${si(t.flops, 'FLOP')}), ${pct(t.aneWeightBytes, t.weightBytes)} of weight bytes (${si(t.aneWeightBytes, 'B')} of ${si(t.weightBytes, 'B')})`,
  ]);
  lines.push([
    'boundaries',
    `${p.boundaries.head} at the head, ${p.boundaries.body} inside the body, ${p.boundaries.tail} at the tail (tensors crossing to or from the Neural Engine)`,
  ]);
  p.islands.forEach((i, k) => lines.push([k === 0 ? 'off the NE' : '', describeIsland(i)]));
  const byRule = new Map<string, number>();
  for (const o of p.ops) byRule.set(o.rule, (byRule.get(o.rule) ?? 0) + 1);
  const rules = new Map(p.rules.map((r) => [r.id, r]));
  [...byRule].forEach(([id, n], k) => {
    const r = rules.get(id as Rule['id'])!;
    lines.push([
      k === 0 ? 'placed by' : '',
      `${id} ${label(r.confidence)} -> ${deviceName(r.device!)}: ${int(n)} op${n === 1 ? '' : 's'} (${r.check}; ${r.source})`,
    ]);
  });
  p.findings
    .filter((x) => x.warn)
    .forEach((x, k) =>
      lines.push([
        k === 0 ? 'warnings' : '',
        `${x.rule} ${label(rules.get(x.rule)!.confidence)}: ${x.message}${x.ops.length && !x.message.includes(x.ops[0]!) ? ` (${x.ops.join(', ')}${x.count > x.ops.length ? ', ...' : ''})` : ''}`,
      ]),
    );
  p.findings
    .filter((x) => !x.warn)
    .forEach((x, k) =>
      lines.push([k === 0 ? 'notes' : '', `${x.rule} ${label(rules.get(x.rule)!.confidence)}: ${x.message}`]),
    );
  if (f.time.matrixFlops > 0) {
    lines.push([
      'time (model)',
      f.time.chips.map((c) => `${c.chip} ${c.ms.toFixed(1)} ms`).join(', ') +
        ` (bound at peak: ${f.time.chips.map((c) => `${c.chip} ${c.boundMs.toFixed(1)}`).join(', ')} ms)`,
    ]);
    lines.push([
      '',
      `${f.time.note}${f.time.untimedShare > 0.01 ? `; ${pct(f.time.untimedShare, 1)} of the FLOPs run off the Neural Engine and are not timed` : ''}`,
    ]);
  }
  return lines;
}

/** The JSON of `inspect --ane --json` (and the report's data). */
export function placementJson(pp: PackagePlacement): unknown {
  return {
    path: pp.path,
    prediction: 'from public rules, not a measurement: MLComputePlan on a Mac measures',
    functions: pp.functions.map((f) => functionJson(f)),
  };
}

/** One function's prediction as JSON; `full` adds every op and the rules (else a summary, as convert reports it). */
export function functionJson(f: FunctionPlacement, full = true): Record<string, unknown> {
  const p = f.placement;
  const rules = new Map(p.rules.map((r) => [r.id, r]));
  return {
    name: f.name,
    op_count: p.opCount,
    budget: p.budget,
    seq_len: p.seqLen,
    devices: p.devices,
    boundaries: p.boundaries,
    shares: {
      flops: p.totals.flops > 0 ? p.totals.aneFlops / p.totals.flops : null,
      weight_bytes: p.totals.weightBytes > 0 ? p.totals.aneWeightBytes / p.totals.weightBytes : null,
    },
    totals: {
      flops: p.totals.flops,
      ane_flops: p.totals.aneFlops,
      weight_bytes: p.totals.weightBytes,
      ane_weight_bytes: p.totals.aneWeightBytes,
      bytes: p.totals.bytes,
    },
    islands: p.islands,
    findings: full ? p.findings : p.findings.filter((x) => x.warn),
    time: f.time,
    ...(!full
      ? {}
      : {
          rules: p.rules,
          ops: p.ops.map((o) => ({
            index: o.index,
            name: o.name,
            op: o.op,
            device: o.device,
            rule: o.rule,
            confidence: rules.get(o.rule)!.confidence,
            layer: o.layer,
            ...(o.region ? { region: o.region } : {}),
            flops: o.flops,
            bytes: o.bytes,
            weight_bytes: o.weightBytes,
          })),
        }),
  };
}

/** Rules whose findings convert already prints per tensor (graph/ane-limits.ts). */
const LINTED = new Set(['rank', 'axis-size']);

/**
 * What convert prints of the prediction for what it wrote: one summary line (the default function of the
 * first package), and a warning per island inside the body and per warning rule that matched.
 */
export function convertLines(pps: readonly PackagePlacement[]): { summary: string; warnings: string[] } {
  const all = pps.flatMap((pp) => pp.functions.map((f) => ({ pp, f })));
  const first = all[0]!.f;
  const where = (pp: PackagePlacement, f: FunctionPlacement) =>
    all.length === 1
      ? ''
      : ` (${pps.length > 1 ? pp.path : ''}${pps.length > 1 && pp.functions.length > 1 ? ', ' : ''}${pp.functions.length > 1 ? `function ${f.name}` : ''})`;
  const inBody = all.filter(({ f }) => f.placement.boundaries.body > 0).length;
  const others =
    all.length > 1
      ? `; ${all.length - 1} more function${all.length > 2 ? 's' : ''} or package${all.length > 2 ? 's' : ''}, ${inBody} with ops off it inside the body`
      : '';
  const warnings = new Set<string>();
  for (const { pp, f } of all) {
    const rules = new Map(f.placement.rules.map((r) => [r.id, r]));
    for (const i of f.placement.islands.filter((x) => x.region === 'body'))
      warnings.add(
        `Neural Engine (predicted)${where(pp, f)}: off it inside the body, ${describeIsland(i)}: a round trip per prediction (README, "Neural Engine placement")`,
      );
    for (const x of f.placement.findings.filter((y) => y.warn && !LINTED.has(y.rule)))
      warnings.add(
        `Neural Engine (predicted)${where(pp, f)}: ${x.rule} ${label(rules.get(x.rule)!.confidence)}: ${x.message}`,
      );
  }
  return { summary: summaryLine(first) + others, warnings: [...warnings] };
}
