// Architectures of the released ModernBERT models, as config.json (transformers 4.x field names) for
// synthetic checkpoints: `base` is the synth-base fixture's configuration, `large` ModernBERT-large's, and
// `small` a few-layer ModernBERT with their vocabulary and attention pattern (about 15 M parameters, 60 MB), for
// trying the tools and for tests that want the real layout without a base model's size.

/** Names of the built-in synthetic architectures. */
export type SynthPreset = 'small' | 'base' | 'large';

const shared = {
  architectures: ['ModernBertForMaskedLM'],
  model_type: 'modernbert',
  vocab_size: 50368,
  global_attn_every_n_layers: 3,
  local_attention: 128,
  global_rope_theta: 160000.0,
  local_rope_theta: 10000.0,
  max_position_embeddings: 8192,
  pad_token_id: 50283,
  cls_token_id: 50281,
  sep_token_id: 50282,
  bos_token_id: 50281,
  eos_token_id: 50282,
  norm_eps: 1e-5,
  norm_bias: false,
  attention_bias: false,
  mlp_bias: false,
  decoder_bias: true,
  classifier_bias: false,
  classifier_pooling: 'mean',
  classifier_activation: 'gelu',
  hidden_activation: 'gelu',
  tie_word_embeddings: true,
};

export const SYNTH_PRESETS: Readonly<Record<SynthPreset, Readonly<Record<string, unknown>>>> = {
  small: { ...shared, hidden_size: 256, intermediate_size: 384, num_hidden_layers: 4, num_attention_heads: 4 },
  base: { ...shared, hidden_size: 768, intermediate_size: 1152, num_hidden_layers: 22, num_attention_heads: 12 },
  large: { ...shared, hidden_size: 1024, intermediate_size: 2624, num_hidden_layers: 28, num_attention_heads: 16 },
};
