// The MIL blob storage file (weights/weight.bin), version 2, as defined by coremltools'
// mlmodel/src/MILBlob/Blob/StorageFormat.hpp and written by StorageWriter.cpp:
//   storage_header (64 bytes): uint32 count, uint32 version = 2, 7 x uint64 reserved (0)
//   then per blob, each at the next 64-byte boundary of the file:
//   blob_metadata (64 bytes): uint32 sentinel = 0xDEADBEEF, uint32 mil_dtype (BlobDataType.hpp),
//     uint64 sizeInBytes, uint64 offset (of the data), uint64 padding_size_in_bits, 4 x uint64 reserved (0)
//   followed directly by the data (so it is 64-byte aligned too).
// A BlobFileValue in the program holds the offset of a blob's metadata, not of its data.
// All integers are little-endian. The writer streams: blobs are appended one at a time to an open file.

import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { ModernBertError } from '../errors.js';
import { openRegularFile } from '../io/files.js';
import { isSubByte } from './tensor-bytes.js';

const STORAGE_HEADER_SIZE = 64;
const BLOB_METADATA_SIZE = 64;
const BLOB_ALIGNMENT = 64;
const BLOB_SENTINEL = 0xdeadbeef;
const STORAGE_VERSION = 2;

/** BlobDataType codes (MILBlob/Blob/BlobDataType.hpp). */
export const BLOB_DATA_TYPES = {
  fp16: 1,
  fp32: 2,
  uint8: 3,
  int8: 4,
  bf16: 5,
  int16: 6,
  uint16: 7,
  int4: 8,
  uint1: 9,
  uint2: 10,
  uint4: 11,
  uint3: 12,
  uint6: 13,
  int32: 14,
  uint32: 15,
  fp8e4m3fn: 16,
  fp8e5m2: 17,
} as const;

export type BlobDataType = keyof typeof BLOB_DATA_TYPES;

const NAME_OF_CODE = new Map<number, BlobDataType>(
  Object.entries(BLOB_DATA_TYPES).map(([name, code]) => [code, name as BlobDataType]),
);

function alignUp(n: number): number {
  return Math.ceil(n / BLOB_ALIGNMENT) * BLOB_ALIGNMENT;
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/** Appends blobs to a new weight file; `close()` finalises the header's count. */
export class BlobWriter {
  private fd: number | undefined;
  private end = STORAGE_HEADER_SIZE;
  private blobs = 0;

  private constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
    writeAll(this.fd, storageHeader(0), 0);
  }

  /** Creates (or truncates) `path` and writes an empty storage header. */
  static create(path: string): BlobWriter {
    return new BlobWriter(path);
  }

  /** Bytes in the file so far. */
  get size(): number {
    return this.end;
  }

  /** Blobs appended so far. */
  get count(): number {
    return this.blobs;
  }

  /** Appends one blob at the next 64-byte boundary; returns its metadata offset (for BlobFileValue.offset). */
  append(dataType: BlobDataType, data: Uint8Array, paddingBits = 0): number {
    if (this.fd === undefined) throw new ModernBertError('INTERNAL', `weight file ${this.path} is already closed`);
    const metadataOffset = alignUp(this.end);
    const dataOffset = metadataOffset + BLOB_METADATA_SIZE;
    // Zero padding up to the boundary (coremltools seeks past the end, which leaves the same zeros).
    if (metadataOffset > this.end) writeAll(this.fd, new Uint8Array(metadataOffset - this.end), this.end);
    writeAll(this.fd, blobMetadata(BLOB_DATA_TYPES[dataType], data.length, dataOffset, paddingBits), metadataOffset);
    writeAll(this.fd, data, dataOffset);
    this.end = dataOffset + data.length;
    this.blobs++;
    return metadataOffset;
  }

  /** Writes the final blob count into the header and closes the file. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      writeAll(fd, storageHeader(this.blobs), 0);
    } finally {
      closeSync(fd);
    }
  }

  /** Closes the file without finalising it (after a failure; the caller removes it). */
  abort(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

function storageHeader(count: number): Uint8Array {
  const b = Buffer.alloc(STORAGE_HEADER_SIZE);
  b.writeUInt32LE(count, 0);
  b.writeUInt32LE(STORAGE_VERSION, 4);
  return b;
}

function blobMetadata(code: number, sizeInBytes: number, dataOffset: number, paddingBits: number): Uint8Array {
  const b = Buffer.alloc(BLOB_METADATA_SIZE);
  b.writeUInt32LE(BLOB_SENTINEL, 0);
  b.writeUInt32LE(code, 4);
  b.writeBigUInt64LE(BigInt(sizeInBytes), 8);
  b.writeBigUInt64LE(BigInt(dataOffset), 16);
  b.writeBigUInt64LE(BigInt(paddingBits), 24);
  return b;
}

/** One blob's metadata, validated against the file. */
export interface BlobInfo {
  /** Offset of the metadata record (what BlobFileValue.offset holds). */
  offset: number;
  dataType: BlobDataType;
  sizeInBytes: number;
  /** Offset of the data. */
  dataOffset: number;
  paddingBits: number;
}

/** Reads and validates a weight file; data is read on demand with positional reads (the file stays on disk). */
export class BlobReader {
  private fd: number | undefined;
  /** Blob count from the header. */
  readonly count: number;
  readonly fileSize: number;

  private constructor(readonly path: string) {
    const opened = openRegularFile(path, 'weight file');
    this.fd = opened.fd;
    try {
      this.fileSize = opened.size;
      if (this.fileSize < STORAGE_HEADER_SIZE) {
        throw this.corrupt(`is ${this.fileSize} bytes, shorter than the ${STORAGE_HEADER_SIZE}-byte storage header`, {
          fileSize: this.fileSize,
        });
      }
      const header = this.bytes(0, STORAGE_HEADER_SIZE);
      const version = header.readUInt32LE(4);
      if (version !== STORAGE_VERSION) {
        throw this.corrupt(`has storage version ${version}; only version ${STORAGE_VERSION} is defined`, { version });
      }
      this.count = header.readUInt32LE(0);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Opens `path` and validates its storage header (size, version). */
  static open(path: string): BlobReader {
    return new BlobReader(path);
  }

  /** The metadata of the blob whose metadata record is at `offset`, checked against the file's bounds. */
  blob(offset: number): BlobInfo {
    if (!Number.isSafeInteger(offset) || offset < STORAGE_HEADER_SIZE || offset + BLOB_METADATA_SIZE > this.fileSize) {
      throw this.corrupt(`has no blob metadata at offset ${offset} (file is ${this.fileSize} bytes)`, { offset });
    }
    if (offset % BLOB_ALIGNMENT !== 0) {
      throw this.corrupt(`blob metadata offset ${offset} is not ${BLOB_ALIGNMENT}-byte aligned`, { offset });
    }
    const m = this.bytes(offset, BLOB_METADATA_SIZE);
    const sentinel = m.readUInt32LE(0);
    if (sentinel !== BLOB_SENTINEL) {
      throw this.corrupt(`blob at offset ${offset} has sentinel 0x${sentinel.toString(16)}, expected 0xdeadbeef`, {
        offset,
        sentinel,
      });
    }
    const code = m.readUInt32LE(4);
    const dataType = NAME_OF_CODE.get(code);
    if (!dataType) throw this.corrupt(`blob at offset ${offset} has unknown data type code ${code}`, { offset, code });
    const sizeInBytes = this.uint64(m, 8, offset, 'size');
    const dataOffset = this.uint64(m, 16, offset, 'data offset');
    const paddingBits = this.uint64(m, 24, offset, 'padding');
    if (dataOffset < offset + BLOB_METADATA_SIZE || dataOffset + sizeInBytes > this.fileSize) {
      throw this.corrupt(
        `blob at offset ${offset} claims ${sizeInBytes} bytes of data at ${dataOffset}, outside the file (${this.fileSize} bytes)`,
        { offset, sizeInBytes, dataOffset },
      );
    }
    if (dataOffset % BLOB_ALIGNMENT !== 0) {
      throw this.corrupt(`blob at offset ${offset} has data at ${dataOffset}, not ${BLOB_ALIGNMENT}-byte aligned`, {
        offset,
        dataOffset,
      });
    }
    // Only sub-byte types' last byte may be partly padding (padding_size_in_bits).
    if (paddingBits !== 0 && (!isSubByte(dataType) || paddingBits >= 8)) {
      throw this.corrupt(`blob at offset ${offset} has ${paddingBits} padding bits for data type ${dataType}`, {
        offset,
        paddingBits,
      });
    }
    return { offset, dataType, sizeInBytes, dataOffset, paddingBits };
  }

  /** The raw data bytes of the blob whose metadata is at `offset`. */
  read(offset: number): { info: BlobInfo; data: Buffer } {
    const info = this.blob(offset);
    return { info, data: this.bytes(info.dataOffset, info.sizeInBytes) };
  }

  /** Every blob, walking the file from the header as MILBlob's StorageReader::GetAllOffsets does. */
  list(): BlobInfo[] {
    const blobs: BlobInfo[] = [];
    let offset = STORAGE_HEADER_SIZE;
    for (let i = 0; i < this.count; i++) {
      const info = this.blob(offset);
      blobs.push(info);
      offset = alignUp(info.dataOffset + info.sizeInBytes);
    }
    return blobs;
  }

  /** Closes the file; further reads fail. */
  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  private bytes(position: number, length: number): Buffer {
    if (this.fd === undefined) throw new ModernBertError('INTERNAL', `weight file ${this.path} is already closed`);
    const out = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, out, done, length - done, position + done);
      if (n === 0)
        throw this.corrupt(`ended early: read ${done} of ${length} bytes at ${position}`, { position, length });
      done += n;
    }
    return out;
  }

  private uint64(m: Buffer, at: number, offset: number, what: string): number {
    const v = m.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw this.corrupt(`blob at offset ${offset} has an impossible ${what} ${v}`, { offset });
    return Number(v);
  }

  private corrupt(what: string, context: Record<string, unknown>): ModernBertError {
    return new ModernBertError('CORRUPT_FILE', `weight file ${this.path} ${what}`, { file: this.path, ...context });
  }
}
