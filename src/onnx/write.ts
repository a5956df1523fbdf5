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
import {
  encodeOnnxModel,
  type OnnxInitializer,
  type OnnxModelProto,
  type OnnxNodeProto,
  type OnnxTensorProto,
} from './schema.js';

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
  return encodeOnnxModel(
    modelProto(
      g,
      info,
      g.initializers.map((t) => ({ name: t.name, dims: t.dims, data_type: t.dataType, raw_data: t.bytes() })),
    ),
  );
}

function checkInlineSize(g: LoweredGraph, max: number, what: string): void {
  const total = g.initializers.reduce((s, t) => s + t.byteLength, 0);
  if (total > max) {
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `${what} has ${gib(total)} of weights, more than one ONNX file can hold (${gib(max)}, protobuf's limit): add --external-data to write them to a .data file beside it`,
      { bytes: total },
    );
  }
}

/** Checks, before any work, that the model (and with externalData its `<name>.data` beside it) may be written. */
export function checkOnnxOutput(out: string, o: OnnxOutputOptions): OnnxOutputs {
  if (out.trim() === '')
    throw new ModernBertError('BAD_ARGUMENT', 'the output path is empty: name a file, e.g. --out model.onnx');
  const model = checkFileOutput(out, { what: '--out', force: o.force, inputs: o.inputs });
  if (!o.externalData) return { model };
  if (model.how === 'direct')
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `--external-data writes a .data file beside the model, which ${out} (a device or stream) cannot have`,
      { path: out },
    );
  const data = checkFileOutput(join(dirname(model.target), `${basename(model.target)}.data`), {
    what: 'the external data file',
    force: o.force,
    inputs: o.inputs,
  });
  return { model, data };
}

/** An initializer with its bytes in the model. */
function inlineTensor(t: OnnxInitializer): OnnxTensorProto {
  return { name: t.name, dims: t.dims, data_type: t.dataType, raw_data: t.bytes() };
}

/** An initializer whose `length` bytes lie at `offset` of the external data named `location`. */
function externalTensor(t: OnnxInitializer, location: string, offset: number, length = t.byteLength): OnnxTensorProto {
  return {
    name: t.name,
    dims: t.dims,
    data_type: t.dataType,
    data_location: 1,
    external_data: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(length) },
    ],
  };
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
        if (t.byteLength < EXTERNAL_MIN_BYTES) return inlineTensor(t);
        const aligned = Math.ceil(offset / EXTERNAL_ALIGN) * EXTERNAL_ALIGN;
        if (aligned > offset) dataFile.write(new Uint8Array(aligned - offset));
        const bytes = t.bytes();
        dataFile.write(bytes);
        offset = aligned + bytes.length;
        return externalTensor(t, dataName, aligned, bytes.length);
      });
    } else {
      initializer = g.initializers.map(inlineTensor);
    }
    const bytes = encodeOnnxModel(modelProto(g, o, initializer));
    modelFile = OutputFile.open(outputs.model);
    modelFile.write(bytes);
    // The data first: a model in place never points into a data file that is not.
    dataFile?.commit();
    modelFile.commit();
    return {
      out: outputs.model.target,
      ...(outputs.data ? { data: outputs.data.target } : {}),
      bytes: bytes.length,
      weightBytes,
    };
  } finally {
    dataFile?.abort();
    modelFile?.abort();
  }
}

/** A model for an onnxruntime session made in memory: the graph's protobuf, and where its weights lie. */
export interface SessionModel {
  bytes: Uint8Array;
  /** The folder that the file-backed initializers' locations are relative to (onnxruntime's `session.model_external_initializers_file_folder_path`). */
  folder?: string;
  /** Weights that lie in no file, handed to onnxruntime as in-memory external data (it copies them). */
  buffers: { path: string; data: Uint8Array }[];
}

/**
 * The lowered graph for an onnxruntime session without writing the weights anywhere: initializers that lie
 * in a file (lower.ts `inPlace`) point at it, the other large ones go as in-memory buffers. onnxruntime
 * refuses external data outside one folder (absolute paths, "..", symbolic links out of it), and takes
 * external data from files or from memory but not both: so only the folder holding most of the bytes is
 * read in place, and beside it the rest is inline (protobuf's 2 GiB limit applies to that rest).
 * `fusedMatMul`: products read transposed operands (weight matrices, attention's keys) in place (onnxruntime's
 * CPU provider only; lower the graph with `storedLayout`).
 */
export function sessionModel(g: LoweredGraph, info: OnnxModelInfo, o: { fusedMatMul?: boolean } = {}): SessionModel {
  const perFolder = new Map<string, number>();
  for (const t of g.initializers)
    if (t.file) perFolder.set(dirname(t.file.path), (perFolder.get(dirname(t.file.path)) ?? 0) + t.byteLength);
  const folder = [...perFolder].sort((p, q) => q[1] - p[1])[0]?.[0];
  const buffers: SessionModel['buffers'] = [];
  const initializer = g.initializers.map((t): OnnxTensorProto => {
    if (t.file && dirname(t.file.path) === folder) return externalTensor(t, basename(t.file.path), t.file.offset);
    // onnxruntime takes external data from files or from memory, not both: beside a folder the rest is inline.
    if (t.byteLength < EXTERNAL_MIN_BYTES || folder !== undefined) return inlineTensor(t);
    // A name no file in the folder has: onnxruntime looks in-memory data up by its location.
    const path = `modernbert-ane-in-memory-${buffers.length}.bin`;
    buffers.push({ path, data: t.bytes() });
    return externalTensor(t, path, 0);
  });
  const nodes = o.fusedMatMul
    ? readTransposed(
        g.nodes,
        g.initializers.map((t) => t.name),
      )
    : g.nodes;
  const proto = modelProto({ ...g, nodes }, info, initializer);
  if (o.fusedMatMul) proto.opset_import.push({ domain: 'com.microsoft', version: 1 });
  return { bytes: encodeOnnxModel(proto), ...(folder ? { folder } : {}), buffers };
}

// MatMul of a Transpose that ends by swapping the last two axes as onnxruntime's FusedMatMul with transA or
// transB (a contrib op of its CPU provider), which reads the operand in its own layout, and a Transpose of the
// rest before it when there is one. For a weight W (perm [1, 0]) its GEMM packs W^T from W, where the Transpose
// would be folded into a transposed copy first (synth-base predict: 3.4 s and 980 MB against 2.2 s and 857 MB),
// and a tied decoder reads the embedding table that the Gather reads. For attention's keys (batch-heads.ts)
// the rest moves whole rows of a head's channels, where the one transpose moved single values (onnxruntime:
// 4.3 ms against 1 ms a banded layer at 512 tokens).
export function readTransposed(nodes: readonly OnnxNodeProto[], weights: readonly string[]): OnnxNodeProto[] {
  // The weights, and what Casts and Reshapes make of them (their compute type, a float16 round trip, the
  // matrix of a 1x1 convolution's weight): onnxruntime folds those at load too.
  const matrices = new Set(weights);
  for (const n of nodes)
    if ((n.op_type === 'Cast' || n.op_type === 'Reshape') && matrices.has(n.input[0]!)) matrices.add(n.output[0]!);
  const readers = new Map<string, number>();
  for (const n of nodes) for (const i of n.input) readers.set(i, (readers.get(i) ?? 0) + 1);
  // Transposes whose permutation moves the last axis to the second last: `rest`, then a swap of the last two.
  // A weight's swap alone; an activation's as a product's right side, when the rest moves rows and only that
  // product reads it (onnxruntime's GEMM reads a transposed left side more slowly than a Transpose swaps it).
  const split = new Map<string, { input: string; rest: number[] }>();
  for (const n of nodes) {
    const perm = n.attribute?.find((a) => a.name === 'perm')?.ints?.map(Number);
    const r = perm?.length ?? 0;
    if (n.op_type !== 'Transpose' || !perm || r < 2 || perm[r - 2] !== r - 1) continue;
    const rest = [...perm.slice(0, r - 2), perm[r - 1]!, r - 1];
    const swapOnly = rest.every((q, i) => q === i);
    if (swapOnly ? matrices.has(n.input[0]!) : readers.get(n.output[0]!) === 1)
      split.set(n.output[0]!, { input: n.input[0]!, rest });
  }
  const out: OnnxNodeProto[] = [];
  const used = new Map<string, number>();
  for (const n of nodes) {
    const parts =
      n.op_type === 'MatMul'
        ? n.input.map((i, k) => {
            const p = split.get(i);
            return p && (k === 1 || matrices.has(p.input)) ? p : undefined;
          })
        : [];
    if (!parts.some(Boolean)) {
      out.push(n);
      continue;
    }
    const operand = (k: number): string => {
      const p = parts[k];
      if (!p) return n.input[k]!;
      used.set(n.input[k]!, (used.get(n.input[k]!) ?? 0) + 1);
      if (p.rest.every((q, i) => q === i)) return p.input;
      const rows = `${n.input[k]!}_rows`;
      out.push({
        name: rows,
        op_type: 'Transpose',
        input: [p.input],
        output: [rows],
        attribute: [{ name: 'perm', type: 7, ints: p.rest }],
      });
      return rows;
    };
    const [a, b] = [operand(0), operand(1)];
    out.push({
      ...n,
      op_type: 'FusedMatMul',
      domain: 'com.microsoft',
      input: [a, b],
      attribute: [
        { name: 'transA', type: 2, i: parts[0] ? 1 : 0 },
        { name: 'transB', type: 2, i: parts[1] ? 1 : 0 },
      ],
    });
  }
  // A Transpose that every reader now reads through is gone.
  return out.filter(
    (n) =>
      !(n.op_type === 'Transpose' && used.has(n.output[0]!) && used.get(n.output[0]!) === readers.get(n.output[0]!)),
  );
}
