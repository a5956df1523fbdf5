// ModernBERT, in Neural Engine layout, as one op graph.
//
// Activations are (1, C, 1, S): channels first, sequence last (the ANE pads the last axis to 64 bytes).
// Projections are 1x1 convolutions, norms run over the channel axis, attention is split per head with
// keys on the channel axis of the score tensor (1, S_key, 1, S_query), so softmax runs over axis 1.
// The same graph drives the CPU interpreter (float32 or float16 emulation) and the Core ML export.
//
// Two weight forms: 'layernorm' is the checkpoint as trained; 'rms' and 'l2' expect weights from
// rotation/fold.ts (norm scales folded into the next matrices, a zero-mean and possibly rotated residual
// stream), normalised without scale: 'rms' squares the stream (x*x), 'l2' divides by an l2 norm so that
// float16 never squares an outlier.

import type { ModernBertConfig, Activation, HeadKind } from './config.js';
import { ModernBertError } from './errors.js';
import { GraphBuilder, bool, i32, str, type Val } from './graph/builder.js';
import type { Dim, Graph } from './graph/ir.js';
import type { EmbeddingSpec } from './io/checkpoint.js';
import type { Target } from './ops/target.js';
import type { WeightSource } from './weights.js';

export type NormStyle = 'layernorm' | 'rms' | 'l2';
export type OutputHead = HeadKind | 'embedding';

/** What the graph is built from. */
export interface ModelSource {
  config: ModernBertConfig;
  weights: WeightSource;
  embedding?: EmbeddingSpec;
}

export interface BuildOptions {
  /** One sequence length (static shapes), or several (a symbolic length 'S' for enumerated shapes). */
  seqLen: number | number[];
  /** Float type of weights and activations. */
  dtype?: 'fp32' | 'fp16';
  norm?: NormStyle;
  /** Which output to build; defaults to the checkpoint's own head ('embedding' for sentence-transformers). */
  head?: OutputHead;
  /** Evaluate a per-token head only at these positions (CPU runs: predict and golden checks). */
  positions?: number[];
  /**
   * 'input': an additive `mask` input (1, S, 1, S), (batch, key, 1, query), 0 = attend, -1e4 = not (exact
   * attention masks; the reference project's interface). 'ids': no mask input; tokens equal to
   * pad_token_id are padding (one small input, which enumerated shapes need before iOS 18).
   */
  maskFrom?: 'input' | 'ids';
  /** Float type of the model's inputs and outputs when it differs from `dtype` (iOS 15 has no float16 I/O). */
  ioDtype?: 'fp32' | 'fp16';
  /** Deployment target whose op versions (and their defaults) the graph is written in. */
  target?: Target;
}

const MASKED = -1e4; // additive mask value: exp underflows to 0, and it is finite in float16

/** The head a model source provides by default. */
export function defaultHead(m: ModelSource): OutputHead {
  return m.embedding ? 'embedding' : m.config.head;
}

/** Builds ModernBERT's forward pass as a graph. Inputs: input_ids (1, S) int32, and the additive mask unless maskFrom is 'ids'. */
export function buildModel(m: ModelSource, o: BuildOptions): Graph {
  const c = m.config;
  const g = new GraphBuilder(o.dtype ?? 'fp32', o.target);
  const norm = o.norm ?? 'layernorm';
  const folded = norm !== 'layernorm';
  const lengths = typeof o.seqLen === 'number' ? [o.seqLen] : o.seqLen;
  for (const s of lengths) {
    if (!Number.isInteger(s) || s < 1 || s > c.maxPositions) {
      throw new ModernBertError('BAD_INPUT', `sequence length ${s} is outside 1..${c.maxPositions} (max_position_embeddings)`, { seqLen: s });
    }
  }
  const S: Dim = lengths.length === 1 ? lengths[0]! : 'S';
  const W = (name: string, shape?: number[]) => {
    const stored = m.weights.shape(name);
    return g.weight(name, shape ?? stored, () => m.weights.get(name).data);
  };
  const has = (name: string) => m.weights.has(name);

  const io = o.ioDtype ?? g.dtype;
  const toCompute = (v: Val) => (io === g.dtype ? v : g.op('cast', { x: v, dtype: str(g.dtype) }, `${v}_cast`));
  const output = (v: Val, name: string) => g.output(io === g.dtype ? v : g.op('cast', { x: v, dtype: str(io) }, `${name}_cast`), name);
  const ids = g.input('input_ids', 'int32', [1, S]);
  // MASKED where `cond` holds, else 0: cast and scale rather than select, whose type coremltools infers from
  // its two branches alone (ops/defs/iOS15/control_flow.py, select.type_inference), not from cond's shape.
  const maskWhere = (cond: Val, name: string): Val => g.op('mul', { x: g.op('cast', { x: cond, dtype: str(g.dtype) }, `${name}_f`), y: g.f(MASKED) }, name);
  // Padding as an additive term over keys: the (1, S, 1, S) input, or (1, S, 1, 1) from the pad id.
  const mask = (o.maskFrom ?? 'input') === 'input'
    ? toCompute(g.input('mask', io, [1, S, 1, S]))
    : g.op('reshape', { x: maskWhere(g.op('equal', { x: ids, y: i32(c.padTokenId) }, 'is_pad'), 'pad_mask'), shape: i32([1, -1, 1, 1]) }, 'key_mask');

  // ---- building blocks -------------------------------------------------------------------------------
  const conv = (x: Val, prefix: string, name: string): Val => {
    const [out, inp] = m.weights.shape(`${prefix}.weight`) as [number, number];
    const inputs: Record<string, Val> = { x, weight: W(`${prefix}.weight`, [out, inp, 1, 1]) };
    if (has(`${prefix}.bias`)) inputs.bias = W(`${prefix}.bias`);
    return g.op('conv', { ...inputs, strides: i32([1, 1]), pad_type: str('valid'), pad: i32([0, 0, 0, 0]), dilations: i32([1, 1]), groups: i32(1) }, name);
  };

  const act = (x: Val, a: Activation, name: string): Val => {
    if (a === 'gelu') return g.op('gelu', { x, mode: str('EXACT') }, name);
    if (a === 'gelu_tanh') return g.op('gelu', { x, mode: str('TANH_APPROXIMATION') }, name);
    return g.op(a, { x }, name);
  };

  // LayerNorm over channels, with the checkpoint's scale and bias.
  const layerNorm = (x: Val, prefix: string, name: string): Val => {
    const inputs: Record<string, Val> = { x, gamma: W(`${prefix}.weight`) };
    if (has(`${prefix}.bias`)) inputs.beta = W(`${prefix}.bias`);
    return g.op('layer_norm', { ...inputs, axes: i32([1]), epsilon: g.f(c.normEps) }, name);
  };

  // RMS norm without scale (the scale is folded into the readers): x / sqrt(mean(x^2) + eps).
  const rmsNorm = (x: Val, name: string): Val => {
    if (norm === 'rms') {
      const ms = g.op('reduce_mean', { x: g.op('mul', { x, y: x }, `${name}_sq`), axes: i32([1]), keep_dims: bool(true) }, `${name}_ms`);
      return g.op('mul', { x, y: g.op('rsqrt', { x: ms, epsilon: g.f(c.normEps) }, `${name}_rsqrt`) }, name);
    }
    // l2 form: ||[x, sqrt(C*eps)]|| = sqrt(C * (mean(x^2) + eps)), computed without squaring x in float16.
    const epsValue = Math.sqrt(c.hidden * c.normEps);
    const eps = typeof S === 'number'
      ? g.weight(`${name}_eps`, [1, 1, 1, S], () => new Float32Array(S).fill(epsValue))
      : g.op('fill_like', { ref_tensor: g.op('slice_by_index', { x, begin: i32([0, 0, 0, 0]), end: i32([1, 1, 1, 0]), end_mask: bool([true, false, true, true]) }, `${name}_chan`), value: g.f(epsValue) }, `${name}_eps`);
    const l2 = g.op('reduce_l2_norm', { x: g.op('concat', { values: [x, eps], axis: i32(1), interleave: bool(false) }, `${name}_xeps`), axes: i32([1]), keep_dims: bool(true) }, `${name}_l2`);
    return g.op('mul', { x: g.op('real_div', { x, y: l2 }, `${name}_div`), y: g.f(Math.sqrt(c.hidden)) }, name);
  };

  // Rotary tables (1, 1, D, S): cos and sin of position * theta^(-2k/D), the D/2 frequencies repeated twice.
  const rope = (theta: number, name: string): [Val, Val] => {
    const D = c.headDim;
    const maxS = Math.max(...lengths);
    const table = (fn: (a: number) => number) => () => {
      const t = new Float32Array(D * maxS);
      for (let d = 0; d < D; d++) {
        const invFreq = Math.pow(theta, -(2 * (d % (D / 2))) / D);
        for (let s = 0; s < maxS; s++) t[d * maxS + s] = fn(s * invFreq);
      }
      return t;
    };
    if (typeof S === 'number') return [g.weight(`${name}_cos`, [1, 1, D, S], table(Math.cos)), g.weight(`${name}_sin`, [1, 1, D, S], table(Math.sin))];
    // Enumerated lengths: gather the first S columns of the longest table.
    const pick = (fn: (a: number) => number, which: string) => {
      const full = g.weight(`${name}_${which}_table`, [D, maxS], table(fn));
      const cols = g.op('gather', { x: full, indices: positionsS(), axis: i32(1) }, `${name}_${which}_cols`);
      return g.op('reshape', { x: cols, shape: i32([1, 1, D, -1]) }, `${name}_${which}`);
    };
    return [pick(Math.cos, 'cos'), pick(Math.sin, 'sin')];
  };

  // 0..S-1 as a tensor, for graphs whose length is only known at run time.
  let posCache: Val | undefined;
  const positionsS = (): Val => {
    if (posCache) return posCache;
    const len = g.op('gather', { x: g.op('shape', { x: ids }, 'ids_shape'), indices: i32(1), axis: i32(0) }, 'seq_len');
    posCache = g.op('range_1d', { start: i32(0), end: len, step: i32(1) }, 'positions', [{ dtype: 'int32', shape: [S] }]);
    return posCache;
  };

  // Sliding window: query q sees key k when |k - q| <= window/2; the rest gets MASKED on top of the input mask.
  const localMask = (): Val => {
    const half = c.localWindow / 2;
    let outside: Val;
    if (typeof S === 'number') {
      outside = g.weight('window_outside', [1, S, 1, S], () => {
        const t = new Uint8Array(S * S);
        for (let k = 0; k < S; k++) for (let q = 0; q < S; q++) t[k * S + q] = Math.abs(k - q) > half ? 1 : 0;
        return t;
      }, 'bool');
    } else {
      const p = positionsS();
      const diff = g.op('sub', { x: g.op('expand_dims', { x: p, axes: i32([1]) }, 'pos_k'), y: g.op('expand_dims', { x: p, axes: i32([0]) }, 'pos_q') }, 'pos_diff');
      const far = g.op('logical_or', { x: g.op('greater', { x: diff, y: i32(half) }, 'pos_after'), y: g.op('less', { x: diff, y: i32(-half) }, 'pos_before') }, 'pos_far');
      outside = g.op('expand_dims', { x: far, axes: i32([0, 2]) }, 'window_outside'); // (1, S, 1, S)
    }
    return g.op('add', { x: mask, y: maskWhere(outside, 'window_mask') }, 'local_mask');
  };

  // ---- attention, per head -------------------------------------------------------------------------
  const ropeTables = { global: rope(c.globalRopeTheta, 'rope_global'), local: rope(c.localRopeTheta, 'rope_local') };
  const masks = { global: mask, local: c.layerTypes.includes('local') ? localMask() : mask };

  const applyRope = (x: Val, [cos, sin]: [Val, Val], name: string): Val => {
    const H = c.numHeads;
    const D = c.headDim;
    const x4 = g.op('reshape', { x, shape: i32([1, H, D, -1]) }, `${name}_heads`); // (1, H, D, S)
    const lo = g.op('slice_by_index', { x: x4, begin: i32([0, 0, 0, 0]), end: i32([1, H, D / 2, 0]), end_mask: bool([true, true, false, true]) }, `${name}_lo`);
    const hi = g.op('slice_by_index', { x: x4, begin: i32([0, 0, D / 2, 0]), end: i32([1, H, D, 0]), end_mask: bool([true, true, true, true]) }, `${name}_hi`);
    const rotated = g.op('concat', { values: [g.op('mul', { x: hi, y: g.f(-1) }, `${name}_neg`), lo], axis: i32(2), interleave: bool(false) }, `${name}_rot`);
    const out = g.op('add', { x: g.op('mul', { x: x4, y: cos }, `${name}_cos`), y: g.op('mul', { x: rotated, y: sin }, `${name}_sin`) }, `${name}_roped`);
    return g.op('reshape', { x: out, shape: i32([1, c.hidden, 1, -1]) }, `${name}_flat`); // (1, C, 1, S)
  };

  const attention = (x: Val, i: number): Val => {
    const p = `model.layers.${i}.attn`;
    const kind = c.layerTypes[i]!;
    const C = c.hidden;
    const D = c.headDim;
    const qkv = conv(x, `${p}.Wqkv`, `layers_${i}_qkv`); // (1, 3C, 1, S)
    const [q0, k0, v] = g.opN('split', { x: qkv, split_sizes: i32([C, C, C]), axis: i32(1) }, `layers_${i}_split`) as [Val, Val, Val];
    // Scaling q by 1/sqrt(D) before the scores touches C x S values instead of H x S x S (exact for D = 64).
    const q = g.op('mul', { x: applyRope(q0, ropeTables[kind], `layers_${i}_q`), y: g.f(1 / Math.sqrt(D)) }, `layers_${i}_q_scaled`);
    const k = applyRope(k0, ropeTables[kind], `layers_${i}_k`);
    const kT = g.op('transpose', { x: k, perm: i32([0, 3, 2, 1]) }, `layers_${i}_kT`); // (1, S, 1, C)
    const heads: Val[] = [];
    for (let h = 0; h < c.numHeads; h++) {
      const n = `layers_${i}_h${h}`;
      const chan = (t: Val, what: string) => g.op('slice_by_index', { x: t, begin: i32([0, h * D, 0, 0]), end: i32([1, (h + 1) * D, 1, 0]), end_mask: bool([true, false, true, true]) }, `${n}_${what}`); // (1, D, 1, S)
      const kh = g.op('slice_by_index', { x: kT, begin: i32([0, 0, 0, h * D]), end: i32([1, 0, 1, (h + 1) * D]), end_mask: bool([true, true, true, false]) }, `${n}_k`); // (1, S, 1, D)
      const scores = g.op('einsum', { values: [kh, chan(q, 'q')], equation: str('bkhc,bchq->bkhq') }, `${n}_scores`); // (1, S_k, 1, S_q)
      const probs = g.op('softmax', { x: g.op('add', { x: scores, y: masks[kind] }, `${n}_masked`), axis: i32(1) }, `${n}_probs`);
      heads.push(g.op('einsum', { values: [chan(v, 'v'), probs], equation: str('bchk,bkhq->bchq') }, `${n}_out`)); // (1, D, 1, S)
    }
    const merged = g.op('concat', { values: heads, axis: i32(1), interleave: bool(false) }, `layers_${i}_heads`);
    return conv(merged, `${p}.Wo`, `layers_${i}_attn_out`);
  };

  // ---- MLP: GeGLU ----------------------------------------------------------------------------------
  const mlp = (x: Val, i: number): Val => {
    const p = `model.layers.${i}.mlp`;
    const up = conv(x, `${p}.Wi`, `layers_${i}_mlp_in`); // (1, 2I, 1, S)
    const [input, gate] = g.opN('split', { x: up, split_sizes: i32([c.intermediate, c.intermediate]), axis: i32(1) }, `layers_${i}_mlp_split`) as [Val, Val];
    const h = g.op('mul', { x: act(input, c.hiddenActivation, `layers_${i}_mlp_act`), y: gate }, `layers_${i}_mlp_glu`);
    return conv(h, `${p}.Wo`, `layers_${i}_mlp_out`);
  };

  // ---- the body --------------------------------------------------------------------------------------
  const emb = W('model.embeddings.tok_embeddings.weight');
  const rows = g.op('gather', { x: emb, indices: ids, axis: i32(0) }, 'embed'); // (1, S, C)
  const embedded = g.op('expand_dims', { x: g.op('transpose', { x: rows, perm: i32([0, 2, 1]) }, 'embed_t'), axes: i32([2]) }, 'embed_4d'); // (1, C, 1, S)

  let x: Val;
  if (!folded) {
    x = layerNorm(embedded, 'model.embeddings.norm', 'embed_norm');
    g.tap('hidden_states.0', x);
  } else {
    x = embedded; // the folded stream starts as the centred, rotated embedding; layer 0 reads its RMS norm
  }
  g.tap('residual.0', x);
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}`;
    if (folded && i === 0) {
      const n0 = rmsNorm(x, 'embed_norm');
      x = g.op('add', { x: conv(n0, `${p}.residual`, 'layers_0_residual'), y: attention(n0, 0) }, 'layers_0_attn_res');
    } else {
      const attnIn = i === 0 ? x : folded ? rmsNorm(x, `layers_${i}_attn_norm`) : layerNorm(x, `${p}.attn_norm`, `layers_${i}_attn_norm`);
      x = g.op('add', { x, y: attention(attnIn, i) }, `layers_${i}_attn_res`);
    }
    const mlpIn = folded ? rmsNorm(x, `layers_${i}_mlp_norm`) : layerNorm(x, `${p}.mlp_norm`, `layers_${i}_mlp_norm`);
    x = g.op('add', { x, y: mlp(mlpIn, i) }, `layers_${i}_mlp_res`);
    g.tap(`residual.${i + 1}`, x);
    if (!folded && i + 1 < c.numLayers) g.tap(`hidden_states.${i + 1}`, x);
  }
  const last = folded
    ? conv(rmsNorm(x, 'final_norm_rms'), 'model.final_norm.unrotate', 'final_norm')
    : layerNorm(x, 'model.final_norm', 'final_norm');
  g.tap(`hidden_states.${c.numLayers}`, last);

  // ---- heads ---------------------------------------------------------------------------------------
  const head = o.head ?? defaultHead(m);
  const predictionHead = (h: Val): Val => layerNorm(act(conv(h, 'head.dense', 'head_dense'), c.classifierActivation, 'head_act'), 'head.norm', 'head_norm');
  const atPositions = (h: Val): Val =>
    o.positions ? g.op('gather', { x: h, indices: i32(o.positions), axis: i32(3) }, 'at_positions') : h;

  // Pooling over real tokens: which keys are padding is read from the mask column of query 0.
  const pool = (h: Val, how: 'cls' | 'mean'): Val => {
    if (how === 'cls') return g.op('slice_by_index', { x: h, begin: i32([0, 0, 0, 0]), end: i32([1, c.hidden, 1, 1]), end_mask: bool([true, true, true, false]) }, 'pool_cls');
    const col = g.type(mask).shape[3] === 1 ? mask : g.op('slice_by_index', { x: mask, begin: i32([0, 0, 0, 0]), end: i32([1, 0, 1, 1]), end_mask: bool([true, true, true, false]) }, 'pool_mask'); // (1, S, 1, 1)
    const w = g.op('cast', { x: g.op('greater', { x: col, y: g.f(MASKED / 2) }, 'pool_real'), dtype: str(g.dtype) }, 'pool_w');
    const sum = g.op('matmul', { x: g.op('reshape', { x: h, shape: i32([c.hidden, -1]) }, 'pool_h2d'), y: g.op('reshape', { x: w, shape: i32([-1, 1]) }, 'pool_w2d'), transpose_x: bool(false), transpose_y: bool(false) }, 'pool_sum'); // (C, 1)
    const count = g.op('reduce_sum', { x: w, axes: i32([1]), keep_dims: bool(false) }, 'pool_count'); // (1, 1, 1)
    return g.op('reshape', { x: g.op('real_div', { x: sum, y: g.op('reshape', { x: count, shape: i32([1, 1]) }, 'pool_count2d') }, 'pool_mean'), shape: i32([1, c.hidden, 1, 1]) }, 'pool_out');
  };

  switch (head) {
    case 'mlm':
      output(conv(predictionHead(atPositions(last)), 'decoder', 'decoder'), 'logits'); // (1, V, 1, S)
      break;
    case 'tokcls':
      output(conv(predictionHead(atPositions(last)), 'classifier', 'classifier'), 'logits'); // (1, L, 1, S)
      break;
    case 'seqcls': {
      const logits = conv(predictionHead(pool(last, c.classifierPooling)), 'classifier', 'classifier'); // (1, L, 1, 1)
      output(g.op('reshape', { x: logits, shape: i32([1, c.labels.length]) }, 'classifier_2d'), 'logits');
      break;
    }
    case 'embedding': {
      const spec = m.embedding ?? { pooling: 'mean', normalize: false };
      let e = pool(last, spec.pooling);
      if (spec.normalize) e = g.op('real_div', { x: e, y: g.op('reduce_l2_norm', { x: e, axes: i32([1]), keep_dims: bool(true) }, 'embedding_l2') }, 'embedding_unit');
      output(g.op('reshape', { x: e, shape: i32([1, c.hidden]) }, 'embedding_2d'), 'embedding');
      break;
    }
    case 'none':
      output(g.op('identity', { x: atPositions(last) }, 'hidden'), 'hidden_states'); // (1, C, 1, S)
      break;
  }
  return g.graph;
}
