// MIL types and immediate values in the protobuf: our dtypes and shapes to ValueType/TensorType and back,
// and tensors to `Value.immediateValue` and back, choosing the TensorValue field per dtype exactly as
// coremltools' backend/mil/helper.py does (_tensor_field_by_type, IMMEDIATE_VALUE_TYPES_IN_BYTES):
// bool -> bools; int32, int16 -> ints; fp32 -> floats; fp16, int8, uint8, uint32 and the sub-byte types
// (packed, types/type_mapping.py _numpy_val_to_bytes) -> raw little-endian bytes; string -> strings.

import type { DType, Dim, Literal, TensorData } from '../ir/graph.js';
import { numel } from '../ir/graph.js';
import { ModernBertError } from '../errors.js';
import { roundToF16 } from '../numeric/fp16.js';
import type { MilDataType, NamedValueTypeProto, TensorValueProto, ValueProto, ValueTypeProto } from './schema.js';
import { decodeTensorBytes, encodeTensorBytes, elementSize, storedBytes } from './tensor-bytes.js';

const TO_MIL: Record<DType | 'string', MilDataType> = {
  fp32: 'FLOAT32',
  fp16: 'FLOAT16',
  int32: 'INT32',
  int16: 'INT16',
  int8: 'INT8',
  uint8: 'UINT8',
  bool: 'BOOL',
  string: 'STRING',
  uint32: 'UINT32',
  int4: 'INT4',
  uint1: 'UINT1',
  uint2: 'UINT2',
  uint3: 'UINT3',
  uint4: 'UINT4',
  uint6: 'UINT6',
};

const FROM_MIL = new Map<MilDataType, DType | 'string'>(
  Object.entries(TO_MIL).map(([ours, mil]) => [mil, ours as DType | 'string']),
);

/** The MIL DataType of one of our dtypes. */
function milDataType(dtype: DType | 'string'): MilDataType {
  return TO_MIL[dtype];
}

/** Our dtype for a MIL DataType; other MIL types (int64, fp64, sub-byte, ...) are UNSUPPORTED. */
function dtypeFromMil(type: MilDataType | undefined, where: string): DType | 'string' {
  const dtype = type === undefined ? undefined : FROM_MIL.get(type);
  if (!dtype) {
    throw new ModernBertError('UNSUPPORTED', `${where}: MIL data type ${type ?? 'UNUSED_TYPE'} is not supported`, {
      where,
      dataType: type,
      supported: [...FROM_MIL.keys()],
    });
  }
  return dtype;
}

/** A tensor ValueType; symbolic dims become unknown (non-variadic) dimensions. Rank 0 is left unset as proto3 omits it. */
export function tensorValueType(dtype: DType | 'string', shape: readonly Dim[]): ValueTypeProto {
  const tensorType: ValueTypeProto['tensorType'] = { dataType: milDataType(dtype) };
  if (shape.length > 0) {
    tensorType.rank = shape.length;
    tensorType.dimensions = shape.map((d) => (typeof d === 'number' ? { constant: { size: d } } : { unknown: {} }));
  }
  return { tensorType };
}

/** A tensor type read back: dtype and shape, unknown dims as null (the caller names them). */
export interface ReadTensorType {
  dtype: DType | 'string';
  shape: (number | null)[];
}

/** Reads a ValueType that must be a tensor of known rank; other kinds are UNSUPPORTED, naming `where`. */
export function readTensorType(type: ValueTypeProto | undefined, where: string): ReadTensorType {
  const tensor = type?.tensorType;
  if (!tensor) {
    const kind = type?.type ?? 'missing';
    throw new ModernBertError('UNSUPPORTED', `${where}: value type ${kind} is not supported (tensors only)`, {
      where,
      kind,
    });
  }
  const rank = tensor.rank ?? 0;
  if (rank < 0)
    throw new ModernBertError('UNSUPPORTED', `${where}: tensors of variable rank are not supported`, { where });
  const dims = tensor.dimensions ?? [];
  if (dims.length !== rank) {
    throw new ModernBertError('CORRUPT_FILE', `${where}: tensor type has rank ${rank} but ${dims.length} dimensions`, {
      where,
    });
  }
  const shape = dims.map((d, axis) => {
    if (d.constant) return d.constant.size ?? 0;
    if (d.unknown?.variadic) {
      throw new ModernBertError('UNSUPPORTED', `${where}: variadic dimension at axis ${axis} is not supported`, {
        where,
        axis,
      });
    }
    return null;
  });
  return { dtype: dtypeFromMil(tensor.dataType, where), shape };
}

/** The immediate Value of a tensor (a string scalar when `data` is a string). */
export function immediateValue(
  dtype: DType | 'string',
  shape: readonly number[],
  data: TensorData | string,
  name: string,
): ValueProto {
  const type = tensorValueType(dtype, shape);
  let tensor: TensorValueProto;
  if (dtype === 'string') {
    tensor = { strings: { values: [String(data)] } };
  } else if (typeof data === 'string') {
    throw new ModernBertError('INTERNAL', `tensor "${name}" of dtype ${dtype} holds a string`, { tensor: name });
  } else {
    switch (dtype) {
      case 'bool':
        tensor = { bools: { values: Array.from(data, (v) => v !== 0) } };
        break;
      case 'fp32':
        tensor = { floats: { values: Array.from(data) } };
        break;
      case 'int32':
      case 'int16':
        encodeTensorBytes(dtype, data, name); // range check only; the values go in as varints
        tensor = { ints: { values: Array.from(data) } };
        break;
      default: // IMMEDIATE_VALUE_TYPES_IN_BYTES: fp16, int8, uint8, uint32 and the sub-byte types
        tensor = { bytes: { values: encodeTensorBytes(dtype, data, name) } };
        break;
    }
  }
  return { type, immediateValue: { tensor } };
}

/** An immediate tensor read back. */
export interface ReadImmediate {
  dtype: DType | 'string';
  shape: number[];
  /** Tensor data, or the string of a string scalar. */
  data: TensorData | string;
}

/** Reads an immediate tensor Value; tuples, lists, dictionaries and non-scalar strings are UNSUPPORTED. */
export function readImmediate(value: ValueProto, where: string): ReadImmediate {
  const { dtype, shape } = readTensorType(value.type, where);
  if (shape.some((d) => d === null)) {
    throw new ModernBertError('CORRUPT_FILE', `${where}: an immediate value has an unknown dimension`, { where });
  }
  const staticShape = shape as number[];
  const tensor = value.immediateValue?.tensor;
  if (!tensor) {
    const kind = value.immediateValue?.value ?? 'missing';
    throw new ModernBertError(
      'UNSUPPORTED',
      `${where}: immediate value of kind ${kind} is not supported (tensors only)`,
      {
        where,
        kind,
      },
    );
  }
  const count = numel(staticShape);
  const mismatch = (got: number): ModernBertError =>
    new ModernBertError(
      'CORRUPT_FILE',
      `${where}: immediate ${dtype} tensor of shape [${staticShape.join(', ')}] holds ${got} values`,
      {
        where,
      },
    );
  if (dtype === 'string') {
    const values = tensor.strings?.values ?? [];
    if (staticShape.length !== 0 || values.length !== 1) {
      throw new ModernBertError('UNSUPPORTED', `${where}: only scalar strings are supported`, { where });
    }
    return { dtype, shape: staticShape, data: values[0]! };
  }
  let data: TensorData;
  if (tensor.bytes) {
    const bytes = tensor.bytes.values ?? new Uint8Array(0);
    if (bytes.length !== storedBytes(dtype, count)) throw mismatch(Math.floor(bytes.length / elementSize(dtype)));
    data = decodeTensorBytes(dtype, bytes, count);
  } else if (tensor.bools) {
    data = Uint8Array.from(tensor.bools.values ?? [], (b) => (b ? 1 : 0));
  } else if (tensor.floats) {
    data = Float32Array.from(tensor.floats.values ?? []);
  } else if (tensor.ints) {
    data = Int32Array.from(tensor.ints.values ?? []);
  } else {
    const kind = tensor.value ?? 'missing';
    throw new ModernBertError('UNSUPPORTED', `${where}: ${dtype} immediate stored as ${kind} is not supported`, {
      where,
      kind,
    });
  }
  if (data.length !== count) throw mismatch(data.length);
  return { dtype, shape: staticShape, data: coerce(dtype, data) };
}

/** Puts data read from any field into the in-memory form of `dtype` (floats as float32, fp16 rounded; ints as int32). */
function coerce(dtype: DType, data: TensorData): TensorData {
  if (dtype === 'fp16') return roundToF16(Float32Array.from(data));
  if (dtype === 'fp32') return data instanceof Float32Array ? data : Float32Array.from(data);
  if (dtype === 'bool') return data instanceof Uint8Array ? data : Uint8Array.from(data, (v) => (v ? 1 : 0));
  return data instanceof Int32Array ? data : Int32Array.from(data);
}

/** A string scalar Value (op `name` attributes, string literals). */
export function stringValue(s: string): ValueProto {
  return immediateValue('string', [], s, s);
}

/** A named tensor type (function inputs, op outputs). */
export function namedType(name: string, dtype: DType | 'string', shape: readonly Dim[]): NamedValueTypeProto {
  return { name, type: tensorValueType(dtype, shape) };
}

/** Literal values as tensor data (or the string of a string literal). */
export function literalData(lit: Literal): TensorData | string {
  if (typeof lit.value === 'string') return lit.value;
  const nums = (lit.value as (number | boolean)[]).map((v) => Number(v));
  if (lit.dtype === 'fp32' || lit.dtype === 'fp16') return Float32Array.from(nums);
  if (lit.dtype === 'bool') return Uint8Array.from(nums);
  return Int32Array.from(nums);
}
