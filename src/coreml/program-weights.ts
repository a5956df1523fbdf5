// The weight file as a program reads it: each `const` whose value lies in weights/weight.bin becomes a Const
// whose blob metadata (data type, size, padding) is checked when the program is read and whose data is read
// from the file, and checked again, only when a runtime asks for it.

import { realpathSync } from 'node:fs';
import { relative, resolve, sep } from 'node:path';
import type { Const, DType, TensorData, TensorType } from '../ir/graph.js';
import { numel } from '../ir/graph.js';
import { ModernBertError } from '../errors.js';
import { fileError } from '../io/files.js';
import { assertFinite } from '../io/weights.js';
import { BlobReader, type BlobDataType } from './milblob.js';
import { readTensorType } from './mil-values.js';
import type { ValueProto } from './schema.js';
import { decodeTensorBytes, paddingBits, storedBytes } from './tensor-bytes.js';

/** An error for what the reader does not take, naming the file. */
export function unsupported(file: string, message: string, context: Record<string, unknown> = {}): ModernBertError {
  return new ModernBertError('UNSUPPORTED', `${file}: ${message}`, { file, ...context });
}

/** An error for a file that is not what it claims, naming it. */
export function corrupt(file: string, message: string, context: Record<string, unknown> = {}): ModernBertError {
  return new ModernBertError('CORRUPT_FILE', `${file}: ${message}`, { file, ...context });
}

/**
 * Blob data types accepted for a tensor dtype. fp16 tensors are written as Float16 (1) by MILBlob's
 * StorageWriter; the reference fixtures mark them UInt16 (7), the same bits, so that is accepted too.
 */
const BLOB_TYPES_FOR: Record<DType, readonly BlobDataType[]> = {
  fp16: ['fp16', 'uint16'],
  fp32: ['fp32'],
  int32: ['int32'],
  int16: ['int16'],
  int8: ['int8'],
  uint8: ['uint8'],
  bool: [],
  uint32: ['uint32'],
  int4: ['int4'],
  uint1: ['uint1'],
  uint2: ['uint2'],
  uint3: ['uint3'],
  uint4: ['uint4'],
  uint6: ['uint6'],
};

/** The weight files of one program, each opened once while the program is read. */
export class ProgramWeights {
  private readonly readers = new Map<string, BlobReader>();

  /** `file`: the program (model.mlmodel) whose @model_path the weight files are relative to. */
  constructor(private readonly file: string) {}

  close(): void {
    for (const r of this.readers.values()) r.close();
  }

  /** A Const whose data stays in the weight file; its blob metadata is validated now, its data read on load(). */
  constOf(name: string, val: ValueProto, where: string): Const {
    const { dtype, shape } = readTensorType(val.type, where);
    if (dtype === 'string') throw unsupported(this.file, `${where}: string data in a weight file`);
    const staticShape = shape as number[];
    if (shape.some((d) => d === null)) throw corrupt(this.file, `${where}: a weight has an unknown dimension`);
    const path = this.weightPath(val.blobFileValue?.fileName ?? '', where);
    const offset = val.blobFileValue?.offset ?? 0;
    const reader = this.blobReader(path);
    const check = (info: { dataType: BlobDataType; sizeInBytes: number; paddingBits: number }): void => {
      if (!BLOB_TYPES_FOR[dtype].includes(info.dataType)) {
        throw new ModernBertError(
          'CORRUPT_FILE',
          `${path}: blob at offset ${offset} (${name}) holds ${info.dataType} data for a ${dtype} tensor`,
          {
            file: path,
            offset,
            const: name,
          },
        );
      }
      const expected = storedBytes(dtype, numel(staticShape));
      if (info.sizeInBytes !== expected || info.paddingBits !== paddingBits(dtype, numel(staticShape))) {
        throw new ModernBertError(
          'CORRUPT_FILE',
          `${path}: blob at offset ${offset} (${name}) has ${info.sizeInBytes} bytes, shape [${staticShape.join(', ')}] of ${dtype} needs ${expected}`,
          {
            file: path,
            offset,
            const: name,
          },
        );
      }
    };
    const blob = reader.blob(offset);
    check(blob);
    const load = (): TensorData => {
      const r = BlobReader.open(path);
      try {
        const { info, data } = r.read(offset);
        check(info);
        const values = decodeTensorBytes(dtype, data, numel(staticShape));
        // A NaN or infinite weight would surface only as `null` probabilities.
        if (values instanceof Float32Array) assertFinite(values, name, path);
        return values;
      } finally {
        r.close();
      }
    };
    const type: TensorType = { dtype, shape: staticShape };
    // Float blobs are row-major values as they are: a runtime can read them in the file (lower.ts inPlace).
    const stored =
      dtype === 'fp16' || dtype === 'fp32'
        ? { stored: { path: realpathSync(path), offset: blob.dataOffset, byteLength: blob.sizeInBytes, dtype } }
        : {};
    return { name, type, load, ...stored };
  }

  /** Resolves a BlobFileValue file name (@model_path/weights/weight.bin) to a path inside the package. */
  private weightPath(fileName: string, where: string): string {
    const prefix = '@model_path/';
    if (!fileName.startsWith(prefix))
      throw unsupported(this.file, `${where}: weight file "${fileName}" is not relative to @model_path`);
    const modelDir = resolve(this.file, '..');
    const path = resolve(modelDir, fileName.slice(prefix.length));
    if (relative(modelDir, path).startsWith('..') || !path.startsWith(modelDir + sep)) {
      throw corrupt(this.file, `${where}: weight file "${fileName}" points outside the package`);
    }
    return path;
  }

  /** The open reader of a weight file; a missing file names the program that needs it. */
  private blobReader(path: string): BlobReader {
    let r = this.readers.get(path);
    if (!r) {
      try {
        r = BlobReader.open(path);
      } catch (e) {
        const err = fileError(e, path, 'weight file');
        if (err.code === 'FILE_NOT_FOUND') {
          throw new ModernBertError('FILE_NOT_FOUND', `weight file ${path} named by ${this.file} is missing`, {
            file: path,
          });
        }
        throw err;
      }
      this.readers.set(path, r);
    }
    return r;
  }
}
