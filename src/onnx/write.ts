// Writing a lowered graph as an .onnx file: one protobuf, or (--external-data) the graph with the weights
// in a side file `<name>.data` that the initializers point into (ONNX's external data: location, offset,
// length, relative to the model's folder). Protobuf cannot hold a message above 2 GiB, so a model whose
// weights do not fit is refused unless they go outside. Both files are written under temporary names in the
// output's folder and renamed at the end: a failed export leaves nothing behind.

import { closeSync, lstatSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { ModernBertError } from '../errors.js';
import { fsError } from '../io/fs-errors.js';
import { VERSION } from '../version.js';
import { ONNX_IR_VERSION, ONNX_OPSET, type LoweredGraph } from './lower.js';
import { encodeOnnxModel, type OnnxModelProto, type OnnxTensorProto } from './schema.js';

/** Protobuf's limit on one message, less room for the graph itself. */
const MAX_INLINE_BYTES = 2 ** 31 - 2 ** 26;
/** Initializers smaller than this stay inline even with external data (as onnx's own converter does). */
const EXTERNAL_MIN_BYTES = 1024;
/** Offsets in the data file are aligned for memory mapping. */
const EXTERNAL_ALIGN = 4096;

export interface OnnxModelInfo {
  /** The graph's name. */
  name: string;
  docString?: string;
  metadata?: Record<string, string>;
}

export interface WriteOnnxOptions extends OnnxModelInfo {
  force: boolean;
  /** Put the weights in `<out>.data` beside the model. */
  externalData?: boolean;
  /** The most weight bytes one file may hold (MAX_INLINE_BYTES; smaller in tests). */
  maxInlineBytes?: number;
}

export interface WriteOnnxResult {
  out: string;
  /** The external data file, when written. */
  data?: string;
  bytes: number;
  weightBytes: number;
}

function modelProto(g: LoweredGraph, info: OnnxModelInfo, initializer: OnnxTensorProto[]): OnnxModelProto {
  return {
    ir_version: ONNX_IR_VERSION,
    opset_import: [{ domain: '', version: ONNX_OPSET }],
    producer_name: 'modernbert-ane',
    producer_version: VERSION,
    ...(info.docString ? { doc_string: info.docString } : {}),
    graph: { name: info.name, node: g.nodes, initializer, input: g.inputs, output: g.outputs },
    ...(info.metadata ? { metadata_props: Object.entries(info.metadata).map(([key, value]) => ({ key, value })) } : {}),
  };
}

/** The model as one protobuf in memory (for onnxruntime; the weights inline). */
export function onnxBytes(g: LoweredGraph, info: OnnxModelInfo, maxInlineBytes = MAX_INLINE_BYTES): Uint8Array {
  checkInlineSize(g, maxInlineBytes, 'the model');
  return encodeOnnxModel(modelProto(g, info, g.initializers.map((t) => ({ name: t.name, dims: t.dims, data_type: t.dataType, raw_data: t.bytes() }))));
}

function checkInlineSize(g: LoweredGraph, max: number, what: string): void {
  const total = g.initializers.reduce((s, t) => s + t.byteLength, 0);
  if (total > max) {
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
    throw new ModernBertError('BAD_ARGUMENT', `${what} has ${gib(total)} of weights, more than one ONNX file can hold (${gib(max)}, protobuf's limit): add --external-data to write them to a .data file beside it`, { bytes: total });
  }
}

/** Checks that an .onnx file may be written at `out` (a file, replaced only with `force`). Returns the absolute path. */
export function checkOnnxOutput(out: string, force: boolean): string {
  if (out.trim() === '') throw new ModernBertError('BAD_ARGUMENT', 'the output path is empty: name a file, e.g. --out model.onnx');
  const target = resolve(out);
  const parent = dirname(target);
  const dir = statSync(parent, { throwIfNoEntry: false });
  if (!dir) throw new ModernBertError('FILE_NOT_FOUND', `the folder to write ${basename(target)} into does not exist: ${parent}`, { path: parent });
  if (!dir.isDirectory()) throw new ModernBertError('BAD_ARGUMENT', `cannot write ${out}: ${parent} is a file, not a folder`, { path: parent });
  const own = lstatSync(target, { throwIfNoEntry: false });
  if (own?.isDirectory()) throw new ModernBertError('BAD_ARGUMENT', `cannot write ${out}: it is a folder`, { path: out });
  if (own && !force) throw new ModernBertError('OUTPUT_EXISTS', `${out} already exists (use --force to replace it)`, { path: out });
  return target;
}

/** Writes the lowered graph to `out` (and `<out>.data` with externalData), atomically. */
export function writeOnnx(g: LoweredGraph, out: string, o: WriteOnnxOptions): WriteOnnxResult {
  const target = checkOnnxOutput(out, o.force);
  const weightBytes = g.initializers.reduce((s, t) => s + t.byteLength, 0);
  if (!o.externalData) checkInlineSize(g, o.maxInlineBytes ?? MAX_INLINE_BYTES, out);
  const dataName = `${basename(target)}.data`;
  const dataTarget = join(dirname(target), dataName);
  const tmp = join(dirname(target), `.${basename(target).slice(0, 60)}.tmp-${process.pid}-${randomUUID()}`);
  const tmpData = `${tmp}.data`;
  try {
    let initializer: OnnxTensorProto[];
    if (o.externalData) {
      const fd = openSync(tmpData, 'w');
      try {
        let offset = 0;
        initializer = g.initializers.map((t) => {
          if (t.byteLength < EXTERNAL_MIN_BYTES) return { name: t.name, dims: t.dims, data_type: t.dataType, raw_data: t.bytes() };
          offset = Math.ceil(offset / EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
          const bytes = t.bytes();
          writeSync(fd, bytes, 0, bytes.length, offset);
          const entry: OnnxTensorProto = {
            name: t.name,
            dims: t.dims,
            data_type: t.dataType,
            data_location: 1,
            external_data: [{ key: 'location', value: dataName }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(bytes.length) }],
          };
          offset += bytes.length;
          return entry;
        });
      } finally {
        closeSync(fd);
      }
    } else {
      initializer = g.initializers.map((t) => ({ name: t.name, dims: t.dims, data_type: t.dataType, raw_data: t.bytes() }));
    }
    const bytes = encodeOnnxModel(modelProto(g, o, initializer));
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, bytes);
    } finally {
      closeSync(fd);
    }
    if (o.externalData) renameSync(tmpData, dataTarget);
    renameSync(tmp, target);
    return { out: target, ...(o.externalData ? { data: dataTarget } : {}), bytes: bytes.length, weightBytes };
  } catch (e) {
    throw fsError(e, out, 'write');
  } finally {
    rmSync(tmp, { force: true });
    rmSync(tmpData, { force: true });
  }
}
