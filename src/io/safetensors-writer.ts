// Writing safetensors files one tensor at a time: the header is computed from names, dtypes and shapes
// alone, then each tensor's data is produced, written and dropped before the next, so a checkpoint
// larger than memory can be written. The file is written as every output is (io/output.ts): it appears
// under its name only once it is complete, and an existing file is replaced only when asked.

import { endianness } from 'node:os';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { ModernBertError } from '../errors.js';
import { OutputFile, type CheckedOutput } from './output.js';

export type WritableDType = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32';

/** The typed array that holds each dtype's stored values (float16 and bfloat16 as raw 16-bit patterns). */
export interface DTypeArrays {
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  I32: Int32Array;
}

/**
 * A tensor to write; `data` is called once, when the writer reaches it, and the array is written before
 * the next tensor's `data` is called, so producers may hand out views of one reused buffer.
 */
export type TensorToWrite = {
  [D in WritableDType]: { name: string; dtype: D; shape: readonly number[]; data: () => DTypeArrays[D] };
}[WritableDType];

export interface WriteSafetensorsOptions {
  /** The header's `__metadata__` (string values only). */
  metadata?: Record<string, string>;
  /** Called after each tensor with the data bytes written so far and in all. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Replace an existing file at a path given as a string (a checked output says for itself). */
  overwrite?: boolean;
}

const BYTES: Record<WritableDType, number> = { F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4 };
const ARRAY_TYPES: Record<WritableDType, new (n: number) => ArrayBufferView> = {
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  I32: Int32Array,
};

/** Writes tensors (in the given order) and metadata to `path` (checked by io/output.ts) as a safetensors file. */
export async function writeSafetensors(
  path: string | CheckedOutput,
  tensors: readonly TensorToWrite[],
  options: WriteSafetensorsOptions = {},
): Promise<void> {
  const name = typeof path === 'string' ? path : path.path;
  // Typed arrays hold the host's byte order; the format is little-endian.
  if (endianness() !== 'LE')
    throw new ModernBertError('UNSUPPORTED', 'writing safetensors needs a little-endian host', { file: name });
  const { header, totalBytes } = buildHeader(tensors, options.metadata, name);
  const file = OutputFile.open(path, { what: 'safetensors file', force: Boolean(options.overwrite) });
  try {
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    file.write(length);
    file.write(header);
    let done = 0;
    for (const t of tensors) {
      const data = t.data();
      checkData(t, data, name);
      file.write(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      done += data.byteLength;
      options.onProgress?.(done, totalBytes);
      await yieldToLoop(); // lets a progress bar redraw between tensors
    }
    file.commit();
  } finally {
    file.abort();
  }
}

/** The header bytes (JSON padded with spaces to a multiple of 8, as the Rust library writes) and data size. */
function buildHeader(
  tensors: readonly TensorToWrite[],
  metadata: Record<string, string> | undefined,
  path: string,
): { header: Buffer; totalBytes: number } {
  const bad = (msg: string, tensor?: string): never => {
    throw new ModernBertError('BAD_ARGUMENT', `${path}: ${msg}`, {
      file: path,
      ...(tensor === undefined ? {} : { tensor }),
    });
  };
  // No prototype: a tensor named "__proto__" or "toString" is a key like any other.
  const json = Object.create(null) as Record<string, unknown>;
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') bad(`metadata "${k}" is not a string`);
    json.__metadata__ = metadata;
  }
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '' || t.name === '__metadata__' || Object.hasOwn(json, t.name))
      bad(`tensor name "${t.name}" is empty, reserved or repeated`, t.name);
    if (!(t.dtype in BYTES)) bad(`tensor "${t.name}" has unsupported dtype ${String(t.dtype)}`, t.name);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      bad(`tensor "${t.name}" has an invalid shape [${t.shape.join(', ')}]`, t.name);
    const bytes = numel(t.shape) * BYTES[t.dtype];
    json[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const text = Buffer.from(JSON.stringify(json), 'utf8');
  const padded = Buffer.alloc(Math.ceil(text.length / 8) * 8, ' ');
  text.copy(padded);
  return { header: padded, totalBytes: offset };
}

function checkData(t: TensorToWrite, data: ArrayBufferView, path: string): void {
  const Expected = ARRAY_TYPES[t.dtype];
  const got = (data as object).constructor.name;
  if (!(data instanceof Expected)) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `${path}: tensor "${t.name}" (${t.dtype}) needs a ${Expected.name}, got ${got}`,
      { file: path, tensor: t.name },
    );
  }
  const n = numel(t.shape);
  if (data.byteLength !== n * BYTES[t.dtype]) {
    throw new ModernBertError(
      'SHAPE_MISMATCH',
      `${path}: tensor "${t.name}" has ${data.byteLength / BYTES[t.dtype]} values but shape [${t.shape.join(', ')}] needs ${n}`,
      {
        file: path,
        tensor: t.name,
        got: data.byteLength / BYTES[t.dtype],
        expected: n,
      },
    );
  }
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
