// Reading safetensors files tensor by tensor: the header is parsed and checked up front (every offset,
// size and dtype), then each tensor is read from disk when asked, so a 1.6 GB checkpoint is never held twice.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ModernBertError } from '../errors.js';
import { decodeBF16, decodeF16 } from '../numeric/fp16.js';
import { sharedFloat32 } from '../weights.js';

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<SafetensorsDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Byte range within the data section (after the header). */
  begin: number;
  end: number;
}

// A header larger than this is certainly corrupt (the Rust library caps it at 100 MB).
const MAX_HEADER = 100_000_000;

/** An open safetensors file with a validated header. */
export class SafetensorsFile {
  readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  private readonly fd: number;
  private readonly dataStart: number;

  private constructor(readonly path: string, fd: number, dataStart: number, tensors: Map<string, TensorInfo>, metadata: Record<string, string>) {
    this.fd = fd;
    this.dataStart = dataStart;
    this.tensors = tensors;
    this.metadata = metadata;
  }

  /** Opens and validates a file; throws CORRUPT_FILE / FILE_NOT_FOUND with the path. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch {
      throw new ModernBertError('FILE_NOT_FOUND', `cannot open ${path}`, { file: path });
    }
    // A folder opens for reading on Linux, then fails on the first read (EISDIR).
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      throw new ModernBertError('BAD_INPUT', `${path} is not a file (expected a .safetensors file)`, { file: path });
    }
    try {
      const { dataStart, tensors, metadata } = readHeader(fd, path);
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
        throw new ModernBertError('CORRUPT_FILE', `${this.path}: tensor "${name}" has dtype ${info.dtype}, expected a float type`, { file: this.path, tensor: name });
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
            throw new ModernBertError('CORRUPT_FILE', `${this.path}: "${name}" holds ${v}, beyond int32`, { file: this.path, tensor: name });
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
        throw new ModernBertError('CORRUPT_FILE', `${this.path}: tensor "${name}" has dtype ${info.dtype}, expected an integer type`, { file: this.path, tensor: name });
    }
  }

  /** Metadata of one tensor; throws if absent. */
  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new ModernBertError('BAD_INPUT', `${this.path}: no tensor named "${name}"`, { file: this.path, tensor: name });
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
      if (n === 0) throw new ModernBertError('CORRUPT_FILE', `${this.path}: file ends inside tensor "${info.name}"`, { file: this.path, tensor: info.name });
      done += n;
    }
    return out;
  }
}

function numelOf(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function readHeader(fd: number, path: string): { dataStart: number; tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  const corrupt = (msg: string, ctx: Record<string, unknown> = {}): never => {
    throw new ModernBertError('CORRUPT_FILE', `${path}: ${msg}`, { file: path, ...ctx });
  };
  const size = fstatSync(fd).size;
  if (size < 8) corrupt(`too short to be a safetensors file (${size} bytes)`);
  const lenBuf = Buffer.alloc(8);
  readSync(fd, lenBuf, 0, 8, 0);
  const headerLen = Number(lenBuf.readBigUInt64LE(0));
  if (headerLen > MAX_HEADER || 8 + headerLen > size) {
    corrupt(`header length ${headerLen} runs past the end of the file (${size} bytes)`);
  }
  const headerBuf = Buffer.alloc(headerLen);
  readSync(fd, headerBuf, 0, headerLen, 8);
  let header: unknown;
  try {
    header = JSON.parse(headerBuf.toString('utf8'));
  } catch {
    return corrupt('header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) corrupt('header is not a JSON object');

  const dataStart = 8 + headerLen;
  const dataSize = size - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = t?.dtype as SafetensorsDType;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) corrupt(`tensor "${name}" has unknown dtype ${JSON.stringify(t?.dtype)}`, { tensor: name });
    const shape = t.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) corrupt(`tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`, { tensor: name });
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[1] < off[0]) {
      corrupt(`tensor "${name}" has invalid data_offsets ${JSON.stringify(off)}`, { tensor: name });
    }
    const [begin, end] = off as [number, number];
    if (end > dataSize) corrupt(`tensor "${name}" ends at byte ${end}, past the end of the data (${dataSize} bytes)`, { tensor: name });
    const expected = numelOf(shape as number[]) * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      corrupt(`tensor "${name}" has ${end - begin} bytes but its shape [${(shape as number[]).join(', ')}] x ${dtype} needs ${expected}`, { tensor: name });
    }
    tensors.set(name, { name, dtype, shape: shape as number[], begin, end });
  }
  // Overlapping tensors mean a corrupt or malicious file.
  const sorted = [...tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end) {
      corrupt(`tensors "${sorted[i - 1]!.name}" and "${sorted[i]!.name}" overlap`, { tensor: sorted[i]!.name });
    }
  }
  return { dataStart, tensors, metadata };
}
