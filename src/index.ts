// modernbert-ane, the library: run a task on a model (pipeline), convert a checkpoint to Core ML or ONNX,
// check a model against golden outputs, compare two models, describe one. The graph, the interpreter and the
// kernels that these stand on are in 'modernbert-ane/advanced'.

export { ModernBertError, type ErrorCode } from './errors.js';
export {
  pipeline,
  type PipelineOptions,
  type PipelineBase,
  type Pipelines,
  type FillMaskPipeline,
  type TextClassificationPipeline,
  type TokenClassificationPipeline,
  type FeatureExtractionPipeline,
  type GroupingStrategy,
} from './tasks/pipeline.js';
export type {
  TaskName,
  FillMaskItem,
  TextClassificationItem,
  TokenClassificationItem,
  EntityGroup,
  AggregationStrategy,
  Pooling,
  Features,
} from './tasks/results.js';
export type {
  FillMaskOptions,
  TextClassificationOptions,
  TokenClassificationOptions,
  FeatureExtractionOptions,
} from './tasks/task-table.js';
export { convert } from './convert/convert.js';
export type { ConvertOptions, AddHead } from './convert/convert-options.js';
export type { ConvertReport, CompressionSummary } from './convert/write-package.js';
export { exportOnnx, type ExportOnnxOptions, type ExportOnnxReport } from './convert/export-onnx.js';
export { verify, type VerifyOptions, type VerifyReport, type CaseReport } from './api/verify.js';
export { diff, type DiffOptions, type DiffReport } from './api/diff.js';
export {
  inspect,
  type InspectOptions,
  type Inspection,
  type CheckpointInspection,
  type PackageInspection,
  type FeatureInspection,
} from './api/inspect.js';
// Types that the options and results above name.
export type { AnyRuntime as Runtime } from './run/executor-choice.js';
export type { ComputeUnits } from './run/coreml/session.js';
export type { Precision } from './runtime/numerics.js';
export type { OutputHead } from './model/options.js';
export type { RotationKind } from './model/variants.js';
export type { TargetName } from './ir/target.js';
export type { CompressMode } from './compress/spec.js';
export type { DownloadProgress } from './hub/resolve.js';
export type { FidelityReport } from './eval/fidelity.js';
export type { Agreement } from './eval/compare.js';
export type { LearnReport } from './learn/learned.js';
export type { Rules } from './ane/rules.js';
export type { AneIssue } from './graph/ane-limits.js';
export type { PackagePlacement } from './ane/predict-package.js';
export type { HubSource } from './hub/id.js';
