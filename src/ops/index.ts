// The op registry with every op definition registered: import this module (not registry.ts) to use it.

import './defs/elementwise.js';
import './defs/activation.js';
import './defs/normalization.js';
import './defs/tensor-transformation.js';
import './defs/tensor-operation.js';
import './defs/linear.js';
import './defs/compression.js';

export {
  inputDefault,
  isConstexpr,
  knownOps,
  opDef,
  opSignature,
  opVersions,
  type InputSig,
  type OnnxArgs,
  type OnnxAttr,
  type OpArgs,
  type OpDef,
  type OpVersion,
} from './registry.js';
export { ONNX_TYPE, ONNX_TYPE_INT64 } from './defs/common.js';
export { inferArgs, inputTypesOf, type InputTypes } from './shapes.js';
export { softmaxWithBias } from './defs/activation.js';
