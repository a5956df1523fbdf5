// A small SVG line chart (axes, ticks, grid, labels, legend, optional log-scale y), for outlier plots.

export interface Series {
  name: string;
  points: [number, number][];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Horizontal reference lines (a limit such as float16's largest value), dashed and labelled. */
  references?: { y: number; label: string }[];
  logY?: boolean;
  width?: number;
  height?: number;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

/** Text made safe for HTML and SVG, in content and in quoted attributes. */
export const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Renders the chart as a standalone SVG document. */
export function lineChartSvg(o: ChartOptions): string {
  const W = o.width ?? 720;
  const H = o.height ?? 420;
  const m = { left: 80, right: 170, top: 40, bottom: 60 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const pts = o.series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y) && (!o.logY || y > 0));
  const xs = pts.map(([x]) => x);
  const ys = [...pts.map(([, y]) => y), ...(o.references ?? []).map((r) => r.y)];
  const xMin = Math.min(...xs, 0);
  const xMax = Math.max(...xs, 1);
  let yMin: number;
  let yMax: number;
  if (o.logY) {
    yMin = 10 ** Math.floor(Math.log10(Math.min(...ys, 1)));
    yMax = 10 ** Math.ceil(Math.log10(Math.max(...ys, 10)));
  } else {
    yMin = Math.min(0, ...ys);
    yMax = Math.max(...ys, 1) * 1.05;
  }
  const fy = (y: number) => (o.logY ? Math.log10(y) : y);
  const px = (x: number) => m.left + ((x - xMin) / (xMax - xMin || 1)) * pw;
  const py = (y: number) => m.top + ph - ((fy(y) - fy(yMin)) / (fy(yMax) - fy(yMin) || 1)) * ph;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`);
  // y ticks: decades on a log scale, 5 steps otherwise
  const yTicks: number[] = [];
  if (o.logY) for (let e = Math.log10(yMin); e <= Math.log10(yMax) + 1e-9; e++) yTicks.push(10 ** e);
  else for (let i = 0; i <= 5; i++) yTicks.push(yMin + ((yMax - yMin) * i) / 5);
  for (const t of yTicks) {
    const y = py(t);
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    out.push(
      `<text x="${m.left - 8}" y="${y + 4}" text-anchor="end">${o.logY ? formatPow(t) : t.toPrecision(3)}</text>`,
    );
  }
  // x ticks: integers, at most ~12 labels
  const step = Math.max(1, Math.ceil((xMax - xMin) / 12));
  for (let x = Math.ceil(xMin); x <= xMax; x += step) {
    out.push(`<line x1="${px(x)}" x2="${px(x)}" y1="${m.top + ph}" y2="${m.top + ph + 5}" stroke="black"/>`);
    out.push(`<text x="${px(x)}" y="${m.top + ph + 18}" text-anchor="middle">${x}</text>`);
  }
  for (const r of o.references ?? []) {
    const y = py(r.y).toFixed(1);
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="#555" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${m.left + pw - 4}" y="${Number(y) - 5}" text-anchor="end" fill="#555">${esc(r.label)}</text>`);
  }
  out.push(`<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + ph}" stroke="black"/>`);
  out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${m.top + ph}" y2="${m.top + ph}" stroke="black"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${H - 15}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}${o.logY ? ' (log scale)' : ''}</text>`,
  );
  o.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const valid = s.points.filter(([, y]) => Number.isFinite(y) && (!o.logY || y > 0));
    const d = valid.map(([x, y], k) => `${k ? 'L' : 'M'}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [x, y] of valid)
      out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = m.top + 10 + i * 20;
    out.push(
      `<line x1="${m.left + pw + 15}" x2="${m.left + pw + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
    );
    out.push(`<text x="${m.left + pw + 46}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function formatPow(v: number): string {
  const e = Math.round(Math.log10(v));
  return e >= 0 && e <= 4 ? String(10 ** e) : `1e${e}`;
}
