// Reading safetensors files tensor by tensor: the header is parsed and checked up front (every offset,
// size and dtype), then each tensor is read from disk when asked, so a 1.6 GB checkpoint is never held twice.

import { closeSync, readSync, realpathSync } from 'node:fs';
import { ModernBertError } from '../errors.js';
import { decodeBF16, decodeF16 } from '../numeric/fp16.js';
import { sharedFloat32, type StoredTensor } from './weights.js';
import { openRegularFile, readExactly } from './files.js';
import { formatBytes } from './limits.js';
import { FloatLiteral, parseStrictJson, StrictJsonError, type StrictJson } from './strict-json.js';

/** The dtypes of the Rust library's `Dtype` enum; readFloat32 and readInt32 say which ones they read. */
export type SafetensorsDType =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U8'
  | 'BOOL'
  | 'F4'
  | 'F6_E2M3'
  | 'F6_E3M2'
  | 'F8_E5M2'
  | 'F8_E4M3'
  | 'F8_E8M0'
  | 'F8_E4M3FNUZ'
  | 'F8_E5M2FNUZ'
  | 'U16'
  | 'U32'
  | 'U64'
  | 'C64';

// Dtype::bitsize() of the Rust crate (safetensors/src/tensor.rs): a header naming any of these is valid,
// though only the types with a reader below can be read.
const DTYPE_BITS: Record<SafetensorsDType, number> = {
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  BOOL: 8,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  I64: 64,
  U64: 64,
  F64: 64,
  C64: 64,
};

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range within the data section (after the header). */
  begin: number;
  end: number;
}

const STORED_DTYPE: Partial<Record<SafetensorsDType, StoredTensor['dtype']>> = {
  F32: 'fp32',
  F16: 'fp16',
  BF16: 'bf16',
};

// A header larger than this is certainly corrupt (the Rust library caps it at 100 MB).
const MAX_HEADER = 100_000_000;

/** An open safetensors file with a validated header. */
export class SafetensorsFile {
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  private readonly fd: number;
  private readonly dataStart: number;
  private realPath: string | undefined;

  private constructor(
    readonly path: string,
    fd: number,
    dataStart: number,
    tensors: Map<string, TensorInfo>,
    metadata: Record<string, string>,
  ) {
    this.fd = fd;
    this.dataStart = dataStart;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  /** Opens and validates a file (of at most `maxBytes`: a `what`'s cap, io/limits.ts); throws CORRUPT_FILE / FILE_NOT_FOUND with the path. */
  static open(path: string, maxBytes = Infinity, what = 'safetensors file'): SafetensorsFile {
    const { fd, size } = openRegularFile(path, what);
    try {
      if (size > maxBytes)
        throw new ModernBertError(
          'BAD_INPUT',
          `${path} is ${size} bytes, more than the ${formatBytes(maxBytes)} a ${what} may have`,
          { file: path, maxBytes },
        );
      const { dataStart, tensors, metadata } = readHeader(fd, size, path);
      return new SafetensorsFile(path, fd, dataStart, tensors, metadata);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Reads a floating-point tensor as float32 (F32, F16, BF16 or F64). */
  readFloat32(name: string): Float32Array {
    const info = this.info(name);
    const n = numelOf(info.shape);
    // Float32 data is read straight into shared memory (the kernels' workers read it in place); the
    // half-precision types are decoded into it.
    const bytes = this.readBytes(info, info.dtype === 'F32');
    switch (info.dtype) {
      case 'F32':
        return new Float32Array(bytes.buffer, bytes.byteOffset, n);
      case 'F16':
        return decodeF16(new Uint16Array(bytes.buffer, bytes.byteOffset, n), sharedFloat32(n));
      case 'BF16':
        return decodeBF16(new Uint16Array(bytes.buffer, bytes.byteOffset, n), sharedFloat32(n));
      case 'F64':
        return Float32Array.from(new Float64Array(bytes.buffer, bytes.byteOffset, n));
      default:
        throw new ModernBertError(
          'CORRUPT_FILE',
          `${this.path}: tensor "${name}" has dtype ${info.dtype}, expected a float type`,
          { file: this.path, tensor: name },
        );
    }
  }

  /** Reads an integer tensor (I64, I32, I16, I8, U8, BOOL) as numbers in an Int32Array. */
  readInt32(name: string): Int32Array {
    const info = this.info(name);
    const bytes = this.readBytes(info);
    const n = numelOf(info.shape);
    switch (info.dtype) {
      case 'I64': {
        const src = new BigInt64Array(bytes.buffer, bytes.byteOffset, n);
        const out = new Int32Array(n);
        for (let i = 0; i < n; i++) {
          const v = src[i]!;
          if (v > 2147483647n || v < -2147483648n) {
            throw new ModernBertError('CORRUPT_FILE', `${this.path}: "${name}" holds ${v}, beyond int32`, {
              file: this.path,
              tensor: name,
            });
          }
          out[i] = Number(v);
        }
        return out;
      }
      case 'I32':
        return new Int32Array(bytes.buffer, bytes.byteOffset, n);
      case 'I16':
        return Int32Array.from(new Int16Array(bytes.buffer, bytes.byteOffset, n));
      case 'I8':
        return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, n));
      case 'U8':
      case 'BOOL':
        return Int32Array.from(bytes);
      default:
        throw new ModernBertError(
          'CORRUPT_FILE',
          `${this.path}: tensor "${name}" has dtype ${info.dtype}, expected an integer type`,
          { file: this.path, tensor: name },
        );
    }
  }

  /** Where a float tensor's bytes lie in the file (F32, F16 or BF16; undefined for other dtypes). */
  location(name: string): StoredTensor | undefined {
    const info = this.info(name);
    const dtype = STORED_DTYPE[info.dtype];
    if (dtype === undefined) return undefined;
    this.realPath ??= realpathSync(this.path);
    return { path: this.realPath, offset: this.dataStart + info.begin, byteLength: info.end - info.begin, dtype };
  }

  /** Metadata of one tensor; throws if absent. */
  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info)
      throw new ModernBertError('BAD_INPUT', `${this.path}: no tensor named "${name}"`, {
        file: this.path,
        tensor: name,
      });
    return info;
  }

  close(): void {
    closeSync(this.fd);
  }

  private readBytes(info: TensorInfo, shared = false): Uint8Array {
    const length = info.end - info.begin;
    // 8-byte aligned storage so that typed-array views of any element size are valid.
    const size = Math.ceil(length / 8) * 8;
    const out = new Uint8Array(shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size), 0, length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, out, done, length - done, this.dataStart + info.begin + done);
      if (n === 0)
        throw new ModernBertError('CORRUPT_FILE', `${this.path}: file ends inside tensor "${info.name}"`, {
          file: this.path,
          tensor: info.name,
        });
      done += n;
    }
    return out;
  }
}

function numelOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// The checks of the Rust crate's SafeTensors::read_metadata and Metadata::validate
// (safetensors/src/tensor.rs), with its error kind named in each message, so that a file is valid
// here exactly when Hugging Face's library loads it:
// - HeaderTooSmall: fewer than 8 bytes; HeaderTooLarge: a header length above 100,000,000;
//   InvalidHeaderLength: the header runs past the end of the file;
// - InvalidHeader: the header is not UTF-8; InvalidHeaderStart: it does not begin with '{' (older
//   releases check this; a leading BOM or space is refused);
// - InvalidHeaderDeserialization: serde_json refuses it: not JSON, trailing text, nesting
//   deeper than 128, `__metadata__` not a string-to-string map (null is allowed), a tensor without dtype,
//   shape or data_offsets, an unknown dtype, a shape or offset that is not a non-negative integer;
// - InvalidOffset: tensors sorted by data_offsets must follow each other with no gap or overlap,
//   starting at 0; ValidationOverflow: the element count overflows; TensorInvalidInfo: the byte span is
//   not shape x dtype size; MisalignedSlice: a sub-byte dtype that ends inside a byte;
// - MetadataIncompleteBuffer: the tensors do not end exactly at the end of the file.
// One deliberate difference: the library keeps the last of duplicate keys (measured with its Python
// binding 0.8.0, bench/safetensors-diff.mjs); we refuse them, since a reader that keeps the first would
// load other weights from the same file.
function readHeader(
  fd: number,
  size: number,
  path: string,
): { dataStart: number; tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const corrupt = (kind: string, msg: string, ctx: Record<string, unknown> = {}): never => {
    throw new ModernBertError('CORRUPT_FILE', `${path}: ${msg} (${kind})`, { file: path, kind, ...ctx });
  };
  if (size < 8) corrupt('HeaderTooSmall', `too short to be a safetensors file (${size} bytes)`);
  const lenBuf = Buffer.alloc(8);
  readExactly(fd, lenBuf, 0, path);
  const headerLen = lenBuf.readBigUInt64LE(0);
  if (headerLen > BigInt(MAX_HEADER))
    corrupt('HeaderTooLarge', `header length ${headerLen} is above the ${MAX_HEADER}-byte limit`);
  const n = Number(headerLen);
  if (8 + n > size) corrupt('InvalidHeaderLength', `header length ${n} runs past the end of the file (${size} bytes)`);
  const headerBuf = Buffer.alloc(n);
  readExactly(fd, headerBuf, 8, path);
  let text: string;
  try {
    text = utf8.decode(headerBuf);
  } catch {
    return corrupt('InvalidHeader', 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) corrupt('InvalidHeaderStart', "header does not start with '{'");
  let header: StrictJson;
  try {
    header = parseStrictJson(text);
  } catch (e) {
    if (!(e instanceof StrictJsonError)) throw e;
    return corrupt('InvalidHeaderDeserialization', `header is not valid JSON: ${e.message}`);
  }
  if (!(header instanceof Map)) return corrupt('InvalidHeaderDeserialization', 'header is not a JSON object');

  const bad = (msg: string, tensor?: string): never =>
    corrupt('InvalidHeaderDeserialization', msg, tensor === undefined ? {} : { tensor });
  // serde's usize: an integer literal below 2^64 (above 2^53 it is inexact here, but only an empty tensor can use it).
  const isUsize = (v: StrictJson | undefined): v is number =>
    typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 64;
  const show = (v: StrictJson | undefined): string => {
    const one = (x: StrictJson | undefined): string =>
      x instanceof FloatLiteral
        ? String(x.value)
        : x instanceof Map
          ? '{...}'
          : Array.isArray(x)
            ? '[...]'
            : (JSON.stringify(x) ?? 'undefined');
    const s = Array.isArray(v)
      ? `[${v.map(one).join(',')}]`
      : v instanceof Map
        ? `{${[...v.keys()].map((k) => JSON.stringify(k)).join(',')}}`
        : one(v);
    return s.length > 60 ? `${s.slice(0, 60)}...` : s;
  };

  const dataStart = 8 + n;
  const dataSize = size - dataStart;
  const tensors = new Map<string, TensorInfo>();
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, raw] of header) {
    if (name === '__metadata__') {
      if (raw === null) continue;
      if (!(raw instanceof Map)) return bad(`__metadata__ is not a map of strings: ${show(raw)}`);
      for (const [k, v] of raw) {
        if (typeof v !== 'string') bad(`__metadata__ "${k.slice(0, 40)}" is not a string: ${show(v)}`);
        metadata[k] = v as string;
      }
      continue;
    }
    const tname = name.length > 80 ? `${name.slice(0, 80)}...` : name;
    if (!(raw instanceof Map)) return bad(`tensor "${tname}" is not an object: ${show(raw)}`, name);
    const dtype = raw.get('dtype');
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BITS, dtype))
      return bad(`tensor "${tname}" has unknown dtype ${show(dtype)}`, name);
    const shape = raw.get('shape');
    if (!Array.isArray(shape) || !shape.every(isUsize))
      return bad(
        `tensor "${tname}" has an invalid shape ${show(shape)} (dimensions must be non-negative integers)`,
        name,
      );
    const off = raw.get('data_offsets');
    if (!Array.isArray(off) || off.length !== 2 || !off.every(isUsize))
      return bad(`tensor "${tname}" has invalid data_offsets ${show(off)} (a pair of non-negative integers)`, name);
    const [begin, end] = off as [number, number];
    tensors.set(name, { name, dtype: dtype as SafetensorsDType, shape: shape as number[], begin, end });
  }

  // Metadata::validate, in the crate's order: sorted by (begin, end), each tensor starts where the last ended.
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let start = 0;
  for (const t of sorted) {
    const tname = t.name.length > 80 ? `${t.name.slice(0, 80)}...` : t.name;
    if (t.begin !== start || t.end < t.begin) {
      const why =
        t.end < t.begin
          ? 'ends before it begins'
          : t.begin > start
            ? `leaves a gap (bytes ${start}..${t.begin} belong to no tensor)`
            : `overlaps the tensor before it (which ends at byte ${start})`;
      corrupt('InvalidOffset', `tensor "${tname}" at data_offsets [${t.begin}, ${t.end}] ${why}`, { tensor: t.name });
    }
    start = t.end;
    let numel = 1;
    for (const d of t.shape) {
      numel *= d;
      if (!Number.isSafeInteger(numel))
        corrupt('ValidationOverflow', `tensor "${tname}" has shape [${t.shape.join(', ')}], too many elements`, {
          tensor: t.name,
        });
    }
    const bits = numel * DTYPE_BITS[t.dtype];
    if (!Number.isSafeInteger(bits))
      corrupt('ValidationOverflow', `tensor "${tname}" has shape [${t.shape.join(', ')}], too many bytes`, {
        tensor: t.name,
      });
    if (bits % 8 !== 0)
      corrupt('MisalignedSlice', `tensor "${tname}" of ${t.dtype} ends inside a byte`, { tensor: t.name });
    if (t.end - t.begin !== bits / 8) {
      corrupt(
        'TensorInvalidInfo',
        `tensor "${tname}" has ${t.end - t.begin} bytes but its shape [${t.shape.join(', ')}] x ${t.dtype} needs ${bits / 8}`,
        { tensor: t.name },
      );
    }
  }
  if (start !== dataSize) {
    corrupt(
      'MetadataIncompleteBuffer',
      `the tensors cover ${start} bytes of data but the file holds ${dataSize} after the header`,
    );
  }
  return { dataStart, tensors, metadata };
}
