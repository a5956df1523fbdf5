// ModernBERT's config.json, in both generations of field names (transformers 4.x: global_rope_theta,
// global_attn_every_n_layers; 5.x: layer_types, rope_parameters). Every field that changes the math is
// read and checked; a value we do not implement, or a field we do not know, is an error, never a default.

import { ModernBertError } from './errors.js';

export type Activation = 'gelu' | 'gelu_tanh' | 'relu' | 'silu';
export type AttentionKind = 'global' | 'local';
export type HeadKind = 'mlm' | 'seqcls' | 'tokcls' | 'none';

export interface ModernBertConfig {
  architecture: string;
  /** Which head the checkpoint carries, from `architectures`. */
  head: HeadKind;
  vocabSize: number;
  hidden: number;
  intermediate: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  maxPositions: number;
  /** Sliding window width: query i sees key j when |i - j| <= localWindow / 2. */
  localWindow: number;
  layerTypes: AttentionKind[];
  globalRopeTheta: number;
  localRopeTheta: number;
  normEps: number;
  normBias: boolean;
  attentionBias: boolean;
  mlpBias: boolean;
  decoderBias: boolean;
  classifierBias: boolean;
  hiddenActivation: Activation;
  classifierActivation: Activation;
  classifierPooling: 'cls' | 'mean';
  tieWordEmbeddings: boolean;
  padTokenId: number;
  clsTokenId: number;
  sepTokenId: number;
  /** Label names by class index; empty for heads without labels. */
  labels: string[];
}

// ModernBertConfig's defaults (transformers), used only for fields that save_pretrained leaves out.
const DEFAULTS = {
  vocab_size: 50368,
  hidden_size: 768,
  intermediate_size: 1152,
  num_hidden_layers: 22,
  num_attention_heads: 12,
  max_position_embeddings: 8192,
  global_attn_every_n_layers: 3,
  local_attention: 128,
  global_rope_theta: 160000,
  local_rope_theta: 10000,
  norm_eps: 1e-5,
  norm_bias: false,
  attention_bias: false,
  mlp_bias: false,
  decoder_bias: true,
  classifier_bias: false,
  hidden_activation: 'gelu',
  classifier_activation: 'gelu',
  classifier_pooling: 'cls',
  tie_word_embeddings: true,
  pad_token_id: 50283,
  cls_token_id: 50281,
  sep_token_id: 50282,
} as const;

// Fields that do not change inference (training switches, dropout, bookkeeping of transformers'
// PretrainedConfig). Anything outside this list and the fields read below is an error.
const IGNORED = new Set([
  'architectures', 'model_type', 'transformers_version', 'torch_dtype', 'dtype', '_name_or_path',
  'attention_dropout', 'embedding_dropout', 'mlp_dropout', 'classifier_dropout', 'deterministic_flash_attn',
  'initializer_range', 'initializer_cutoff_factor', 'reference_compile', 'gradient_checkpointing',
  'sparse_prediction', 'sparse_pred_ignore_index', 'repad_logits_with_grad', 'bos_token_id', 'eos_token_id',
  'label2id', 'problem_type', 'output_hidden_states', 'output_attentions', 'return_dict', 'use_return_dict',
  'chunk_size_feed_forward', 'is_encoder_decoder', 'is_decoder', 'add_cross_attention', 'tie_encoder_decoder',
  'cross_attention_hidden_size', 'decoder_start_token_id', 'finetuning_task', 'tokenizer_class', 'prefix',
  'task_specific_params', 'torchscript', 'use_bfloat16', 'pruned_heads', 'use_cache', 'num_labels',
  // Left over in the released checkpoints' configs; transformers' ModernBERT never reads them.
  'position_embedding_type', 'layer_norm_eps',
]);

const ACTIVATIONS: Record<string, Activation> = {
  gelu: 'gelu',
  gelu_python: 'gelu',
  gelu_new: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  relu: 'relu',
  silu: 'silu',
  swish: 'silu',
};

const HEADS: Record<string, HeadKind> = {
  ModernBertForMaskedLM: 'mlm',
  ModernBertForSequenceClassification: 'seqcls',
  ModernBertForTokenClassification: 'tokcls',
  ModernBertModel: 'none',
};

type Json = Record<string, unknown>;

/** Parses and validates a config.json object; `source` names the file in error messages. */
export function parseConfig(json: unknown, source = 'config.json'): ModernBertConfig {
  const bad = (msg: string, field?: string): never => {
    throw new ModernBertError('BAD_CONFIG', `${source}: ${msg}`, { file: source, ...(field ? { field } : {}) });
  };
  const unsupported = (msg: string, field: string): never => {
    throw new ModernBertError('UNSUPPORTED', `${source}: ${msg}`, { file: source, field });
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad('not a JSON object');
  const c = json as Json;
  const read = new Set<string>();

  const num = (field: keyof typeof DEFAULTS | string, opts: { int?: boolean; min?: number } = {}): number => {
    read.add(field);
    const v = c[field] ?? (DEFAULTS as Record<string, unknown>)[field];
    if (typeof v !== 'number' || !Number.isFinite(v)) return bad(`"${field}" must be a number, got ${JSON.stringify(v)}`, field);
    if (opts.int && !Number.isInteger(v)) bad(`"${field}" must be an integer, got ${v}`, field);
    if (opts.min !== undefined && v < opts.min) bad(`"${field}" must be at least ${opts.min}, got ${v}`, field);
    return v;
  };
  const bool = (field: string): boolean => {
    read.add(field);
    const v = c[field] ?? (DEFAULTS as Record<string, unknown>)[field];
    if (typeof v !== 'boolean') return bad(`"${field}" must be true or false, got ${JSON.stringify(v)}`, field);
    return v;
  };
  // RoPE thetas: theta^(-2k/d) is infinite or complex for theta <= 0.
  const positive = (v: number, what: string, field = what): number => {
    if (!(v > 0) || !Number.isFinite(v)) bad(`"${what}" must be a positive number, got ${v}`, field);
    return v;
  };
  const activation = (field: string): Activation => {
    read.add(field);
    const v = c[field] ?? (DEFAULTS as Record<string, unknown>)[field];
    const a = typeof v === 'string' ? ACTIVATIONS[v] : undefined;
    if (!a) unsupported(`"${field}" = ${JSON.stringify(v)} is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`, field);
    return a!;
  };

  if (c.model_type !== undefined && c.model_type !== 'modernbert') {
    unsupported(`model_type ${JSON.stringify(c.model_type)} is not "modernbert"`, 'model_type');
  }
  const archs = c.architectures;
  let architecture = 'ModernBertModel';
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== 'string') {
      bad(`"architectures" must list exactly one class, got ${JSON.stringify(archs)}`, 'architectures');
    }
    architecture = (archs as string[])[0]!;
  }
  const head = HEADS[architecture];
  if (!head) unsupported(`"architectures" names ${architecture}, which is not supported (supported: ${Object.keys(HEADS).join(', ')})`, 'architectures');

  const vocabSize = num('vocab_size', { int: true, min: 1 });
  const hidden = num('hidden_size', { int: true, min: 1 });
  const intermediate = num('intermediate_size', { int: true, min: 1 });
  const numLayers = num('num_hidden_layers', { int: true, min: 1 });
  const numHeads = num('num_attention_heads', { int: true, min: 1 });
  if (hidden % numHeads !== 0) bad(`hidden_size ${hidden} is not divisible by num_attention_heads ${numHeads}`, 'num_attention_heads');
  const headDim = hidden / numHeads;
  if (headDim % 2 !== 0) bad(`head dimension ${headDim} must be even for rotary embeddings`, 'num_attention_heads');
  const maxPositions = num('max_position_embeddings', { int: true, min: 1 });
  const localWindow = num('local_attention', { int: true, min: 2 });
  if (localWindow % 2 !== 0) bad(`local_attention must be even, got ${localWindow}`, 'local_attention');

  // Which layers attend globally: 5.x lists them, 4.x gives a period.
  let layerTypes: AttentionKind[];
  read.add('layer_types');
  if (c.layer_types !== undefined && c.layer_types !== null) {
    const lt = c.layer_types;
    if (!Array.isArray(lt) || lt.length !== numLayers) {
      bad(`"layer_types" must list ${numLayers} entries, got ${JSON.stringify(lt)}`, 'layer_types');
    }
    layerTypes = (lt as unknown[]).map((t, i) => {
      if (t === 'full_attention') return 'global';
      if (t === 'sliding_attention') return 'local';
      return unsupported(`layer_types[${i}] = ${JSON.stringify(t)} is not supported (full_attention, sliding_attention)`, 'layer_types');
    });
    if (c.global_attn_every_n_layers !== undefined) read.add('global_attn_every_n_layers');
  } else {
    const every = num('global_attn_every_n_layers', { int: true, min: 1 });
    layerTypes = Array.from({ length: numLayers }, (_, i) => (i % every === 0 ? 'global' : 'local'));
  }

  // RoPE thetas: 5.x rope_parameters per layer type, else 4.x global/local_rope_theta.
  let globalRopeTheta: number;
  let localRopeTheta: number;
  read.add('rope_parameters');
  if (c.rope_parameters !== undefined && c.rope_parameters !== null) {
    const rp = c.rope_parameters as Json;
    if (typeof rp !== 'object' || Array.isArray(rp)) bad(`"rope_parameters" must be an object keyed by layer type, got ${JSON.stringify(rp)}`, 'rope_parameters');
    // ModernBERT keys them by layer type; anything else (a flat {rope_type, ...}, another kind) would be ignored.
    for (const k of Object.keys(rp)) {
      if (k !== 'full_attention' && k !== 'sliding_attention') {
        unsupported(`rope_parameters.${k} = ${JSON.stringify(rp[k])} is not supported (ModernBERT's rope_parameters hold full_attention and sliding_attention)`, 'rope_parameters');
      }
    }
    const theta = (kind: string, fallback: string): number => {
      const p = rp[kind] as Json | undefined;
      if (p === undefined) return positive(num(fallback), fallback);
      if (typeof p !== 'object' || p === null) return bad(`rope_parameters.${kind} must be an object`, 'rope_parameters');
      const type = p.rope_type ?? 'default';
      if (type !== 'default') unsupported(`rope_parameters.${kind}.rope_type ${JSON.stringify(type)} is not supported (default)`, 'rope_parameters');
      for (const k of Object.keys(p)) {
        if (k !== 'rope_type' && k !== 'rope_theta') unsupported(`rope_parameters.${kind}.${k} is not supported`, 'rope_parameters');
      }
      // transformers fills a missing rope_theta from the 4.x field or its default.
      if (p.rope_theta === undefined) return positive(num(fallback), fallback);
      if (typeof p.rope_theta !== 'number') return bad(`rope_parameters.${kind}.rope_theta must be a number`, 'rope_parameters');
      return positive(p.rope_theta, `rope_parameters.${kind}.rope_theta`, 'rope_parameters');
    };
    globalRopeTheta = theta('full_attention', 'global_rope_theta');
    localRopeTheta = theta('sliding_attention', 'local_rope_theta');
    for (const k of ['global_rope_theta', 'local_rope_theta']) if (c[k] !== undefined) read.add(k);
  } else {
    globalRopeTheta = positive(num('global_rope_theta'), 'global_rope_theta');
    localRopeTheta = positive(num('local_rope_theta'), 'local_rope_theta');
  }
  for (const k of ['rope_scaling', 'rope_theta']) {
    if (c[k] !== undefined && c[k] !== null) unsupported(`"${k}" is not supported by ModernBERT (use rope_parameters)`, k);
  }

  const pooling = c.classifier_pooling ?? DEFAULTS.classifier_pooling;
  read.add('classifier_pooling');
  if (pooling !== 'cls' && pooling !== 'mean') {
    unsupported(`classifier_pooling ${JSON.stringify(pooling)} is not supported (cls, mean)`, 'classifier_pooling');
  }

  // Labels: id2label names them; transformers leaves it out for two labels.
  read.add('id2label');
  let labels: string[] = [];
  if (head === 'seqcls' || head === 'tokcls') {
    const id2label = (c.id2label ?? undefined) as Json | undefined;
    if (id2label !== undefined && (typeof id2label !== 'object' || Array.isArray(id2label))) {
      bad(`"id2label" must be an object {"0": "name", ...}, got ${JSON.stringify(id2label)}`, 'id2label');
    }
    if (c.num_labels !== undefined && (typeof c.num_labels !== 'number' || !Number.isInteger(c.num_labels) || c.num_labels < 1)) {
      bad(`"num_labels" must be a positive integer, got ${JSON.stringify(c.num_labels)}`, 'num_labels');
    }
    const n = id2label ? Object.keys(id2label).length : typeof c.num_labels === 'number' ? c.num_labels : 2;
    labels = Array.from({ length: n }, (_, i) => {
      const name = id2label?.[String(i)];
      if (id2label && typeof name !== 'string') bad(`id2label must name every class 0..${n - 1}; "${i}" is missing`, 'id2label');
      return (name as string | undefined) ?? `LABEL_${i}`;
    });
  }

  const config: ModernBertConfig = {
    architecture,
    head: head!,
    vocabSize,
    hidden,
    intermediate,
    numLayers,
    numHeads,
    headDim,
    maxPositions,
    localWindow,
    layerTypes,
    globalRopeTheta,
    localRopeTheta,
    normEps: num('norm_eps', { min: 0 }),
    normBias: bool('norm_bias'),
    attentionBias: bool('attention_bias'),
    mlpBias: bool('mlp_bias'),
    decoderBias: bool('decoder_bias'),
    classifierBias: bool('classifier_bias'),
    hiddenActivation: activation('hidden_activation'),
    classifierActivation: activation('classifier_activation'),
    classifierPooling: pooling as 'cls' | 'mean',
    tieWordEmbeddings: bool('tie_word_embeddings'),
    padTokenId: num('pad_token_id', { int: true, min: 0 }),
    clsTokenId: num('cls_token_id', { int: true, min: 0 }),
    sepTokenId: num('sep_token_id', { int: true, min: 0 }),
    labels,
  };

  const unknown = Object.keys(c).filter((k) => !read.has(k) && !IGNORED.has(k));
  if (unknown.length > 0) {
    bad(`unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}: ` +
      'modernbert-ane does not know whether it changes the model', unknown[0]);
  }
  return config;
}
