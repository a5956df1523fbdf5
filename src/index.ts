// The library's public API: load, run, convert, compare.

export { ModernBertError, type ErrorCode } from './errors.js';
export { parseConfig, type ModernBertConfig } from './config.js';
export { loadCheckpoint, type Checkpoint, type EmbeddingSpec } from './io/checkpoint.js';
export { loadTokenizer, Tokenizer } from './tokenizer.js';
export { buildModel, defaultHead, type BuildOptions, type ModelSource, type NormStyle, type OutputHead } from './model.js';
export { Engine, CachedWeights, additiveMask, type ForwardOptions, type ForwardResult, type Sequence } from './engine.js';
export { Interpreter } from './graph/interpreter.js';
export { PRECISIONS, type Precision } from './runtime/numerics.js';
export { shutdownRuntime } from './runtime/shutdown.js';
export { openModel, DEFAULT_MODEL, type LoadedModel } from './load.js';
export { convert, type ConvertOptions, type ConvertReport } from './convert.js';
export { readMLPackage } from './coreml/mil-read.js';
export { writeMLPackage } from './coreml/mil-write.js';
export { PackageRunner } from './package-runner.js';
export { printGraph } from './graph/print.js';
export { knownOps, opDef, opSignature, type OpDef } from './ops/index.js';
export { validateGraph } from './ops/validate.js';
export type { Graph, Op, Value, Const, Literal } from './graph/ir.js';
export { readGolden, type GoldenCase } from './eval/golden.js';
export { verify, type VerifyReport, type Runner } from './eval/verify.js';
export { AgreementMeter, type Agreement } from './eval/compare.js';
export { measureFidelity, type FidelityReport } from './eval/fidelity.js';
export { prepareVariant, type RotationKind, type VariantSpec } from './variants.js';
export { foldWeights, HadamardRotation, DenseRotation, IdentityRotation, type Rotation } from './rotation/index.js';
export { writeSynthCheckpoint, SynthWeights } from './synth/synth.js';
export type { Tensor, WeightSource } from './weights.js';
export { VERSION } from './version.js';
