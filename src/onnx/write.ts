// Writing a lowered graph as an .onnx file: one protobuf, or (--external-data) the graph with the weights
// in a side file `<name>.data` that the initializers point into (ONNX's external data: location, offset,
// length, relative to the model's folder). Protobuf cannot hold a message above 2 GiB, so a model whose
// weights do not fit is refused unless they go outside. Both files are outputs as io/output.ts writes them:
// checked before the work, written under temporary names and renamed at the end (the data file first).

import { basename, dirname, join } from 'node:path';
import { ModernBertError } from '../errors.js';
import { checkFileOutput, OutputFile, type CheckedOutput } from '../io/output.js';
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

/** Where an export goes, and what it must not write over. */
export interface OnnxOutputOptions {
  force: boolean;
  /** Put the weights in `<out>.data` beside the model. */
  externalData?: boolean;
  /** What this run reads (the checkpoint, a calibration file): never written over. */
  inputs?: readonly (string | undefined)[];
}

export interface WriteOnnxOptions extends OnnxModelInfo, OnnxOutputOptions {
  /** The most weight bytes one file may hold (MAX_INLINE_BYTES; smaller in tests). */
  maxInlineBytes?: number;
}

/** The checked outputs of an export: the model, and with external data the data file beside it. */
export interface OnnxOutputs {
  model: CheckedOutput;
  data?: CheckedOutput;
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

/** Checks, before any work, that the model (and with externalData its `<name>.data` beside it) may be written. */
export function checkOnnxOutput(out: string, o: OnnxOutputOptions): OnnxOutputs {
  if (out.trim() === '') throw new ModernBertError('BAD_ARGUMENT', 'the output path is empty: name a file, e.g. --out model.onnx');
  const model = checkFileOutput(out, { what: '--out', force: o.force, inputs: o.inputs });
  if (!o.externalData) return { model };
  if (model.how === 'direct') throw new ModernBertError('BAD_ARGUMENT', `--external-data writes a .data file beside the model, which ${out} (a device or stream) cannot have`, { path: out });
  const data = checkFileOutput(join(dirname(model.target), `${basename(model.target)}.data`), { what: 'the external data file', force: o.force, inputs: o.inputs });
  return { model, data };
}

/** Writes the lowered graph to `out` (checked now, or by checkOnnxOutput before the work), atomically. */
export function writeOnnx(g: LoweredGraph, out: string | OnnxOutputs, o: WriteOnnxOptions): WriteOnnxResult {
  const outputs = typeof out === 'string' ? checkOnnxOutput(out, o) : out;
  const weightBytes = g.initializers.reduce((s, t) => s + t.byteLength, 0);
  if (!outputs.data) checkInlineSize(g, o.maxInlineBytes ?? MAX_INLINE_BYTES, outputs.model.path);
  const dataName = basename(outputs.data?.target ?? '');
  const dataFile = outputs.data && OutputFile.open(outputs.data);
  let modelFile: OutputFile | undefined;
  try {
    let initializer: OnnxTensorProto[];
    if (dataFile) {
      let offset = 0;
      initializer = g.initializers.map((t) => {
        if (t.byteLength < EXTERNAL_MIN_BYTES) return { name: t.name, dims: t.dims, data_type: t.dataType, raw_data: t.bytes() };
        const aligned = Math.ceil(offset / EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
        if (aligned > offset) dataFile.write(new Uint8Array(aligned - offset));
        const bytes = t.bytes();
        dataFile.write(bytes);
        const entry: OnnxTensorProto = {
          name: t.name,
          dims: t.dims,
          data_type: t.dataType,
          data_location: 1,
          external_data: [{ key: 'location', value: dataName }, { key: 'offset', value: String(aligned) }, { key: 'length', value: String(bytes.length) }],
        };
        offset = aligned + bytes.length;
        return entry;
      });
    } else {
      initializer = g.initializers.map((t) => ({ name: t.name, dims: t.dims, data_type: t.dataType, raw_data: t.bytes() }));
    }
    const bytes = encodeOnnxModel(modelProto(g, o, initializer));
    modelFile = OutputFile.open(outputs.model);
    modelFile.write(bytes);
    // The data first: a model in place never points into a data file that is not.
    dataFile?.commit();
    modelFile.commit();
    return { out: outputs.model.target, ...(outputs.data ? { data: outputs.data.target } : {}), bytes: bytes.length, weightBytes };
  } finally {
    dataFile?.abort();
    modelFile?.abort();
  }
}
