// ModernBERT's config.json, in both generations of field names (transformers 4.x: global_rope_theta,
// global_attn_every_n_layers; 5.x: layer_types, rope_parameters). Every field that changes the math is
// read and checked; a value we do not implement, or a field we do not know, is an error, never a default.

import { ModernBertError } from '../errors.js';
import { brief } from '../io/files.js';

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
  'architectures',
  'model_type',
  'transformers_version',
  'torch_dtype',
  'dtype',
  '_name_or_path',
  'attention_dropout',
  'embedding_dropout',
  'mlp_dropout',
  'classifier_dropout',
  'deterministic_flash_attn',
  'initializer_range',
  'initializer_cutoff_factor',
  'reference_compile',
  'gradient_checkpointing',
  'sparse_prediction',
  'sparse_pred_ignore_index',
  'repad_logits_with_grad',
  'bos_token_id',
  'eos_token_id',
  'label2id',
  'problem_type',
  'output_hidden_states',
  'output_attentions',
  'return_dict',
  'use_return_dict',
  'chunk_size_feed_forward',
  'is_encoder_decoder',
  'is_decoder',
  'add_cross_attention',
  'tie_encoder_decoder',
  'cross_attention_hidden_size',
  'decoder_start_token_id',
  'finetuning_task',
  'tokenizer_class',
  'prefix',
  'task_specific_params',
  'torchscript',
  'use_bfloat16',
  'pruned_heads',
  'use_cache',
  'num_labels',
  // Left over in the released checkpoints' configs; transformers' ModernBERT never reads them.
  'position_embedding_type',
  'layer_norm_eps',
]);

// Maps, not object literals: a name such as "toString" or "constructor" must not find Object.prototype's.
const ACTIVATIONS = new Map<string, Activation>([
  ['gelu', 'gelu'],
  ['gelu_python', 'gelu'],
  ['gelu_new', 'gelu_tanh'],
  ['gelu_pytorch_tanh', 'gelu_tanh'],
  ['relu', 'relu'],
  ['silu', 'silu'],
  ['swish', 'silu'],
]);

const HEADS = new Map<string, HeadKind>([
  ['ModernBertForMaskedLM', 'mlm'],
  ['ModernBertForSequenceClassification', 'seqcls'],
  ['ModernBertForTokenClassification', 'tokcls'],
  ['ModernBertModel', 'none'],
]);

// Upper bounds on the integers of a config, checked before anything is sized from them, so that a
// corrupt value (num_hidden_layers 1e9) is an error, not an allocation that exhausts memory. Each is
// far above any released model: the largest vocabularies are about 260k, ModernBERT-large has 28 layers
// of width 1024, and its context is 8k positions.
export const CONFIG_LIMITS = {
  vocab_size: 1 << 22,
  hidden_size: 1 << 16,
  intermediate_size: 1 << 18,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  max_position_embeddings: 1 << 20,
  local_attention: 1 << 20,
  global_attn_every_n_layers: 1024,
  /** Classes of a classifier head (id2label entries or num_labels). */
  num_labels: 100_000,
} as const;

type Json = Record<string, unknown>;

/** Parses and validates a config.json object; `source` names the file in error messages. */
export function parseConfig(json: unknown, source = 'config.json'): ModernBertConfig {
  const r = new ConfigReader(json, source);
  const { architecture, head } = architectureOf(r);
  const vocabSize = r.num('vocab_size', { int: true, min: 1 });
  const hidden = r.num('hidden_size', { int: true, min: 1 });
  const intermediate = r.num('intermediate_size', { int: true, min: 1 });
  const numLayers = r.num('num_hidden_layers', { int: true, min: 1 });
  const numHeads = r.num('num_attention_heads', { int: true, min: 1 });
  if (hidden % numHeads !== 0)
    r.bad(`hidden_size ${hidden} is not divisible by num_attention_heads ${numHeads}`, 'num_attention_heads');
  const headDim = hidden / numHeads;
  if (headDim % 2 !== 0) r.bad(`head dimension ${headDim} must be even for rotary embeddings`, 'num_attention_heads');
  const maxPositions = r.num('max_position_embeddings', { int: true, min: 1 });
  const localWindow = r.num('local_attention', { int: true, min: 2 });
  if (localWindow % 2 !== 0) r.bad(`local_attention must be even, got ${localWindow}`, 'local_attention');
  const layerTypes = layerTypesOf(r, numLayers);
  const { globalRopeTheta, localRopeTheta } = ropeThetas(r);
  const classifierPooling = poolingOf(r);
  const labels = labelsOf(r, head);
  const config: ModernBertConfig = {
    architecture,
    head,
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
    normEps: r.num('norm_eps', { min: 0 }),
    normBias: r.bool('norm_bias'),
    attentionBias: r.bool('attention_bias'),
    mlpBias: r.bool('mlp_bias'),
    decoderBias: r.bool('decoder_bias'),
    classifierBias: r.bool('classifier_bias'),
    hiddenActivation: r.activation('hidden_activation'),
    classifierActivation: r.activation('classifier_activation'),
    classifierPooling,
    tieWordEmbeddings: r.bool('tie_word_embeddings'),
    padTokenId: r.num('pad_token_id', { int: true, min: 0 }),
    clsTokenId: r.num('cls_token_id', { int: true, min: 0 }),
    sepTokenId: r.num('sep_token_id', { int: true, min: 0 }),
    labels,
  };
  checkTokenIds(r, config);
  r.checkAllRead();
  return config;
}

/** One config.json object being read: its fields with their defaults, the fields read so far, and its errors. */
class ConfigReader {
  readonly c: Json;
  private readonly read = new Set<string>();

  constructor(
    json: unknown,
    private readonly source: string,
  ) {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) this.bad('not a JSON object');
    this.c = json as Json;
  }

  bad(msg: string, field?: string): never {
    throw new ModernBertError('BAD_CONFIG', `${this.source}: ${msg}`, {
      file: this.source,
      ...(field ? { field } : {}),
    });
  }

  unsupported(msg: string, field: string): never {
    throw new ModernBertError('UNSUPPORTED', `${this.source}: ${msg}`, { file: this.source, field });
  }

  /** Marks a field as known, whether or not it is present. */
  mark(name: string): void {
    this.read.add(name);
  }

  /** A field's value, or its default when absent; own properties only. */
  field(name: string): unknown {
    const { c } = this;
    return (
      (Object.hasOwn(c, name) ? c[name] : undefined) ??
      (Object.hasOwn(DEFAULTS, name) ? (DEFAULTS as Record<string, unknown>)[name] : undefined)
    );
  }

  num(name: string, opts: { int?: boolean; min?: number } = {}): number {
    this.read.add(name);
    const v = this.field(name);
    if (typeof v !== 'number' || !Number.isFinite(v))
      return this.bad(`"${name}" must be a number, got ${brief(v)}`, name);
    if (opts.int && !Number.isInteger(v)) this.bad(`"${name}" must be an integer, got ${v}`, name);
    if (opts.min !== undefined && v < opts.min) this.bad(`"${name}" must be at least ${opts.min}, got ${v}`, name);
    const max = Object.hasOwn(CONFIG_LIMITS, name) ? CONFIG_LIMITS[name as keyof typeof CONFIG_LIMITS] : undefined;
    if (max !== undefined && v > max)
      this.bad(`"${name}" is ${v}, more than the ${max} this tool accepts (the file is probably corrupt)`, name);
    return v;
  }

  bool(name: string): boolean {
    this.read.add(name);
    const v = this.field(name);
    if (typeof v !== 'boolean') return this.bad(`"${name}" must be true or false, got ${brief(v)}`, name);
    return v;
  }

  // RoPE thetas: theta^(-2k/d) is infinite or complex for theta <= 0.
  positive(v: number, what: string, field = what): number {
    if (!(v > 0) || !Number.isFinite(v)) this.bad(`"${what}" must be a positive number, got ${v}`, field);
    return v;
  }

  activation(name: string): Activation {
    this.read.add(name);
    const v = this.field(name);
    const a = typeof v === 'string' ? ACTIVATIONS.get(v) : undefined;
    if (!a)
      this.unsupported(
        `"${name}" = ${brief(v)} is not supported (supported: ${[...ACTIVATIONS.keys()].join(', ')})`,
        name,
      );
    return a!;
  }

  /** Refuses any field that was neither read nor listed as ignored. */
  checkAllRead(): void {
    const unknown = Object.keys(this.c).filter((k) => !this.read.has(k) && !IGNORED.has(k));
    if (unknown.length > 0) {
      this.bad(
        `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}: ` +
          'modernbert-ane does not know whether it changes the model',
        unknown[0],
      );
    }
  }
}

/** The model class and its head, from model_type and architectures (a bare ModernBertModel when absent). */
function architectureOf(r: ConfigReader): { architecture: string; head: HeadKind } {
  const { c } = r;
  if (c.model_type !== undefined && c.model_type !== 'modernbert') {
    r.unsupported(`model_type ${brief(c.model_type)} is not "modernbert"`, 'model_type');
  }
  const archs = c.architectures;
  let architecture = 'ModernBertModel';
  if (archs !== undefined && archs !== null) {
    if (!Array.isArray(archs) || archs.length !== 1 || typeof archs[0] !== 'string') {
      r.bad(`"architectures" must list exactly one class, got ${brief(archs)}`, 'architectures');
    }
    architecture = (archs as string[])[0]!;
  }
  const head = HEADS.get(architecture);
  if (!head)
    return r.unsupported(
      `"architectures" names ${brief(architecture)}, which is not supported (supported: ${[...HEADS.keys()].join(', ')})`,
      'architectures',
    );
  return { architecture, head };
}

/** Which layers attend globally: 5.x lists them, 4.x gives a period. */
function layerTypesOf(r: ConfigReader, numLayers: number): AttentionKind[] {
  const { c } = r;
  r.mark('layer_types');
  if (c.layer_types === undefined || c.layer_types === null) {
    const every = r.num('global_attn_every_n_layers', { int: true, min: 1 });
    return Array.from({ length: numLayers }, (_, i) => (i % every === 0 ? 'global' : 'local'));
  }
  const lt = c.layer_types;
  if (!Array.isArray(lt) || lt.length !== numLayers) {
    r.bad(`"layer_types" must list ${numLayers} entries, got ${brief(lt)}`, 'layer_types');
  }
  const layerTypes = (lt as unknown[]).map((t, i): AttentionKind => {
    if (t === 'full_attention') return 'global';
    if (t === 'sliding_attention') return 'local';
    return r.unsupported(
      `layer_types[${i}] = ${brief(t)} is not supported (full_attention, sliding_attention)`,
      'layer_types',
    );
  });
  if (c.global_attn_every_n_layers !== undefined) r.mark('global_attn_every_n_layers');
  return layerTypes;
}

/** RoPE thetas: 5.x rope_parameters per layer type, else 4.x global/local_rope_theta. */
function ropeThetas(r: ConfigReader): { globalRopeTheta: number; localRopeTheta: number } {
  const { c } = r;
  let thetas: { globalRopeTheta: number; localRopeTheta: number };
  r.mark('rope_parameters');
  if (c.rope_parameters !== undefined && c.rope_parameters !== null) {
    thetas = ropeParameters(r, c.rope_parameters as Json);
    for (const k of ['global_rope_theta', 'local_rope_theta']) if (c[k] !== undefined) r.mark(k);
  } else {
    thetas = {
      globalRopeTheta: r.positive(r.num('global_rope_theta'), 'global_rope_theta'),
      localRopeTheta: r.positive(r.num('local_rope_theta'), 'local_rope_theta'),
    };
  }
  for (const k of ['rope_scaling', 'rope_theta']) {
    if (c[k] !== undefined && c[k] !== null)
      r.unsupported(`"${k}" is not supported by ModernBERT (use rope_parameters)`, k);
  }
  return thetas;
}

/** 5.x rope_parameters: {full_attention: {rope_type, rope_theta}, sliding_attention: {...}}. */
function ropeParameters(r: ConfigReader, rp: Json): { globalRopeTheta: number; localRopeTheta: number } {
  if (typeof rp !== 'object' || Array.isArray(rp))
    r.bad(`"rope_parameters" must be an object keyed by layer type, got ${brief(rp)}`, 'rope_parameters');
  // ModernBERT keys them by layer type; anything else (a flat {rope_type, ...}, another kind) would be ignored.
  for (const k of Object.keys(rp)) {
    if (k !== 'full_attention' && k !== 'sliding_attention') {
      r.unsupported(
        `rope_parameters.${k} = ${brief(rp[k])} is not supported (ModernBERT's rope_parameters hold full_attention and sliding_attention)`,
        'rope_parameters',
      );
    }
  }
  const theta = (kind: string, fallback: string): number => {
    const p = rp[kind] as Json | undefined;
    if (p === undefined) return r.positive(r.num(fallback), fallback);
    if (typeof p !== 'object' || p === null)
      return r.bad(`rope_parameters.${kind} must be an object`, 'rope_parameters');
    const type = p.rope_type ?? 'default';
    if (type !== 'default')
      r.unsupported(`rope_parameters.${kind}.rope_type ${brief(type)} is not supported (default)`, 'rope_parameters');
    for (const k of Object.keys(p)) {
      if (k !== 'rope_type' && k !== 'rope_theta')
        r.unsupported(`rope_parameters.${kind}.${k} is not supported`, 'rope_parameters');
    }
    // transformers fills a missing rope_theta from the 4.x field or its default.
    if (p.rope_theta === undefined) return r.positive(r.num(fallback), fallback);
    if (typeof p.rope_theta !== 'number')
      return r.bad(`rope_parameters.${kind}.rope_theta must be a number`, 'rope_parameters');
    return r.positive(p.rope_theta, `rope_parameters.${kind}.rope_theta`, 'rope_parameters');
  };
  const globalRopeTheta = theta('full_attention', 'global_rope_theta');
  return { globalRopeTheta, localRopeTheta: theta('sliding_attention', 'local_rope_theta') };
}

function poolingOf(r: ConfigReader): 'cls' | 'mean' {
  const pooling = r.c.classifier_pooling ?? DEFAULTS.classifier_pooling;
  r.mark('classifier_pooling');
  if (pooling !== 'cls' && pooling !== 'mean') {
    r.unsupported(`classifier_pooling ${brief(pooling)} is not supported (cls, mean)`, 'classifier_pooling');
  }
  return pooling as 'cls' | 'mean';
}

/** Label names of a classifier head: id2label names them; transformers leaves it out for two labels. */
function labelsOf(r: ConfigReader, head: HeadKind): string[] {
  const { c } = r;
  r.mark('id2label');
  if (head !== 'seqcls' && head !== 'tokcls') return [];
  const id2label = (c.id2label ?? undefined) as Json | undefined;
  if (id2label !== undefined && (typeof id2label !== 'object' || Array.isArray(id2label))) {
    r.bad(`"id2label" must be an object {"0": "name", ...}, got ${brief(id2label)}`, 'id2label');
  }
  if (
    c.num_labels !== undefined &&
    (typeof c.num_labels !== 'number' || !Number.isInteger(c.num_labels) || c.num_labels < 1)
  ) {
    r.bad(`"num_labels" must be a positive integer, got ${brief(c.num_labels)}`, 'num_labels');
  }
  const n = id2label ? Object.keys(id2label).length : typeof c.num_labels === 'number' ? c.num_labels : 2;
  if (n > CONFIG_LIMITS.num_labels)
    r.bad(
      `${id2label ? 'id2label lists' : '"num_labels" is'} ${n} classes, more than the ${CONFIG_LIMITS.num_labels} this tool accepts`,
      id2label ? 'id2label' : 'num_labels',
    );
  return Array.from({ length: n }, (_, i) => {
    const name = id2label && Object.hasOwn(id2label, String(i)) ? id2label[String(i)] : undefined;
    if (id2label && typeof name !== 'string')
      r.bad(`id2label must name every class 0..${n - 1}; "${i}" is missing`, 'id2label');
    return (name as string | undefined) ?? `LABEL_${i}`;
  });
}

// Every token id must name a row of the embeddings: a default pad id (50283) beyond a small vocabulary
// would give a package that cannot run.
function checkTokenIds(r: ConfigReader, config: ModernBertConfig): void {
  const { c } = r;
  const { vocabSize } = config;
  for (const [name, id] of [
    ['pad_token_id', config.padTokenId],
    ['cls_token_id', config.clsTokenId],
    ['sep_token_id', config.sepTokenId],
  ] as const) {
    if (id >= vocabSize)
      r.bad(
        `"${name}" is ${id}${Object.hasOwn(c, name) ? '' : ' (the default)'}, outside the vocabulary of ${vocabSize} tokens (0..${vocabSize - 1})`,
        name,
      );
  }
  for (const name of ['bos_token_id', 'eos_token_id']) {
    const v = Object.hasOwn(c, name) ? c[name] : undefined;
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= vocabSize) {
      r.bad(`"${name}" must be a token id in 0..${vocabSize - 1}, got ${brief(v)}`, name);
    }
  }
}
