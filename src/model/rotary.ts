// Rotary position embedding: the cos and sin tables of each layer kind's theta, and their application to
// queries and keys.

import { i32, type Val } from '../graph/builder.js';
import type { ModelGraph } from './model-graph.js';

/** cos and sin, each (1, 1, D/2, S). */
export type RopeTables = [cos: Val, sin: Val];

/** Above this many positions RoPE tables are built in the graph from two small ones (ropeTables). */
const ROPE_TABLE_MAX = 2048;
/** Positions per row of the factored RoPE tables: position p = ROPE_BLOCK * b + j. */
const ROPE_BLOCK = 64;

// Rotary embedding on (1, N, 1, S) viewed as (1, N/D, D, S) (q, k, or both at once: N = C or 2C):
// x * cos + rotate_half(x) * sin, written per half ([lo, hi] -> [lo cos - hi sin, hi cos + lo sin]) so that
// the tables hold each frequency once.
export function applyRope(model: ModelGraph, t: Val, [cos, sin]: RopeTables, name: string): Val {
  const { g, config } = model;
  const D = config.headDim;
  const N = g.type(t).shape[1] as number;
  const heads = g.op('reshape', { x: t, shape: i32([1, N / D, D, -1]) }, `${name}_heads`); // (1, N/D, D, S)
  const [lo, hi] = g.split(heads, 2, 2, `${name}_halves`); // (1, N/D, D/2, S) each
  const mul = (a: Val, b: Val, n: string) => g.op('mul', { x: a, y: b }, `${name}_${n}`);
  const outLo = g.op('sub', { x: mul(lo!, cos, 'lo_cos'), y: mul(hi!, sin, 'hi_sin') }, `${name}_out_lo`);
  const outHi = g.op('add', { x: mul(hi!, cos, 'hi_cos'), y: mul(lo!, sin, 'lo_sin') }, `${name}_out_hi`);
  const out = g.op('concat', { values: [outLo, outHi], axis: i32(2) }, `${name}_roped`); // (1, N/D, D, S)
  return g.op('reshape', { x: out, shape: i32([1, N, 1, -1]) }, `${name}_flat`); // (1, N, 1, S)
}

// Rotary tables (1, 1, D/2, S): cos and sin of position * theta^(-2k/D), one row per frequency k. Long
// tables would make an 8,192-token package 0.5% larger than a 512-token one, so beyond ROPE_TABLE_MAX they
// come from the angle-sum identities over p = 64b + j: cos = cosA cosB - sinA sinB, sin = sinA cosB + cosA sinB,
// with A = (D/2, S/64) and B = (D/2, 64) (float16 rounds each product: within a few float16 ulps of a table).
export function ropeTables(model: ModelGraph, theta: number, name: string): RopeTables {
  const { g, seqLen: S, maxLen } = model;
  const F = model.config.headDim / 2;
  const invFreq = (k: number) => Math.pow(theta, -(2 * k) / model.config.headDim);
  const table =
    (fn: (a: number) => number, n: number, step = 1) =>
    () => {
      const t = new Float32Array(F * n);
      for (let k = 0; k < F; k++) for (let s = 0; s < n; s++) t[k * n + s] = fn(s * step * invFreq(k));
      return t;
    };
  // The first `len` columns of cos and sin, (1, 1, F, len).
  const full = (len: number): RopeTables => {
    if (len <= ROPE_TABLE_MAX)
      return [
        g.weight(`${name}_cos`, [1, 1, F, len], table(Math.cos, len)),
        g.weight(`${name}_sin`, [1, 1, F, len], table(Math.sin, len)),
      ];
    const nb = Math.ceil(len / ROPE_BLOCK);
    const a = (fn: (a: number) => number, w: string) =>
      g.weight(`${name}_${w}`, [1, 1, F, nb, 1], table(fn, nb, ROPE_BLOCK)); // (1, 1, F, nb, 1)
    const b = (fn: (a: number) => number, w: string) =>
      g.weight(`${name}_${w}`, [1, 1, F, 1, ROPE_BLOCK], table(fn, ROPE_BLOCK)); // (1, 1, F, 1, 64)
    const [cosA, sinA, cosB, sinB] = [
      a(Math.cos, 'cos_blocks'),
      a(Math.sin, 'sin_blocks'),
      b(Math.cos, 'cos_offsets'),
      b(Math.sin, 'sin_offsets'),
    ];
    const mul = (p: Val, q: Val, n: string) => g.op('mul', { x: p, y: q }, `${name}_${n}`); // (1, 1, F, nb, 64)
    const flat = (v: Val, n: string) => {
      // (1, 1, F, nb*64)
      const t = g.op('reshape', { x: v, shape: i32([1, 1, F, nb * ROPE_BLOCK]) }, `${name}_${n}_flat`);
      return nb * ROPE_BLOCK === len ? t : g.slice(t, 3, 0, len, `${name}_${n}`); // (1, 1, F, len)
    };
    return [
      flat(g.op('sub', { x: mul(cosA, cosB, 'cc'), y: mul(sinA, sinB, 'ss') }, `${name}_cos_blocks_offsets`), 'cos'),
      flat(g.op('add', { x: mul(sinA, cosB, 'sc'), y: mul(cosA, sinB, 'cs') }, `${name}_sin_blocks_offsets`), 'sin'),
    ];
  };
  // Enumerated lengths: the first S columns of the longest table; packed: each token's position in its text.
  const at = (): Val => (model.packing ? model.packing.positions : model.positions());
  const pick = (t: Val, which: string) => {
    const cols = g.op(
      'gather',
      { x: g.op('reshape', { x: t, shape: i32([F, maxLen]) }, `${name}_${which}_table`), indices: at(), axis: i32(1) },
      `${name}_${which}_cols`,
    );
    return g.op('reshape', { x: cols, shape: i32([1, 1, F, -1]) }, `${name}_${which}_s`); // (1, 1, D/2, S)
  };
  if (typeof S === 'number' && !model.packing) return full(S);
  const [cos, sin] = full(maxLen);
  return [pick(cos, 'cos'), pick(sin, 'sin')];
}
