// What decides where Core ML runs an op, as data: one row per rule, each with the check it makes, the device
// it implies (null: it only warns), its public source and how sure that source is. Apple says there is no
// static list (placement "changes based on device generation, operating system version, tensor sizes etc.",
// apple/coremltools#1780), so these rules predict; MLComputePlan on a Mac measures. A user who measured one
// can correct it with a rules file (readRulesFile) instead of editing code: docs/ANE.md shows how.

import { ModernBertError } from '../errors.js';
import { brief, readJsonFile } from '../io/files.js';

/** Where an op runs: the Neural Engine, the CPU, or the GPU or the CPU (Core ML picks between the two). */
export type Device = 'ane' | 'cpu' | 'gpu-or-cpu';

/** How sure a source is: [A] Apple documented, [C] community observation, [P] via private APIs, [G] inferred, [M] measured by the user. */
export type Confidence = 'A' | 'C' | 'P' | 'G' | 'M';

/** One rule. */
export interface Rule {
  id: RuleId;
  /** The row of the published checklist this rule comes from (0: not a row of it). */
  row: number;
  /** What it checks, in a few words. */
  check: string;
  /** The device an op it matches runs on; null when the rule only warns. */
  device: Device | null;
  /** Whether a match is reported as a warning (convert prints it, inspect lists it). */
  warn: boolean;
  source: string;
  confidence: Confidence;
  /** false: the rule is not applied (a rules file can switch one off). */
  enabled: boolean;
  /** A limit the rule compares with (op count, bytes, elements), where it has one. */
  threshold?: number;
}

/** The rules' ids, in the order the predictor applies the placement rules (the first that matches decides). */
export const RULE_IDS = [
  'blocklist',
  'io-cast',
  'fp32',
  'int-bool',
  'gather',
  'dynamic',
  'rank',
  'axis-size',
  'fused-attention',
  'default',
  'flexible-shapes',
  'io-last-axis',
  'linear-weights',
  'einsum-form',
  'softmax-axis',
  'mask-constant',
  'norm-epsilon',
  'last-axis-layout',
  'channel-broadcast',
  'weight-size',
  'op-count',
  'small-graph',
] as const;
export type RuleId = (typeof RULE_IDS)[number];

const R = (
  id: RuleId,
  row: number,
  check: string,
  device: Device | null,
  warn: boolean,
  confidence: Confidence,
  source: string,
  threshold?: number,
): Rule => ({
  id,
  row,
  check,
  device,
  warn,
  source,
  confidence,
  enabled: true,
  ...(threshold === undefined ? {} : { threshold }),
});

/** The rules, as published (sources: the ANE placement checklist, docs/ANE.md lists them with links). */
export const DEFAULT_RULES: readonly Rule[] = [
  // ---- placement: the first of these that matches an op decides its device
  R(
    'blocklist',
    14,
    'RNN/LSTM/GRU, NMS, custom layers, pooling kernel > 13 or stride > 2, upsampling > 2x',
    'cpu',
    true,
    'C',
    'aseemw in apple/coremltools#1780 (RNN, Apple); hollance/neural-engine docs/unsupported-layers.md ("some are guesses")',
  ),
  R(
    'io-cast',
    1,
    'a cast of a model input or to a model output (int32 ids to int16, float32 I/O to float16)',
    'cpu',
    false,
    'A',
    'apple/ml-ane-transformers README (DistilBERT: the ops off the Neural Engine are the embedding lookup and its input casts)',
  ),
  R(
    'fp32',
    1,
    'a float32 tensor (input, output or constant) outside the input/output casts',
    'gpu-or-cpu',
    true,
    'A',
    'coremltools typed-execution guide ("float 32 ... GPU and CPU"); apple/coreai-models neural_engine_rules.md ("fp32 falls back")',
  ),
  R(
    'int-bool',
    2,
    'int32 or bool arithmetic (a non-constant int32 or bool input or output)',
    'cpu',
    false,
    'A',
    'apple/coreai-models neural_engine_rules.md (supported dtypes fp16, int8, int16); tinygrad extra/accel/ane/README.md [C]',
  ),
  R(
    'gather',
    3,
    'gather, gather_nd, gather_along_axis, tile, topk, band_part',
    'cpu',
    false,
    'A',
    'apple/ml-ane-transformers README ("4 of the 606 operations ... embedding lookup ... on the CPU"); smpanaro/CoreMLInspect (gather G|C) [C]',
  ),
  R(
    'dynamic',
    4,
    'control flow, a slice with run-time bounds, a reshape to a run-time shape',
    'cpu',
    true,
    'C',
    'smpanaro/more-ane-transformers src/experiments/NOTES.md ("anything dynamic ... you get moved to CPU")',
  ),
  R(
    'rank',
    6,
    'a tensor of rank above 5',
    'gpu-or-cpu',
    true,
    'A',
    'TobyRoseman in apple/coremltools#1723 and #1330; onnxruntime#14212 ("ANE does not support blob with rank: 6") [C]',
  ),
  R(
    'axis-size',
    7,
    "an axis beyond N, C <= 65536 or D, H, W <= 16384 (the ANE compiler's own limits)",
    'gpu-or-cpu',
    true,
    'C',
    'Anemll .cursorrules; Desert-Ant-Labs/desert-ant-core#187; FluidInference/FluidAudio#121 (compiler error text)',
  ),
  R(
    'fused-attention',
    10,
    'fused scaled_dot_product_attention: Neural Engine only in float16 with at least ~2M score elements',
    'gpu-or-cpu',
    true,
    'C',
    'apple/coreai-models neural_engine_rules.md ("no fused SDPA path") [A]; vx-lang/Vx#437 (ANE-preferred from ~2M elements)',
    2 ** 21,
  ),
  R(
    'default',
    0,
    'a float16 (or int8/int16) op that no rule above moves',
    'ane',
    false,
    'A',
    'coremltools typed-execution guide (float16 runs on the Neural Engine); apple/ml-ane-transformers (the ops of an ANE transformer)',
  ),
  // ---- warnings: they do not move an op, they flag what is known to cost speed, memory or placement
  R(
    'flexible-shapes',
    5,
    'a range-flexible input (only its default shape runs on the ANE), or more than 128 enumerated shapes',
    null,
    true,
    'A',
    'Apple Engineer, developer.apple.com/forums/thread/724930; coremltools flexible-inputs guide',
    128,
  ),
  R(
    'io-last-axis',
    8,
    'a model input or output whose last axis holds fewer than 32 float16 elements (64 bytes)',
    null,
    true,
    'A',
    'apple/coreai-models neural_engine_rules.md; desert-ant-core#187 (a 6-wide output kept the last projection off the ANE) [C]',
    32,
  ),
  R(
    'linear-weights',
    9,
    'linear or matmul with a large constant weight (a 1x1 conv is preferred)',
    null,
    true,
    'A',
    'apple/coreai-models neural_engine_rules.md ("may fall back to CPU"); more-ane-transformers NOTES.md (LM head on BNNS) [C]',
    2 ** 20,
  ),
  R(
    'einsum-form',
    10,
    'an einsum other than bchq,bkhc->bkhq and bkhq,bchk->bchq (one head at a time)',
    null,
    true,
    'A',
    'apple/ml-ane-transformers reference/multihead_attention.py',
  ),
  R(
    'softmax-axis',
    11,
    'softmax over an axis other than the channel axis (axis 1 of a rank-4 tensor)',
    null,
    true,
    'A',
    'apple/coreai-models neural_engine_rules.md (softmax on H or W hurts tiling)',
  ),
  R(
    'mask-constant',
    11,
    'a constant of -inf, NaN or at or below -65504 (masks: -1e4 to -4e4)',
    null,
    true,
    'A',
    'apple/ml-ane-transformers huggingface/distilbert.py; neural_engine_rules.md (the ANE mishandles -inf)',
  ),
  R(
    'norm-epsilon',
    11,
    'a norm epsilon below 1e-7 (underflows in float16)',
    null,
    true,
    'A',
    'apple/coreai-models neural_engine_rules.md (eps=1e-12 underflows)',
    1e-7,
  ),
  R(
    'last-axis-layout',
    12,
    'transposes and reshapes that move the last axis (each rewrites the tensor in memory)',
    null,
    false,
    'A',
    'Apple, "Deploying Transformers on the Apple Neural Engine", principle 3; neural_engine_rules.md',
  ),
  R(
    'channel-broadcast',
    13,
    'an elementwise op broadcasting a non-constant tensor over channels',
    null,
    false,
    'C',
    "hollance/neural-engine#2 (a NeuralNetwork-era log; the reference project's own norm does this and runs on the ANE)",
  ),
  R(
    'weight-size',
    15,
    'constant bytes above ~1 GB per file (iOS) or ~2 GB (macOS); ~3 GB on the ANE per process',
    null,
    true,
    'C',
    'Anemll docs/convert.md; apple/coremltools#1807; apple/ml-stable-diffusion#255',
    1e9,
  ),
  R(
    'op-count',
    16,
    'more non-constant ops than the budget: the threshold up to 1,024 tokens, twice it at 8,192 (load and compile time grow with the count)',
    null,
    true,
    'G',
    'apple/ml-ane-transformers README (DistilBERT: 606 ops) [A]; more-ane-transformers NOTES.md (a ~16.5k-op model went to CPU) [C]',
    3000,
  ),
  R(
    'small-graph',
    17,
    'a whole graph of little work (dispatch overhead outweighs it; may run on the CPU)',
    null,
    true,
    'C',
    'vx-lang/Vx#436 (a 4x4 matmul placed on the CPU)',
    1e6,
  ),
];

/** A rules table with each rule by id. */
export type Rules = ReadonlyMap<RuleId, Rule>;

/** The default rules, by id. */
export function defaultRules(): Rules {
  return new Map(DEFAULT_RULES.map((r) => [r.id, { ...r }]));
}

const DEVICES: readonly Device[] = ['ane', 'cpu', 'gpu-or-cpu'];
const CONFIDENCES: readonly Confidence[] = ['A', 'C', 'P', 'G', 'M'];
const FIELDS = ['device', 'warn', 'enabled', 'threshold', 'source', 'confidence'] as const;

/**
 * The default rules with a user's corrections applied: `{"rules": {"gather": {"device": "gpu-or-cpu",
 * "source": "MLComputePlan, M2, macOS 15", "confidence": "M"}, "op-count": {"threshold": 4000}}}`. Only the
 * fields named change; a rule that changes device without a source names the file as its source. Unknown
 * ids, fields or values are errors, never ignored (a typo must not silently keep the default).
 */
export function applyRuleOverrides(raw: unknown, source: string, base: Rules = defaultRules()): Rules {
  const bad = (msg: string): never => {
    throw new ModernBertError('BAD_INPUT', `${source}: ${msg}`, { file: source });
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    return bad(`a rules file is {"rules": {ID: {field: value}}}, not ${brief(raw)}`);
  const extra = Object.keys(raw).filter((k) => k !== 'rules');
  if (extra.length) bad(`unknown key "${extra[0]}" (a rules file has one key, "rules")`);
  const rules = (raw as { rules?: unknown }).rules;
  if (typeof rules !== 'object' || rules === null || Array.isArray(rules))
    return bad(`"rules" must be an object of rule ids, not ${brief(rules)}`);
  const out = new Map([...base].map(([id, r]) => [id, { ...r }]));
  for (const [id, change] of Object.entries(rules)) {
    const rule = out.get(id as RuleId);
    if (!rule) bad(`unknown rule "${id}"; the rules: ${RULE_IDS.join(', ')}`);
    if (typeof change !== 'object' || change === null || Array.isArray(change))
      bad(`rule "${id}": give an object of fields, not ${brief(change)}`);
    const fields = change as Record<string, unknown>;
    for (const [field, v] of Object.entries(fields)) {
      const where = `rule "${id}" field "${field}"`;
      switch (field as (typeof FIELDS)[number]) {
        case 'device':
          if (rule!.device === null) bad(`${where}: rule "${id}" only warns; it places no op`);
          if (!DEVICES.includes(v as Device)) bad(`${where} must be one of ${DEVICES.join(', ')}, not ${brief(v)}`);
          rule!.device = v as Device;
          if (fields.source === undefined) rule!.source = `overridden in ${source}`;
          if (fields.confidence === undefined) rule!.confidence = 'M';
          break;
        case 'warn':
        case 'enabled':
          if (typeof v !== 'boolean') bad(`${where} must be true or false, not ${brief(v)}`);
          rule![field as 'warn' | 'enabled'] = v as boolean;
          break;
        case 'threshold':
          if (rule!.threshold === undefined) bad(`${where}: rule "${id}" has no threshold`);
          if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
            bad(`${where} must be a number >= 0, not ${brief(v)}`);
          rule!.threshold = v as number;
          break;
        case 'source':
          if (typeof v !== 'string' || v.trim() === '') bad(`${where} must be a non-empty string`);
          rule!.source = v as string;
          break;
        case 'confidence':
          if (!CONFIDENCES.includes(v as Confidence))
            bad(`${where} must be one of ${CONFIDENCES.join(', ')}, not ${brief(v)}`);
          rule!.confidence = v as Confidence;
          break;
        default:
          bad(`${where} is unknown; a rule's fields: ${FIELDS.join(', ')}`);
      }
    }
  }
  if (out.get('default')!.enabled === false)
    bad('rule "default" places every op no other rule matches; it cannot be switched off (give it a device instead)');
  return out;
}

/** The rules with the corrections of a JSON rules file (applyRuleOverrides). */
export function readRulesFile(path: string): Rules {
  return applyRuleOverrides(readJsonFile(path, 'rules file'), path);
}

/** "[A]" for a confidence. */
export function label(c: Confidence): string {
  return `[${c}]`;
}
