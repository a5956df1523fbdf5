// The Core ML protobuf schema (our subset, in ./proto/*.proto), loaded with protobufjs at run time, and
// typed views of its messages in the plain-object form that protobufjs' toObject/fromObject use
// (64-bit integers as numbers, enums as their names, bytes as Uint8Array, unset fields absent).

import protobuf from 'protobufjs';
import { fileURLToPath } from 'node:url';
import { ModernBertError } from '../errors.js';

/** MIL.proto DataType names. */
export type MilDataType =
  | 'UNUSED_TYPE' | 'BOOL' | 'STRING' | 'FLOAT8E4M3FN' | 'FLOAT8E5M2' | 'FLOAT16' | 'FLOAT32' | 'FLOAT64'
  | 'BFLOAT16' | 'INT8' | 'INT16' | 'INT32' | 'INT64' | 'INT4' | 'UINT8' | 'UINT16' | 'UINT32' | 'UINT64'
  | 'UINT4' | 'UINT2' | 'UINT1' | 'UINT6' | 'UINT3';

export interface DimensionProto {
  constant?: { size?: number };
  unknown?: { variadic?: boolean };
}

export interface TensorTypeProto {
  dataType?: MilDataType;
  rank?: number;
  dimensions?: DimensionProto[];
  attributes?: Record<string, ValueProto>;
}

export interface ValueTypeProto {
  tensorType?: TensorTypeProto;
  listType?: object;
  tupleType?: object;
  dictionaryType?: object;
  stateType?: object;
  /** Which member of the oneof is set (decode only). */
  type?: string;
}

export interface TensorValueProto {
  floats?: { values?: number[] };
  ints?: { values?: number[] };
  bools?: { values?: boolean[] };
  strings?: { values?: string[] };
  longInts?: { values?: number[] };
  doubles?: { values?: number[] };
  bytes?: { values?: Uint8Array };
  /** Which member of the oneof is set (decode only). */
  value?: string;
}

export interface ValueProto {
  docString?: string;
  type?: ValueTypeProto;
  immediateValue?: { tensor?: TensorValueProto; tuple?: object; list?: object; dictionary?: object; value?: string };
  blobFileValue?: { fileName?: string; offset?: number };
  /** Which member of the oneof is set (decode only). */
  value?: string;
}

export interface BindingProto {
  name?: string;
  value?: ValueProto;
}

export interface NamedValueTypeProto {
  name?: string;
  type?: ValueTypeProto;
}

export interface OperationProto {
  type?: string;
  inputs?: Record<string, { arguments?: BindingProto[] }>;
  outputs?: NamedValueTypeProto[];
  blocks?: BlockProto[];
  attributes?: Record<string, ValueProto>;
}

export interface BlockProto {
  inputs?: NamedValueTypeProto[];
  outputs?: string[];
  operations?: OperationProto[];
  attributes?: Record<string, ValueProto>;
}

export interface FunctionProto {
  inputs?: NamedValueTypeProto[];
  opset?: string;
  block_specializations?: Record<string, BlockProto>;
  attributes?: Record<string, ValueProto>;
}

export interface ProgramProto {
  version?: number;
  functions?: Record<string, FunctionProto>;
  docString?: string;
  attributes?: Record<string, ValueProto>;
}

/** FeatureTypes.proto ArrayFeatureType.ArrayDataType names. */
export type ArrayDataTypeName = 'INVALID_ARRAY_DATA_TYPE' | 'FLOAT32' | 'DOUBLE' | 'INT32' | 'INT8' | 'FLOAT16';

export interface SizeRangeProto {
  lowerBound?: number;
  upperBound?: number;
}

export interface ArrayFeatureTypeProto {
  shape?: number[];
  dataType?: ArrayDataTypeName;
  enumeratedShapes?: { shapes?: { shape?: number[] }[] };
  shapeRange?: { sizeRanges?: SizeRangeProto[] };
}

/** Feature kinds other than multi-arrays, kept as undecoded message bytes. */
type OpaqueFeatureKind = 'int64Type' | 'doubleType' | 'stringType' | 'imageType' | 'dictionaryType' | 'sequenceType' | 'stateType';

export interface FeatureTypeProto extends Partial<Record<OpaqueFeatureKind, Uint8Array>> {
  multiArrayType?: ArrayFeatureTypeProto;
  isOptional?: boolean;
  /** Which member of the oneof is set (decode only): 'multiArrayType', 'imageType', ... */
  Type?: string;
}

export interface FeatureDescriptionProto {
  name?: string;
  shortDescription?: string;
  type?: FeatureTypeProto;
}

export interface MetadataProto {
  shortDescription?: string;
  versionString?: string;
  author?: string;
  license?: string;
  userDefined?: Record<string, string>;
}

/** Model.proto FunctionDescription: one function of a multifunction model (iOS 18+). */
export interface FunctionDescriptionProto {
  name?: string;
  input?: FeatureDescriptionProto[];
  output?: FeatureDescriptionProto[];
  state?: FeatureDescriptionProto[];
}

export interface ModelDescriptionProto {
  functions?: FunctionDescriptionProto[];
  defaultFunctionName?: string;
  metadata?: MetadataProto;
  input?: FeatureDescriptionProto[];
  output?: FeatureDescriptionProto[];
  state?: FeatureDescriptionProto[];
}

/** Model kinds other than ML Programs, kept as undecoded message bytes (model.proto lists which). */
type OpaqueModelKind =
  | 'pipelineClassifier' | 'pipelineRegressor' | 'pipeline' | 'glmRegressor' | 'neuralNetworkRegressor' | 'glmClassifier'
  | 'neuralNetworkClassifier' | 'neuralNetwork' | 'customModel' | 'linkedModel';

export interface ModelProto extends Partial<Record<OpaqueModelKind, Uint8Array>> {
  specificationVersion?: number;
  description?: ModelDescriptionProto;
  isUpdatable?: boolean;
  mlProgram?: ProgramProto;
  /** Which model kind is set (decode only): 'mlProgram', 'neuralNetwork', 'pipeline', ... */
  Type?: string;
}

let modelType: protobuf.Type | undefined;

/** The CoreML.Specification.Model message type, loaded once from the .proto files beside this module. */
function modelMessage(): protobuf.Type {
  if (!modelType) {
    const file = fileURLToPath(new URL('./proto/model.proto', import.meta.url));
    // keepCase: field names stay as the spec spells them (block_specializations, not blockSpecializations).
    const root = new protobuf.Root().loadSync(file, { keepCase: true });
    modelType = root.lookupType('CoreML.Specification.Model');
  }
  return modelType;
}

/** Serialises a Model object to protobuf bytes (the contents of model.mlmodel). */
export function encodeModel(model: ModelProto): Uint8Array {
  const type = modelMessage();
  return type.encode(type.fromObject(model)).finish();
}

/** Parses model.mlmodel bytes; malformed protobuf becomes CORRUPT_FILE naming `file`. */
export function decodeModel(bytes: Uint8Array, file: string): ModelProto {
  const type = modelMessage();
  let message: protobuf.Message;
  try {
    message = type.decode(bytes);
  } catch (e) {
    throw new ModernBertError('CORRUPT_FILE', `${file} is not a valid Core ML model protobuf: ${(e as Error).message}`, {
      file,
    });
  }
  try {
    return type.toObject(message, { longs: Number, enums: String, oneofs: true }) as ModelProto;
  } catch (e) {
    // protobufjs decodes a map entry without its value as null, then fails converting it.
    throw new ModernBertError('CORRUPT_FILE', `${file} is not a valid Core ML model protobuf: ${(e as Error).message}`, { file });
  }
}
