// modernbert-ane/advanced: what the library stands on, for those who build on it: checkpoints and tokenizers,
// the model as an op graph (builder, MIL op registry, validation, printer), our interpreter and its kernels,
// the runners (our engine, onnxruntime, Core ML packages), the .mlpackage reader and writer, the weight
// algebra (folding, rotations), goldens and agreement metrics, the Neural Engine placement prediction, and
// the batch runner beneath pipeline(). These change more often than the root API does.

export { parseConfig, type ModernBertConfig } from './model/config.js';
export { loadCheckpoint, type Checkpoint, type EmbeddingSpec } from './model/checkpoint.js';
export { loadTokenizer, Tokenizer, type Encoding, type EncodingWithOffsets } from './tokenizer/tokenizer.js';
export { buildModel, buildHead } from './model/model.js';
export { defaultHead, type BuildOptions, type ModelSource, type NormStyle } from './model/options.js';
export { Engine, CachedWeights, additiveMask } from './run/engine.js';
export type { ForwardOptions, ForwardResult, Sequence, Runner, Executor, ExecutorFactory } from './run/runner.js';
export { chooseExecutor, type ExecutorChoice, type ExecutorRequest } from './run/executor-choice.js';
export { Interpreter } from './graph/interpreter.js';
export { GraphBuilder } from './graph/builder.js';
export { PRECISIONS } from './runtime/numerics.js';
export {
  gemm,
  gemmSync,
  kernelThreads,
  setKernelThreads,
  softmaxSimd,
  geluSimd,
  roundToF16InPlace,
} from './runtime/kernels/index.js';
export type { RtTensor } from './runtime/tensor.js';
export { shutdownRuntime } from './runtime/shutdown.js';
export { openModel, openCheckpoint, DEFAULT_MODEL, type LoadedModel, type OpenOptions } from './run/load.js';
export { resolveModel, downloadModel, type HubOptions, type ResolvedModel } from './hub/resolve.js';
export { packTexts, type PackedWindow } from './model/pack-texts.js';
export {
  runBatch,
  runTokenized,
  batchShape,
  type BatchOptions,
  type BatchStats,
  type RunWindow,
} from './tasks/batch.js';
export {
  TASKS,
  taskOfHead,
  type TaskSpec,
  type TaskPlan,
  type TaskTypes,
  type EncodedText,
} from './tasks/task-table.js';
export { openTaskModel, runTask, closeTaskModel, type TaskModel } from './tasks/pipeline.js';
export { checkSameBody, headPackagePath, type HeadsOptions, type AddedHead } from './convert/heads.js';
export { writePackage, type ConversionPlan } from './convert/write-package.js';
export { bodyHash } from './coreml/body-hash.js';
export { readMLPackage } from './coreml/mil-read.js';
export { writeMLPackage, type FunctionToWrite } from './coreml/mil-write.js';
export { PackageRunner, BucketRunner, type HeadPackage } from './run/package-runner.js';
export { printGraph } from './graph/print.js';
export { knownOps, opDef, opSignature, type OpDef } from './ops/index.js';
export { validateGraph } from './ops/validate.js';
export { parseTarget, targetInfo, type Target, type TargetInfo } from './ir/target.js';
export type { Graph, Op, Value, Const, Literal } from './ir/graph.js';
export { readGolden, type GoldenCase } from './eval/golden.js';
export { verify as verifyRunner } from './eval/verify.js';
export { AgreementMeter } from './eval/compare.js';
export { measureFidelity } from './eval/fidelity.js';
export { prepareVariant, type VariantSpec } from './model/variants.js';
export { foldWeights, HadamardRotation, DenseRotation, IdentityRotation, type Rotation } from './rotation/index.js';
export { writeSynthCheckpoint, SynthWeights } from './synth/synth.js';
export type { Tensor, WeightSource } from './io/weights.js';
export { predictPlacement, type Placement, type PlacedOp, type Island, type Finding } from './ane/placement.js';
export { predictPackage, type FunctionPlacement } from './ane/predict-package.js';
export { DEFAULT_RULES, defaultRules, applyRuleOverrides, readRulesFile, type Rule, type Device } from './ane/rules.js';
export { estimateTime, CHIPS, type TimeEstimate } from './ane/estimate.js';
export { VERSION } from './version.js';
