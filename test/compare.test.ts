// Agreement of two models' logits (src/eval/compare.ts): KL(A || B) per token averaged, top-1 and top-5
// agreement, max |difference|, and tokens where either side is not finite, held against a direct computation.

import { describe, expect, it } from 'vitest';
import { AgreementMeter } from '../src/eval/compare.js';
import { splitmix32 } from '../src/numeric/prng.js';

/** (V, P) logits, element (v, p) at v * P + p. */
function logits(V: number, P: number, seed: number, scale = 4): Float32Array {
  const next = splitmix32(seed);
  return Float32Array.from({ length: V * P }, () => scale * ((next() / 2 ** 32) * 2 - 1));
}

/** KL(softmax(a) || softmax(b)), top-1 and top-5 agreement of one column, computed directly. */
function direct(a: number[], b: number[]): { kl: number; top1: boolean; top5: number; maxAbs: number } {
  const logSoftmax = (x: number[]) => {
    const m = Math.max(...x);
    const lse = m + Math.log(x.reduce((s, v) => s + Math.exp(v - m), 0));
    return x.map((v) => v - lse);
  };
  const [la, lb] = [logSoftmax(a), logSoftmax(b)];
  const kl = la.reduce((s, v, i) => s + Math.exp(v) * (v - lb[i]!), 0);
  const top = (x: number[]) =>
    x
      .map((v, i) => [v, i] as const)
      .sort((p, q) => q[0] - p[0] || p[1] - q[1])
      .slice(0, 5)
      .map(([, i]) => i);
  const [ta, tb] = [top(a), top(b)];
  return {
    kl,
    top1: ta[0] === tb[0],
    top5: ta.filter((i) => tb.includes(i)).length / 5,
    maxAbs: Math.max(...a.map((v, i) => Math.abs(v - b[i]!))),
  };
}

const column = (x: Float32Array, V: number, P: number, p: number) => Array.from({ length: V }, (_, v) => x[v * P + p]!);

describe('AgreementMeter', () => {
  it('averages KL, top-1 and top-5 over columns of (V, P) logits and over calls, as computed directly', () => {
    const [V, P] = [1000, 3];
    const a = logits(V, P, 1);
    // b: a nudged, and a third of it replaced.
    const b = a.map((v, i) => v + 0.05 * Math.sin(i));
    b.set(logits(V, 1, 7), 0); // the first V values (a third of each column) replaced: those columns differ more
    const meter = new AgreementMeter();
    meter.add(a, b, V, P);
    const single = logits(V, 1, 3);
    const singleB = single.map((v, i) => v - 0.2 * Math.cos(i));
    meter.add(single, singleB, V, 1);
    const cols = [
      ...[0, 1, 2].map((p) => direct(column(a, V, P, p), column(b, V, P, p))),
      direct(Array.from(single), Array.from(singleB)),
    ];
    const r = meter.result();
    expect(r.tokens).toBe(4);
    expect(r.non_finite).toBe(0);
    expect(r.kl).toBeCloseTo(cols.reduce((s, c) => s + c.kl, 0) / 4, 12);
    expect(r.kl).toBeGreaterThan(0);
    expect(r.top1).toBe(cols.filter((c) => c.top1).length / 4);
    expect(r.top5).toBeCloseTo(cols.reduce((s, c) => s + c.top5, 0) / 4, 12);
    expect(r.max_abs_diff).toBe(Math.max(...cols.map((c) => c.maxAbs)));
  });

  it('breaks ties in the top-5 by the lower index, as a sort would (logits of a few values, many equal)', () => {
    const [V, P] = [300, 5];
    const next = splitmix32(11);
    const a = Float32Array.from({ length: V * P }, () => next() % 4);
    const b = Float32Array.from({ length: V * P }, () => next() % 4);
    const meter = new AgreementMeter();
    meter.add(a, b, V, P, [4, 0, 2]);
    const cols = [4, 0, 2].map((p) => direct(column(a, V, P, p), column(b, V, P, p)));
    const r = meter.result();
    expect(r.top1).toBe(cols.filter((c) => c.top1).length / 3);
    expect(r.top5).toBeCloseTo(cols.reduce((s, c) => s + c.top5, 0) / 3, 12);
    expect(r.kl).toBeCloseTo(cols.reduce((s, c) => s + c.kl, 0) / 3, 12);
  });

  it('compares only the columns asked for, and identical logits agree exactly', () => {
    const [V, P] = [50, 4];
    const a = logits(V, P, 5);
    const meter = new AgreementMeter();
    meter.add(a, a, V, P, [1, 3]);
    expect(meter.result()).toEqual({ kl: 0, top1: 1, top5: 1, max_abs_diff: 0, tokens: 2, non_finite: 0 });
  });

  it('counts a column with NaN or infinity on either side as non-finite: KL and max |diff| infinite', () => {
    const V = 20;
    const a = logits(V, 1, 9);
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const side of ['a', 'b', 'both'] as const) {
        const meter = new AgreementMeter();
        const x = Float32Array.from(a);
        const y = Float32Array.from(a);
        if (side !== 'b') x[7] = bad;
        if (side !== 'a') y[7] = bad;
        meter.add(x, y, V, 1);
        meter.add(a, a, V, 1);
        const r = meter.result();
        expect(r.non_finite, `${bad} on ${side}`).toBe(1);
        expect(r.kl).toBe(Infinity);
        expect(r.max_abs_diff).toBe(Infinity);
        expect(r.top1).toBe(0.5);
      }
    }
  });
});
