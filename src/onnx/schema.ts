// The ONNX protobuf schema (our subset, in ./proto/onnx.proto), loaded with protobufjs at run time, and
// typed views of its messages in protobufjs' plain-object form (field names as the .proto spells them).

import protobuf from 'protobufjs';
import { fileURLToPath } from 'node:url';
import { ModernBertError } from '../errors.js';

export interface OnnxAttributeProto {
  name: string;
  /** AttributeProto.AttributeType: FLOAT 1, INT 2, STRING 3, FLOATS 6, INTS 7. */
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  floats?: number[];
  ints?: number[];
}

/** An initializer whose bytes are produced when written. */
export interface OnnxInitializer {
  name: string;
  /** ONNX TensorProto.DataType. */
  dataType: number;
  dims: number[];
  byteLength: number;
  bytes(): Uint8Array;
  /** Where the bytes already lie in a file (lower.ts LowerOptions.inPlace): a runtime reads them there. */
  file?: { path: string; offset: number };
}

export interface OnnxNodeProto {
  input: string[];
  output: string[];
  name: string;
  op_type: string;
  domain?: string;
  attribute?: OnnxAttributeProto[];
}

export interface OnnxStringEntry {
  key: string;
  value: string;
}

export interface OnnxTensorProto {
  name: string;
  dims: number[];
  data_type: number;
  raw_data?: Uint8Array;
  external_data?: OnnxStringEntry[];
  /** 1 = EXTERNAL. */
  data_location?: number;
}

export interface OnnxDimension {
  dim_value?: number;
  dim_param?: string;
}

export interface OnnxValueInfoProto {
  name: string;
  type: { tensor_type: { elem_type: number; shape: { dim: OnnxDimension[] } } };
  doc_string?: string;
}

export interface OnnxGraphProto {
  name: string;
  node: OnnxNodeProto[];
  initializer: OnnxTensorProto[];
  input: OnnxValueInfoProto[];
  output: OnnxValueInfoProto[];
  doc_string?: string;
}

export interface OnnxModelProto {
  ir_version: number;
  opset_import: { domain: string; version: number }[];
  producer_name: string;
  producer_version: string;
  doc_string?: string;
  graph: OnnxGraphProto;
  metadata_props?: OnnxStringEntry[];
}

let modelType: protobuf.Type | undefined;

/** The onnx.ModelProto message type, loaded once from the .proto file beside this module. */
function modelMessage(): protobuf.Type {
  if (!modelType) {
    const file = fileURLToPath(new URL('./proto/onnx.proto', import.meta.url));
    modelType = new protobuf.Root().loadSync(file, { keepCase: true }).lookupType('onnx.ModelProto');
  }
  return modelType;
}

/** Serialises a ModelProto object to protobuf bytes (the contents of a .onnx file). */
export function encodeOnnxModel(model: OnnxModelProto): Uint8Array {
  const type = modelMessage();
  return type.encode(type.fromObject(model)).finish();
}

/** Parses .onnx bytes; malformed protobuf becomes CORRUPT_FILE naming `file`. */
export function decodeOnnxModel(bytes: Uint8Array, file: string): OnnxModelProto {
  const type = modelMessage();
  try {
    return type.toObject(type.decode(bytes), { longs: Number, defaults: false, arrays: true }) as OnnxModelProto;
  } catch (e) {
    throw new ModernBertError('CORRUPT_FILE', `${file} is not a valid ONNX model protobuf: ${(e as Error).message}`, {
      file,
    });
  }
}
