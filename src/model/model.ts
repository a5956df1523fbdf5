// ModernBERT, in Neural Engine layout, as one op graph: the embeddings, the residual loop of attention and
// MLP layers, the final norm and a head, top to bottom. The same graph drives the CPU interpreter (float32
// or float16 emulation), onnxruntime and the Core ML export.
//
// Activations are (1, C, 1, S): channels first, sequence last (the ANE pads the last axis to 64 bytes).
// Projections are 1x1 convolutions, norms run over the channel axis, attention is split per head with
// keys on the channel axis of the score tensor (1, S_key, 1, S_query), so softmax runs over axis 1.
// Beside this file: the rotary tables (rotary.ts), the attention masks (masks.ts), banded local attention
// for long inputs (banded.ts), several texts per window (packing.ts), the split decoder of very large
// vocabularies (decoder.ts); the build options and weight forms are in options.ts.

import { ModernBertError } from '../errors.js';
import { GraphBuilder, bool, i32, str, type Val } from '../graph/builder.js';
import type { Graph, Literal } from '../ir/graph.js';
import { FINAL_UNROTATE, LAYER0_RESIDUAL, TOK_EMBEDDINGS } from '../rotation/fold.js';
import { attentionHead } from './attention-head.js';
import { bandedAttention, bandLayout, type Band } from './banded.js';
import { blockAttention, blockLayout, type Blocks } from './blocked.js';
import type { Activation, AttentionKind } from './config.js';
import { modelGraph, startGraph, type ModelGraph } from './model-graph.js';
import { MAX_CHANNELS, splitDecoder } from './decoder.js';
import { localMask, MASKED, paddingMask, perChunk, type MaskFor } from './masks.js';
import { defaultHead, type BuildOptions, type ModelSource, type OutputHead } from './options.js';
import { checkPack, packing, perText, poolPerText, textMask } from './packing.js';
import { applyRope, ropeTables, type RopeTables } from './rotary.js';

/** How each kind of layer attends: its rotary tables, its masks, and the banded layout of local layers. */
interface AttentionPlan {
  rope: Record<AttentionKind, RopeTables>;
  /** Global layers' mask; local layers' when they are not banded (all keys within the window, or a mask input). */
  masks: Record<AttentionKind, MaskFor>;
  band?: Band;
  /** Every layer within blocks of packed short texts (blocked.ts). */
  blocks?: Blocks;
}

/**
 * Builds ModernBERT's forward pass as a graph. Inputs: input_ids (1, S) int32, plus `mask` ('input') or
 * `attention_mask` ('attention'), or `segment_ids` (pack).
 */
export function buildModel(source: ModelSource, o: BuildOptions): Graph {
  const { g, config, S, lengths, toCompute } = startGraph(source, o);
  const ids = g.input('input_ids', 'int32', [1, S]);
  if (o.pack !== undefined) checkPack(o.pack, S, o.maskFrom);
  // Packed, padding is segment 0: no mask input, and local layers may run banded.
  const maskFrom = o.maskFrom ?? (o.pack !== undefined ? 'ids' : 'input');
  let padMask: Val | undefined;
  const mask = (): Val => (padMask ??= paddingMask(g, config, S, ids, { ...o, maskFrom }, toCompute));
  if (o.pack === undefined) mask(); // unpacked graphs read it; built here, it keeps their op order
  const model = modelGraph(g, source, o, S, lengths, ids, mask);
  if (o.pack !== undefined) model.packing = packing(model, o.pack);
  const last = body(model, attentionPlan(model, maskFrom, o.packBlocks));
  finish(g, o, head(model, last, o.head ?? defaultHead(source), o.positions));
  return g.graph;
}

/**
 * Rotary tables and masks of each layer kind; local layers banded when the length is static and padding per
 * key; every layer within blocks when packed texts each lie in one block (`inBlocks`, blocked.ts).
 */
function attentionPlan(model: ModelGraph, maskFrom: BuildOptions['maskFrom'], inBlocks?: number): AttentionPlan {
  const { config, seqLen: S } = model;
  const global = ropeTables(model, config.globalRopeTheta, 'rope_global');
  const local = ropeTables(model, config.localRopeTheta, 'rope_local');
  if (inBlocks !== undefined) {
    if (!model.packing || typeof S !== 'number')
      throw new ModernBertError('BAD_ARGUMENT', '`packBlocks` goes with `pack` and one sequence length');
    const blocks = blockLayout(model, model.packing, S, inBlocks);
    return {
      rope: { global, local },
      masks: { global: () => blocks.masks.global, local: () => blocks.masks.local },
      blocks,
    };
  }
  const mask = model.packing ? textMask(model, model.packing) : perChunk(model, model.paddingMask);
  const plan: AttentionPlan = { rope: { global, local }, masks: { global: mask, local: mask } };
  if (config.layerTypes.includes('local') && model.maxLen - 1 > config.localWindow / 2) {
    if (typeof S === 'number' && maskFrom !== 'input') plan.band = bandLayout(model, S);
    else {
      const window = localMask(model); // all pairs, the window masked in the graph
      plan.masks.local = perChunk(model, () => window);
    }
  }
  return plan;
}

/** Whether a head reads which tokens are padding (mean pooling), so that a head alone needs the ids too. */
function headNeedsPadding(m: ModelSource, kind: OutputHead): boolean {
  if (kind === 'seqcls') return m.config.classifierPooling === 'mean';
  if (kind === 'embedding') return (m.embedding?.pooling ?? 'mean') === 'mean';
  return false;
}

/**
 * Builds one head alone, for hot-swapping heads over a body package (the whole model with head 'none'):
 * input `hidden_states` (1, C, 1, S), the body's output, plus input_ids (or the mask) when the head pools
 * over real tokens only. The same head() as buildModel's, so body + head computes what the whole model does.
 */
export function buildHead(source: ModelSource, o: BuildOptions): Graph {
  const { g, config, S, lengths, toCompute } = startGraph(source, o);
  const kind = o.head ?? defaultHead(source);
  if (kind === 'none')
    throw new ModernBertError('BAD_ARGUMENT', 'head "none" is the body itself: it has no head package');
  const hidden = toCompute(g.input('hidden_states', o.ioDtype ?? g.dtype, [1, config.hidden, 1, S])); // (1, C, 1, S)
  const ids = headNeedsPadding(source, kind) ? g.input('input_ids', 'int32', [1, S]) : '';
  const padMask = ids ? paddingMask(g, config, S, ids, o, toCompute) : '';
  const model = modelGraph(g, source, o, S, lengths, ids, () => padMask);
  const bodyOnly = (): Val => {
    throw new ModernBertError('INTERNAL', 'a head read a value of the body');
  };
  finish(g, o, head({ ...model, positions: bodyOnly, epsChannel: bodyOnly }, hidden, kind, o.positions));
  return g.graph;
}

/** The graph's one output, cast to the I/O dtype. */
function finish(g: GraphBuilder, o: BuildOptions, out: { value: Val; name: string }): void {
  const io = o.ioDtype ?? g.dtype;
  g.output(io === g.dtype ? out.value : g.op('cast', { x: out.value, dtype: str(io) }, `${out.name}_cast`), out.name);
}

// ---- the body: embeddings, the residual loop, the final norm -----------------------------------------

function body(model: ModelGraph, plan: AttentionPlan): Val {
  const { g, config } = model;
  const folded = model.norm !== 'layernorm';
  const table = checkpointWeight(model, TOK_EMBEDDINGS); // (V, C)
  const rows = g.op('gather', { x: table, indices: model.ids, axis: i32(0) }, 'embed'); // (1, S, C)
  const columns = g.op('transpose', { x: rows, perm: i32([0, 2, 1]) }, 'embed_t'); // (1, C, S)
  const embedded = g.op('expand_dims', { x: columns, axes: i32([2]) }, 'embed_4d'); // (1, C, 1, S)
  // Folded, the stream starts as the centred, rotated embedding and layer 0 reads its RMS norm.
  let h = folded ? embedded : layerNorm(model, embedded, 'model.embeddings.norm', 'embed_norm');
  if (!folded) g.tap('hidden_states.0', h);
  g.tap('residual.0', h);
  for (let layer = 0; layer < config.numLayers; layer++) {
    if (folded && layer === 0) h = foldedLayer0Attention(model, plan, h);
    else {
      // Layer 0's attention norm is the identity: the embedding norm comes just before it.
      const attended = attention(model, plan, layer === 0 ? h : norm(model, h, layer, 'attn'), layer);
      h = g.op('add', { x: h, y: attended }, `layers_${layer}_attn_res`);
    }
    const mixed = mlp(model, norm(model, h, layer, 'mlp'), layer);
    h = g.op('add', { x: h, y: mixed }, `layers_${layer}_mlp_res`);
    g.tap(`residual.${layer + 1}`, h);
    if (!folded && layer + 1 < config.numLayers) g.tap(`hidden_states.${layer + 1}`, h);
  }
  const last = folded
    ? conv(model, rmsNorm(model, h, 'final_norm_rms'), FINAL_UNROTATE, 'final_norm')
    : layerNorm(model, h, 'model.final_norm', 'final_norm');
  return g.tap(`hidden_states.${config.numLayers}`, last);
}

// Folded layer 0: the original adds the embedding norm's output to the stream, so its residual path is a
// matrix of its own (rotation/fold.ts LAYER0_RESIDUAL), beside attention over the same normalised input.
function foldedLayer0Attention(model: ModelGraph, plan: AttentionPlan, h: Val): Val {
  const n0 = rmsNorm(model, h, 'embed_norm');
  const residual = conv(model, n0, LAYER0_RESIDUAL, 'layers_0_residual');
  return model.g.op('add', { x: residual, y: attention(model, plan, n0, 0) }, 'layers_0_attn_res');
}

// ---- attention, per head -----------------------------------------------------------------------------

function attention(model: ModelGraph, plan: AttentionPlan, h: Val, layer: number): Val {
  const { g, config } = model;
  const kind = config.layerTypes[layer]!;
  const C = config.hidden;
  const qkv = conv(model, h, `model.layers.${layer}.attn.Wqkv`, `layers_${layer}_qkv`); // (1, 3C, 1, S)
  const [qk, v] = g.split(qkv, 1, [2 * C, C], `layers_${layer}_split`); // (1, 2C, 1, S), (1, C, 1, S)
  // q and k rotated as one tensor of 2H heads, then cut apart.
  const qkRotated = applyRope(model, qk, plan.rope[kind], `layers_${layer}_qk`); // (1, 2C, 1, S)
  const [qRotated, k] = g.split(qkRotated, 1, 2, `layers_${layer}_qk_split`); // (1, C, 1, S) each
  // Scaling q by 1/sqrt(D) before the scores touches C x S values instead of H x S x S (exact for D = 64).
  const q = g.op('mul', { x: qRotated, y: g.f(1 / Math.sqrt(config.headDim)) }, `layers_${layer}_q_scaled`);
  const merged = plan.blocks
    ? blockAttention(model, plan.blocks, plan.blocks.masks[kind], q, k, v, layer)
    : kind === 'local' && plan.band
      ? bandedAttention(model, plan.band, q, k, v, layer)
      : fullAttention(model, plan.masks[kind], q, k, v, layer); // (1, C, 1, S)
  return conv(model, merged, `model.layers.${layer}.attn.Wo`, `layers_${layer}_attn_out`);
}

// All pairs, per head, queries in chunks of model.chunk: scores (1, S_k, 1, chunk) with keys on the channel
// axis. Each of q, k and v is cut into heads by one split (and q into chunks by one more).
function fullAttention(model: ModelGraph, maskFor: MaskFor, q: Val, k: Val, v: Val, layer: number): Val {
  const { g, config, seqLen: S, chunk } = model;
  const H = config.numHeads;
  const n = `layers_${layer}`;
  const kT = g.op('transpose', { x: k, perm: i32([0, 3, 2, 1]) }, `${n}_kT`); // (1, S, 1, C)
  const ks = g.split(kT, 3, H, `${n}_k`); // (1, S, 1, D) per head
  const vs = g.split(v, 1, H, `${n}_v`); // (1, D, 1, S) per head
  const chunks = typeof S === 'number' && S > chunk ? Math.ceil(S / chunk) : 0;
  const spans = chunks
    ? Array.from({ length: chunks }, (_, j) => [j * chunk, Math.min(S as number, (j + 1) * chunk)] as const)
    : [null];
  const qChunks = chunks
    ? g.split(
        q,
        3,
        spans.map((s) => s![1] - s![0]),
        `${n}_q_chunks`,
      )
    : [q]; // (1, C, 1, chunk)
  const qs = qChunks.map((qc, j) => g.split(qc, 1, H, chunks ? `${n}_c${j}_q` : `${n}_q`)); // [chunk][head] (1, D, 1, chunk)
  const masks = spans.map((span, j) => maskFor(span, `${n}_mask${span ? `_c${j}` : ''}`));
  const heads = ks.map((kh, head) => {
    const m = `${n}_h${head}`;
    const outs = spans.map((span, j) =>
      attentionHead(model, kh, qs[j]![head]!, masks[j]!, vs[head]!, span ? `${m}_c${j}` : m),
    );
    return outs.length === 1 ? outs[0]! : g.op('concat', { values: outs, axis: i32(3) }, `${m}_out`); // (1, D, 1, S)
  });
  return g.op('concat', { values: heads, axis: i32(1) }, `${n}_heads`); // (1, C, 1, S)
}

// ---- MLP: GeGLU --------------------------------------------------------------------------------------

function mlp(model: ModelGraph, h: Val, layer: number): Val {
  const { g, config } = model;
  const up = conv(model, h, `model.layers.${layer}.mlp.Wi`, `layers_${layer}_mlp_in`); // (1, 2I, 1, S)
  const I = config.intermediate;
  const [input, gate] = g.opN(
    'split',
    { x: up, split_sizes: i32([I, I]), axis: i32(1) },
    `layers_${layer}_mlp_split`,
  ) as [Val, Val];
  const activated = activation(model, input, config.hiddenActivation, `layers_${layer}_mlp_act`); // (1, I, 1, S)
  const glu = g.op('mul', { x: activated, y: gate }, `layers_${layer}_mlp_glu`);
  return conv(model, glu, `model.layers.${layer}.mlp.Wo`, `layers_${layer}_mlp_out`);
}

// ---- norms, projections, activations -------------------------------------------------------------------

/** The pre-norm of a layer's attention or MLP: the checkpoint's LayerNorm, or the folded RMS norm. */
function norm(model: ModelGraph, h: Val, layer: number, which: 'attn' | 'mlp'): Val {
  const name = `layers_${layer}_${which}_norm`;
  return model.norm === 'layernorm'
    ? layerNorm(model, h, `model.layers.${layer}.${which}_norm`, name)
    : rmsNorm(model, h, name);
}

// LayerNorm over channels, with the checkpoint's scale and bias.
function layerNorm(model: ModelGraph, h: Val, prefix: string, name: string): Val {
  const inputs: Record<string, Val> = { x: h, gamma: checkpointWeight(model, `${prefix}.weight`) };
  if (model.source.weights.has(`${prefix}.bias`)) inputs.beta = checkpointWeight(model, `${prefix}.bias`);
  return model.g.op('layer_norm', { ...inputs, axes: i32([1]), epsilon: model.g.f(model.config.normEps) }, name);
}

// RMS norm without scale (the scale is folded into the readers): x / sqrt(mean(x^2) + eps).
function rmsNorm(model: ModelGraph, h: Val, name: string): Val {
  const { g, config } = model;
  if (model.norm === 'rms') {
    const ms = g.op(
      'reduce_mean',
      { x: g.op('mul', { x: h, y: h }, `${name}_sq`), axes: i32([1]), keep_dims: bool(true) },
      `${name}_ms`,
    );
    return g.op('mul', { x: h, y: g.op('rsqrt', { x: ms, epsilon: g.f(config.normEps) }, `${name}_rsqrt`) }, name);
  }
  // l2 form: ||[x, sqrt(C*eps)]|| = sqrt(C * (mean(x^2) + eps)), computed without squaring x in float16.
  const withEps = g.op('concat', { values: [h, model.epsChannel()], axis: i32(1) }, `${name}_xeps`); // (1, C+1, 1, S)
  const l2 = g.op('reduce_l2_norm', { x: withEps, axes: i32([1]), keep_dims: bool(true) }, `${name}_l2`); // (1,1,1,S)
  return g.op('mul', { x: g.op('real_div', { x: h, y: l2 }, `${name}_div`), y: g.f(Math.sqrt(config.hidden)) }, name);
}

/** A linear layer as a 1x1 convolution: weight [out, in] as (out, in, 1, 1), bias when the checkpoint has one. */
function conv(model: ModelGraph, h: Val, prefix: string, name: string): Val {
  const [out, inp] = model.source.weights.shape(`${prefix}.weight`) as [number, number];
  const inputs: Record<string, Val> = { x: h, weight: checkpointWeight(model, `${prefix}.weight`, [out, inp, 1, 1]) };
  if (model.source.weights.has(`${prefix}.bias`)) inputs.bias = checkpointWeight(model, `${prefix}.bias`);
  return model.g.op('conv', inputs, name);
}

function activation(model: ModelGraph, h: Val, a: Activation, name: string): Val {
  if (a === 'gelu') return model.g.op('gelu', { x: h, mode: str('EXACT') }, name);
  if (a === 'gelu_tanh') return model.g.op('gelu', { x: h, mode: str('TANH_APPROXIMATION') }, name);
  return model.g.op(a, { x: h }, name);
}

/** A checkpoint tensor as a graph constant, loaded when the graph needs it. */
function checkpointWeight(model: ModelGraph, name: string, shape?: number[]): Val {
  const weights = model.source.weights;
  return model.g.weight(
    name,
    shape ?? weights.shape(name),
    () => weights.get(name).data,
    undefined,
    name,
    weights.location?.(name),
  );
}

// ---- heads ---------------------------------------------------------------------------------------------

function head(
  model: ModelGraph,
  last: Val,
  kind: OutputHead,
  positions: number[] | 'input' | undefined,
): { value: Val; name: string } {
  const { g, config, packing: packed } = model;
  // ModernBERT's prediction head: dense, activation, LayerNorm, (1, C, 1, S) -> (1, C, 1, S).
  const predictionHead = (h: Val): Val => {
    const dense = conv(model, h, 'head.dense', 'head_dense');
    return layerNorm(
      model,
      activation(model, dense, config.classifierActivation, 'head_act'),
      'head.norm',
      'head_norm',
    );
  };
  const indices = (): Val | Literal =>
    positions === 'input' ? g.input('head_positions', 'int32', ['P']) : i32(positions!);
  const atPositions = (h: Val): Val =>
    positions ? g.op('gather', { x: h, indices: indices(), axis: i32(3) }, 'at_positions') : h; // (1, C, 1, P)
  switch (kind) {
    case 'mlm': {
      const hidden = g.tap('head_hidden', predictionHead(atPositions(last)));
      return { value: decoder(model, hidden), name: 'logits' }; // (1, V, 1, S) or (1, V/K, K, S)
    }
    case 'tokcls':
      // (1, L, 1, S)
      return { value: conv(model, predictionHead(atPositions(last)), 'classifier', 'classifier'), name: 'logits' };
    case 'seqcls': {
      const pooled = predictionHead(pool(model, last, config.classifierPooling));
      const logits = conv(model, pooled, 'classifier', 'classifier'); // (1, L, 1, 1), packed (1, L, 1, K)
      const rows = packed
        ? perText(model, packed, logits, 'classifier') // (1, K, L)
        : g.op('reshape', { x: logits, shape: i32([1, config.labels.length]) }, 'classifier_2d'); // (1, L)
      return { value: rows, name: 'logits' };
    }
    case 'embedding': {
      const spec = model.source.embedding ?? { pooling: 'mean', normalize: false };
      let e = pool(model, last, spec.pooling);
      if (spec.normalize) {
        let l2 = g.op('reduce_l2_norm', { x: e, axes: i32([1]), keep_dims: bool(true) }, 'embedding_l2');
        // An absent text's row is 0: dividing by a floor keeps it 0 instead of 0/0 (no real embedding is that short).
        if (packed) l2 = g.op('maximum', { x: l2, y: g.f(1e-4) }, 'embedding_l2_floor');
        e = g.op('real_div', { x: e, y: l2 }, 'embedding_unit');
      }
      const rows = packed
        ? perText(model, packed, e, 'embedding') // (1, K, C)
        : g.op('reshape', { x: e, shape: i32([1, config.hidden]) }, 'embedding_2d'); // (1, C)
      return { value: rows, name: 'embedding' };
    }
    case 'none':
      return { value: g.op('identity', { x: atPositions(last) }, 'hidden'), name: 'hidden_states' }; // (1, C, 1, S)
  }
}

// The tied decoder: one convolution, or K of them when the vocabulary passes the ANE's channel limit (decoder.ts).
function decoder(model: ModelGraph, h: Val): Val {
  const [V] = model.source.weights.shape('decoder.weight') as [number, number];
  return V <= MAX_CHANNELS ? conv(model, h, 'decoder', 'decoder') : splitDecoder(model, h);
}

// Pooling over real tokens: which keys are padding is read from the mask column of query 0. Packed, one
// column per text (packing.ts).
function pool(model: ModelGraph, h: Val, how: 'cls' | 'mean'): Val {
  const { g, config } = model;
  if (model.packing) return poolPerText(model, model.packing, h, how);
  if (how === 'cls') return g.slice(h, 3, 0, 1, 'pool_cls');
  const mask = model.paddingMask();
  const col = g.type(mask).shape[3] === 1 ? mask : g.slice(mask, 3, 0, 1, 'pool_mask'); // (1, S, 1, 1)
  const w = g.op(
    'cast',
    { x: g.op('greater', { x: col, y: g.f(MASKED / 2) }, 'pool_real'), dtype: str(g.dtype) },
    'pool_w',
  );
  const hidden2d = g.op('reshape', { x: h, shape: i32([config.hidden, -1]) }, 'pool_h2d'); // (C, S)
  const sum = g.op(
    'matmul',
    { x: hidden2d, y: g.op('reshape', { x: w, shape: i32([-1, 1]) }, 'pool_w2d') },
    'pool_sum',
  ); // (C, 1)
  const count = g.op('reduce_sum', { x: w, axes: i32([1]), keep_dims: bool(false) }, 'pool_count'); // (1, 1, 1)
  const mean = g.op(
    'real_div',
    { x: sum, y: g.op('reshape', { x: count, shape: i32([1, 1]) }, 'pool_count2d') },
    'pool_mean',
  ); // (C, 1)
  return g.op('reshape', { x: mean, shape: i32([1, config.hidden, 1, 1]) }, 'pool_out'); // (1, C, 1, 1)
}
