// An independent float64 ModernBERT forward pass, written straight from the semantics in docs/FIXTURES.md
// (token-major loops, no graph, no kernels). The tests first check it against the transformers goldens,
// then use it as the oracle for configurations the goldens do not cover (other windows, thetas, eps,
// layer types, activations, pooling, head and label counts).

import type { Activation, ModernBertConfig } from '../../src/model/config.js';
import type { Tensor } from '../../src/io/weights.js';

export interface ReferenceOutput {
  /** hidden[i]: [S][H] after layer i (0 = embeddings after their norm; L = after the final norm). */
  hidden: Float64Array[][];
  /** Per-token heads: [S][V or labels]; sequence classification: [1][labels]. */
  logits?: Float64Array[];
  /** Pooled (cls or masked mean) last hidden state, before any head. */
  pooled: { cls: Float64Array; mean: Float64Array };
}

/** erf to ~1e-15 (series near 0, continued fraction beyond). */
export function erf(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a < 2.5) {
    // Maclaurin series: 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
    let term = a;
    let sum = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc continued fraction (Lentz): erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...))))
    let f = a;
    const tiny = 1e-300;
    let C = f;
    let D = 0;
    for (let n = 1; n < 500; n++) {
      const an = n / 2;
      D = a + an * D;
      D = D === 0 ? tiny : 1 / D;
      C = a + an / C;
      if (C === 0) C = tiny;
      const delta = C * D;
      f *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  }
  return x < 0 ? -r : r;
}

export function activate(a: Activation, x: number): number {
  switch (a) {
    case 'gelu':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_tanh':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case 'relu':
      return Math.max(0, x);
    case 'silu':
      return x / (1 + Math.exp(-x));
  }
}

type Weights = (name: string) => Tensor | undefined;

/** Runs one sequence; `attention` marks real tokens (default all). */
export function referenceForward(
  c: ModernBertConfig,
  weights: Weights,
  ids: ArrayLike<number>,
  attention?: ArrayLike<number>,
): ReferenceOutput {
  const S = ids.length;
  const H = c.hidden;
  const D = c.headDim;
  const real = Array.from({ length: S }, (_, s) => !attention || attention[s] !== 0);
  const w = (name: string): Tensor => {
    const t = weights(name);
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t;
  };
  const opt = (name: string) => weights(name);

  const norm = (x: Float64Array, prefix: string): Float64Array => {
    const g = w(`${prefix}.weight`).data;
    const b = opt(`${prefix}.bias`)?.data;
    let mean = 0;
    for (let i = 0; i < x.length; i++) mean += x[i]!;
    mean /= x.length;
    let v = 0;
    for (let i = 0; i < x.length; i++) v += (x[i]! - mean) ** 2;
    v /= x.length;
    const inv = 1 / Math.sqrt(v + c.normEps);
    return Float64Array.from(x, (xi, i) => (xi - mean) * inv * g[i]! + (b ? b[i]! : 0));
  };
  const linear = (x: Float64Array, prefix: string): Float64Array => {
    const W = w(`${prefix}.weight`);
    const b = opt(`${prefix}.bias`)?.data;
    const [rows, cols] = W.shape as [number, number];
    const out = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let s = b ? b[r]! : 0;
      for (let k = 0; k < cols; k++) s += W.data[r * cols + k]! * x[k]!;
      out[r] = s;
    }
    return out;
  };
  const rope = (x: Float64Array, pos: number, theta: number): Float64Array => {
    // x holds all heads; each head of D dims rotates its halves.
    const out = new Float64Array(x.length);
    for (let h = 0; h < c.numHeads; h++) {
      for (let d = 0; d < D; d++) {
        const k = d % (D / 2);
        const angle = pos * Math.pow(theta, -(2 * k) / D);
        const rotated = d < D / 2 ? -x[h * D + d + D / 2]! : x[h * D + d - D / 2]!;
        out[h * D + d] = x[h * D + d]! * Math.cos(angle) + rotated * Math.sin(angle);
      }
    }
    return out;
  };

  const E = w('model.embeddings.tok_embeddings.weight');
  let x: Float64Array[] = Array.from(ids, (id) =>
    norm(Float64Array.from(E.data.subarray(id * H, (id + 1) * H)), 'model.embeddings.norm'),
  );
  const hidden: Float64Array[][] = [x];

  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    const local = c.layerTypes[i] === 'local';
    const theta = local ? c.localRopeTheta : c.globalRopeTheta;
    const attnIn = i === 0 ? x : x.map((t) => norm(t, `${p}.attn_norm`));
    const qkv = attnIn.map((t) => linear(t, `${p}.attn.Wqkv`));
    const q = qkv.map((t, s) => rope(t.subarray(0, H), s, theta));
    const k = qkv.map((t, s) => rope(t.subarray(H, 2 * H), s, theta));
    const v = qkv.map((t) => t.subarray(2 * H, 3 * H));
    const merged = Array.from({ length: S }, () => new Float64Array(H));
    for (let h = 0; h < c.numHeads; h++) {
      for (let qi = 0; qi < S; qi++) {
        const allowed: number[] = [];
        for (let ki = 0; ki < S; ki++)
          if (real[ki] && (!local || Math.abs(qi - ki) <= c.localWindow / 2)) allowed.push(ki);
        const scores = allowed.map((ki) => {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qi]![h * D + d]! * k[ki]![h * D + d]!;
          return s / Math.sqrt(D);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        allowed.forEach((ki, j) => {
          for (let d = 0; d < D; d++) merged[qi]![h * D + d]! += (e[j]! / z) * v[ki]![h * D + d]!;
        });
      }
    }
    x = x.map((t, s) => {
      const o = linear(merged[s]!, `${p}.attn.Wo`);
      return Float64Array.from(t, (xi, j) => xi + o[j]!);
    });
    x = x.map((t) => {
      const up = linear(norm(t, `${p}.mlp_norm`), `${p}.mlp.Wi`);
      const I = c.intermediate;
      const g = new Float64Array(I);
      for (let j = 0; j < I; j++) g[j] = activate(c.hiddenActivation, up[j]!) * up[I + j]!;
      const o = linear(g, `${p}.mlp.Wo`);
      return Float64Array.from(t, (xi, j) => xi + o[j]!);
    });
    hidden.push(i + 1 < c.numLayers ? x : x.map((t) => norm(t, 'model.final_norm')));
  }
  const last = hidden[c.numLayers]!;
  const mean = new Float64Array(H);
  const n = real.filter(Boolean).length;
  last.forEach((t, s) => {
    if (real[s]) for (let j = 0; j < H; j++) mean[j]! += t[j]! / n;
  });
  const pooled = { cls: last[0]!, mean };

  const predictionHead = (t: Float64Array) =>
    norm(
      linear(t, 'head.dense').map((y) => activate(c.classifierActivation, y)),
      'head.norm',
    );
  let logits: Float64Array[] | undefined;
  if (c.head === 'mlm') logits = last.map((t) => linear(predictionHead(t), 'decoder'));
  if (c.head === 'tokcls') logits = last.map((t) => linear(predictionHead(t), 'classifier'));
  if (c.head === 'seqcls')
    logits = [linear(predictionHead(c.classifierPooling === 'cls' ? pooled.cls : pooled.mean), 'classifier')];
  return { hidden, logits, pooled };
}
