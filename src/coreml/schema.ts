// The Core ML protobuf schema (our subset, in ./proto/*.proto), loaded with protobufjs at run time, and
// typed views of its messages in the plain-object form that protobufjs' toObject/fromObject use
// (64-bit integers as numbers, enums as their names, bytes as Uint8Array, unset fields absent).

import protobuf from 'protobufjs';
import { fileURLToPath } from 'node:url';
import { ModernBertError } from '../errors.js';

/** MIL.proto DataType names. */
export type MilDataType =
  | 'UNUSED_TYPE'
  | 'BOOL'
  | 'STRING'
  | 'FLOAT8E4M3FN'
  | 'FLOAT8E5M2'
  | 'FLOAT16'
  | 'FLOAT32'
  | 'FLOAT64'
  | 'BFLOAT16'
  | 'INT8'
  | 'INT16'
  | 'INT32'
  | 'INT64'
  | 'INT4'
  | 'UINT8'
  | 'UINT16'
  | 'UINT32'
  | 'UINT64'
  | 'UINT4'
  | 'UINT2'
  | 'UINT1'
  | 'UINT6'
  | 'UINT3';

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
type OpaqueFeatureKind =
  'int64Type' | 'doubleType' | 'stringType' | 'imageType' | 'dictionaryType' | 'sequenceType' | 'stateType';

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
  | 'pipelineClassifier'
  | 'pipelineRegressor'
  | 'pipeline'
  | 'glmRegressor'
  | 'neuralNetworkRegressor'
  | 'glmClassifier'
  | 'neuralNetworkClassifier'
  | 'neuralNetwork'
  | 'customModel'
  | 'linkedModel';

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

/**
 * Serialises a Model object to protobuf bytes (the contents of model.mlmodel). `encodedOps` gives, for some
 * blocks of the program (by object), their operations already encoded (encodeOperation): those blocks' own
 * `operations` are left out and the bytes take their place.
 */
export function encodeModel(
  model: ModelProto,
  encodedOps?: ReadonlyMap<BlockProto, readonly Uint8Array[]>,
): Uint8Array {
  const type = modelMessage();
  const { mlProgram, ...rest } = model;
  if (encodedOps === undefined || mlProgram === undefined || FIELDS_AFTER_PROGRAM.some((k) => rest[k] !== undefined)) {
    return type.encode(type.fromObject(model)).finish();
  }
  // A message's bytes are its fields' bytes in field-number order (protobufjs' encoder sorts them so), so the
  // program is assembled from its parts: fields before the operations, the operations, fields after.
  const t = (name: string) => type.lookupType(`CoreML.Specification.MILSpec.${name}`);
  const part = (mt: protobuf.Type, obj: object, keys: string[]): Uint8Array => {
    const picked = Object.fromEntries(
      keys.filter((k) => Object.hasOwn(obj, k)).map((k) => [k, (obj as Record<string, unknown>)[k]]),
    );
    return mt.encode(mt.fromObject(picked)).finish();
  };
  const [programT, functionT, blockT] = [t('Program'), t('Function'), t('Block')];
  const block = (b: BlockProto): Uint8Array => {
    const ops = encodedOps.get(b);
    if (ops === undefined) return blockT.encode(blockT.fromObject(b)).finish();
    return Buffer.concat([part(blockT, b, ['inputs', 'outputs']), ...ops, part(blockT, b, ['attributes'])]);
  };
  const fn = (f: FunctionProto): Uint8Array =>
    Buffer.concat([
      part(functionT, f, ['inputs', 'opset']),
      ...Object.entries(f.block_specializations ?? {}).map(([k, b]) => mapEntry(3, k, block(b))),
      part(functionT, f, ['attributes']),
    ]);
  const program = Buffer.concat([
    part(programT, mlProgram, ['version']),
    ...Object.entries(mlProgram.functions ?? {}).map(([k, f]) => mapEntry(2, k, fn(f))),
    part(programT, mlProgram, ['docString', 'attributes']),
  ]);
  return Buffer.concat([type.encode(type.fromObject(rest)).finish(), lengthDelimited(MODEL_ML_PROGRAM, program)]);
}

/** Model.mlProgram's field number, and the Model fields numbered after it (the other model kinds). */
const MODEL_ML_PROGRAM = 502;
const FIELDS_AFTER_PROGRAM = ['customModel', 'linkedModel'] as const;
/** Block.operations' field number. */
const BLOCK_OPERATIONS = 3;

/**
 * One operation's bytes as Block.operations holds it (tag, length, message): a long program's writer encodes
 * each op as it is built, so that its objects die young instead of surviving to one encode of the whole
 * program (27,000 ops at 8,192 tokens, where the collector cost more than the encoding).
 */
export function encodeOperation(op: OperationProto): Uint8Array {
  const opT = modelMessage().lookupType('CoreML.Specification.MILSpec.Operation');
  return lengthDelimited(BLOCK_OPERATIONS, opT.encode(opT.fromObject(op)).finish());
}

/** A length-delimited field: tag (wire type 2), length, bytes. */
function lengthDelimited(field: number, bytes: Uint8Array): Uint8Array {
  return protobuf.Writer.create()
    .uint32((field << 3) | 2)
    .bytes(bytes)
    .finish();
}

/** A map<string, message> entry of field `field`: key (1) and value (2), as protobufjs writes it. */
function mapEntry(field: number, key: string, value: Uint8Array): Uint8Array {
  const keyBytes = protobuf.Writer.create().uint32(10).string(key).finish();
  return lengthDelimited(field, Buffer.concat([keyBytes, lengthDelimited(2, value)]));
}

/** Parses model.mlmodel bytes; malformed protobuf becomes CORRUPT_FILE naming `file`. */
export function decodeModel(bytes: Uint8Array, file: string): ModelProto {
  const type = modelMessage();
  let message: protobuf.Message;
  try {
    message = type.decode(bytes);
  } catch (e) {
    throw new ModernBertError(
      'CORRUPT_FILE',
      `${file} is not a valid Core ML model protobuf: ${(e as Error).message}`,
      {
        file,
      },
    );
  }
  try {
    return type.toObject(message, { longs: Number, enums: String, oneofs: true }) as ModelProto;
  } catch (e) {
    // protobufjs decodes a map entry without its value as null, then fails converting it.
    throw new ModernBertError(
      'CORRUPT_FILE',
      `${file} is not a valid Core ML model protobuf: ${(e as Error).message}`,
      { file },
    );
  }
}
