// OutlierMeter: per layer the largest |activation| over the real tokens, and where it is (channel, sequence,
// token), a NaN counting as infinity; each channel's max for the strongest channels. Checked against a plain
// scan, for real tokens that are one run of positions and for scattered ones.

import { describe, expect, it } from 'vitest';
import { OutlierMeter } from '../src/eval/outliers.js';
import { splitmix32 } from '../src/numeric/prng.js';
import type { RtTensor } from '../src/runtime/tensor.js';

const [C, S] = [6, 10];

function taps(seed: number, layers: number, plant?: (l: number, d: Float32Array) => void): RtTensor[] {
  const next = splitmix32(seed);
  return Array.from({ length: layers }, (_, l) => {
    const data = Float32Array.from({ length: C * S }, () => (next() / 2 ** 32 - 0.5) * 8);
    plant?.(l, data);
    return { dtype: 'fp32', shape: [1, C, 1, S], data };
  });
}

/** The plain scan the meter must agree with: the first (sequence, channel, token) in scan order holding the max. */
function plain(runs: { t: RtTensor[]; real: number[] }[], layer: number) {
  let best = { max: -1, channel: 0, sequence: 0, token: 0 };
  const per = new Array<number>(C).fill(0);
  runs.forEach(({ t, real }, sequence) => {
    const d = t[layer]!.data as Float32Array;
    for (let c = 0; c < C; c++)
      for (const p of real) {
        const v = Number.isNaN(d[c * S + p]!) ? Infinity : Math.abs(d[c * S + p]!);
        per[c] = Math.max(per[c]!, v);
        if (v > best.max) best = { max: v, channel: c, sequence, token: p };
      }
  });
  return { ...best, per };
}

describe('OutlierMeter', () => {
  it('finds each layer max, its channel, sequence and token, over real tokens only, as a plain scan does', () => {
    const runs = [
      { t: taps(1, 3), real: [0, 1, 2, 3, 4, 5, 6] }, // one run of positions
      { t: taps(2, 3, (l, d) => l === 1 && (d[4 * S + 8] = -50)), real: [1, 3, 8, 9] }, // scattered
      { t: taps(3, 3, (_, d) => (d[2 * S + 9] = 99)), real: [0, 1, 2, 3] }, // 99 at a padded position: not seen
    ];
    const meter = new OutlierMeter();
    runs.forEach((r, i) => meter.add(r.t, r.real, i));
    const got = meter.result(2);
    for (let layer = 0; layer < 3; layer++) {
      const want = plain(runs, layer);
      expect(got[layer]).toMatchObject({
        max: want.max,
        channel: want.channel,
        sequence: want.sequence,
        token: want.token,
      });
      const top = [...want.per.keys()].sort((a, b) => want.per[b]! - want.per[a]!).slice(0, 2);
      expect(got[layer]!.top_channels).toEqual(top.map((c) => ({ channel: c, max: want.per[c] })));
    }
    expect(got[1]).toMatchObject({ max: 50, channel: 4, sequence: 1, token: 8 });
    expect(got.every((l) => l.max < 99)).toBe(true);
  });

  it('counts NaN as infinity, at the first non-finite token', () => {
    const t = taps(4, 2, (l, d) => {
      if (l === 0) d[3 * S + 5] = NaN;
      if (l === 1) [d[1 * S + 2], d[1 * S + 7]] = [-Infinity, NaN];
    });
    const meter = new OutlierMeter();
    meter.add(t, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 0);
    const [a, b] = meter.result();
    expect(a).toMatchObject({ max: Infinity, channel: 3, token: 5 });
    expect(b).toMatchObject({ max: Infinity, channel: 1, token: 2 });
  });
});
