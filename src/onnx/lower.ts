// The lowering pass: a Graph (ir/graph.ts) as ONNX nodes, op by op through each op's `onnx` lowering in the
// registry (ops/defs/*.ts). Constants become initializers (loaded lazily, so the writer can stream them),
// literals small initializers, symbolic dimensions (the length 'S') ONNX dim_params.
//
// Versions: opset 17, the first with LayerNormalization (one fused node, as onnxruntime runs it), written
// with IR version 8 (the IR that ONNX 1.12 introduced with opset 17). onnxruntime 1.30 reads IR 3..11 and
// opsets up to 23; transformers.js runs onnxruntime-web and -node 1.2x, which read both, and Hugging Face's
// own ModernBERT exports (optimum) use opset 17 too.

import { encodeTensorBytes } from '../coreml/tensor-bytes.js';
import { ModernBertError } from '../errors.js';
import { closeSync, openSync, readSync } from 'node:fs';
import {
  isLiteral,
  type Dim,
  type DType,
  type Graph,
  type Literal,
  type Op,
  type StoredTensor,
  type TensorData,
  type TensorType,
} from '../ir/graph.js';
import { roundToF16InPlace } from '../runtime/kernels/index.js';
import { F16_EXACT } from '../runtime/tensor.js';
import { MOVES_VALUES, roundTrip, type OnnxPrecision } from './emulate-fp16.js';
import {
  inferArgs,
  inputTypesOf,
  ONNX_TYPE,
  ONNX_TYPE_INT64 as INT64,
  opDef,
  type OnnxArgs,
  type OnnxAttr,
} from '../ops/index.js';
import { batchHeads } from './batch-heads.js';
import { foldWeightLayouts } from './fold-weights.js';
import { simplifyNodes } from './simplify.js';
import type { OnnxAttributeProto, OnnxInitializer, OnnxNodeProto, OnnxValueInfoProto } from './schema.js';

export const ONNX_OPSET = 17;
export const ONNX_IR_VERSION = 8;

export interface LoweredGraph {
  nodes: OnnxNodeProto[];
  initializers: OnnxInitializer[];
  inputs: OnnxValueInfoProto[];
  outputs: OnnxValueInfoProto[];
}

export interface LowerOptions {
  /**
   * 'hf': Hugging Face's interface (what transformers.js feeds and reads): int32 inputs are int64, and
   * per-token outputs (1, X, K, S) become (1, S, X*K). 'ane': inputs and outputs as the graph has them.
   */
  io?: 'hf' | 'ane';
  /** With 'hf', per-token outputs are cut to this width (a split decoder's padding rows). */
  vocabSize?: number;
  /**
   * Compute in float32 even where the graph says fp16 (a package's float16 weights, run at float32 as our
   * interpreter runs them: the stored values, float32 arithmetic).
   */
  float32?: boolean;
  /**
   * Constants whose values lie as they are in a file (Const.stored: a checkpoint's float32, float16 or
   * bfloat16 tensors) become initializers that point there, cast to the compute type in the graph, instead
   * of bytes of their own: onnxruntime then reads the checkpoint itself (ort-executor.ts).
   */
  inPlace?: boolean;
  /**
   * Keep every weight in its stored layout, where a product reads it transposed (a Transpose node before
   * the MatMul), for a runtime that reads it so in place (write.ts sessionModel's `fusedMatMul`); otherwise
   * the initializer is stored transposed (fold-weights.ts).
   */
  storedLayout?: boolean;
  /**
   * Products of 1x1 convolutions as W @ x on x's own (Cin, S) layout, with no Transpose around them (ops/defs/
   * linear.ts convOnnx), for a session that onnxruntime does not optimise: its transpose optimiser cancels
   * those transposes otherwise.
   */
  channelsFirst?: boolean;
  /**
   * The arithmetic (emulate-fp16.ts): 'fp32' (the default), or a float16 emulation computed in float32 with a
   * float16 round trip after each op, as our interpreter computes it (implies `float32`).
   */
  precision?: OnnxPrecision;
}

/** ONNX FLOAT, FLOAT16 and BFLOAT16, the stored types that an initializer can point at. */
const STORED_TYPE: Record<StoredTensor['dtype'], { onnx: number; bytes: number }> = {
  fp32: { onnx: 1, bytes: 4 },
  fp16: { onnx: 10, bytes: 2 },
  bf16: { onnx: 16, bytes: 2 },
};

const ELEMENT_BYTES: Record<DType, number> = {
  fp32: 4,
  fp16: 2,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
  uint32: 4,
  int4: 0.5,
  uint1: 0.125,
  uint2: 0.25,
  uint3: 0.375,
  uint4: 0.5,
  uint6: 0.75,
};

function attribute(name: string, a: OnnxAttr): OnnxAttributeProto {
  if ('int' in a) return { name, type: 2, i: a.int };
  if ('ints' in a) return { name, type: 7, ints: a.ints };
  if ('float' in a) return { name, type: 1, f: a.float };
  if ('floats' in a) return { name, type: 6, floats: a.floats };
  return { name, type: 3, s: new TextEncoder().encode(a.str) };
}

/** A value's ONNX type: elem_type and dims (symbols as dim_params). */
export function valueInfo(name: string, elemType: number, shape: readonly Dim[]): OnnxValueInfoProto {
  const dim = shape.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d }));
  return { name, type: { tensor_type: { elem_type: elemType, shape: { dim } } } };
}

function int64Bytes(values: number[]): Uint8Array {
  const a = BigInt64Array.from(values.map((v) => BigInt(v)));
  return new Uint8Array(a.buffer);
}

/** Lowers a graph to ONNX nodes and initializers. */
export function lowerGraph(perHead: Graph, o: LowerOptions = {}): LoweredGraph {
  // The Neural Engine's per-head attention, written once for all heads (onnxruntime pays per node).
  const graph = batchHeads(perHead);
  const precision = o.precision ?? 'fp32';
  const half = precision !== 'fp32';
  const dt = (d: DType): DType => ((o.float32 || half) && d === 'fp16' ? 'fp32' : d);
  const x: Lowering = {
    o,
    precision,
    half,
    hf: o.io === 'hf',
    dt,
    tt: (t) => ({ dtype: dt(t.dtype), shape: t.shape }),
    b: new OnnxNodes(),
  };
  const inputs = lowerInputs(graph, x);
  lowerConsts(graph, x);
  const { b } = x;
  for (const op of graph.ops) for (const v of op.outputs) b.types.set(v.name, x.tt(v.type));
  // Outputs that change layout are computed under another name, then adapted.
  const adapted = new Set(x.hf ? graph.outputs.filter((n) => b.types.get(n)?.shape.length === 4) : []);
  for (const n of graph.outputs) {
    b.used.add(n);
    if (adapted.has(n)) b.onnxName.set(n, b.fresh(`${n}__ane`));
  }
  for (const op of graph.ops) for (const v of op.outputs) if (!b.onnxName.has(v.name)) b.used.add(v.name);
  for (const op of graph.ops) lowerOp(op, x);

  const outputs = graph.outputs.map((n) => {
    const t = b.types.get(n) ?? internal(`output "${n}" has no type`);
    if (!adapted.has(n)) return valueInfo(n, ONNX_TYPE[t.dtype], t.shape);
    return hfOutput(
      n,
      b.nameOf(n),
      t,
      o.vocabSize,
      (opType, ins, attrs, outs) => b.emit(n, opType, ins, attrs, outs),
      (v) => b.int64s(`${n}__i64`, v),
    );
  });
  const graphOutputs = new Set(graph.outputs);
  const weights = sameFileOnce(
    foldWeightLayouts(b.nodes, b.initializers, graphOutputs, { transpose: !o.storedLayout }),
  );
  const kept = simplifyNodes(weights.nodes, graphOutputs);
  // Initializers that no node reads any more (a folded weight's first form, a dropped node's shape).
  const read = new Set(kept.flatMap((n) => n.input));
  return { nodes: kept, initializers: weights.initializers.filter((t) => read.has(t.name)), inputs, outputs };
}

/** The ONNX graph as it is written: nodes, initializers, and the names given so far (each name once). */
class OnnxNodes {
  readonly nodes: OnnxNodeProto[] = [];
  readonly initializers: OnnxInitializer[] = [];
  readonly types = new Map<string, TensorType>();
  /** Our value names that ONNX knows by another name (a cast input, a rounded value). */
  readonly onnxName = new Map<string, string>();
  readonly used = new Set<string>();

  /** The ONNX name of one of our values. */
  nameOf(v: string): string {
    return this.onnxName.get(v) ?? v;
  }

  /** `base`, or `base_k` for the first k that is still free; taken from then on. */
  fresh(base: string): string {
    let n = base;
    for (let k = 1; this.used.has(n); k++) n = `${base}_${k}`;
    this.used.add(n);
    return n;
  }

  /** An initializer under a fresh name; its bytes are made when written (or it points into `file`). */
  init(
    name: string,
    dataType: number,
    dims: number[],
    byteLength: number,
    bytes: () => Uint8Array,
    file?: OnnxInitializer['file'],
  ): string {
    const n = this.fresh(name);
    this.initializers.push({ name: n, dataType, dims, byteLength, bytes, ...(file ? { file } : {}) });
    return n;
  }

  /** An int64 vector initializer (shapes, axes). */
  int64s(name: string, values: number[]): string {
    return this.init(name, INT64, [values.length], 8 * values.length, () => int64Bytes(values));
  }

  /** A node named after `base`; its outputs (fresh names unless given). */
  emit(
    base: string,
    opType: string,
    inputs: readonly string[],
    attrs: Record<string, OnnxAttr> = {},
    outputs?: readonly string[],
  ): string[] {
    const outs = outputs ? [...outputs] : [this.fresh(`${base}__${opType.toLowerCase()}`)];
    const attribute_ = Object.entries(attrs).map(([k, v]) => attribute(k, v));
    this.nodes.push({
      name: this.fresh(`${base}__${opType}`),
      op_type: opType,
      input: [...inputs],
      output: outs,
      ...(attribute_.length ? { attribute: attribute_ } : {}),
    });
    return outs;
  }
}

/** What every part of the lowering reads: the options, the arithmetic, and the graph being written. */
interface Lowering {
  o: LowerOptions;
  precision: OnnxPrecision;
  /** A float16 emulation: float16 values computed in float32, rounded after each op. */
  half: boolean;
  hf: boolean;
  /** The element type a value is computed in. */
  dt: (d: DType) => DType;
  tt: (t: TensorType) => TensorType;
  b: OnnxNodes;
}

/** The graph's inputs (int64 on Hugging Face's interface, cast to int32; float inputs rounded in emulation). */
function lowerInputs(graph: Graph, { b, hf, half, tt }: Lowering): OnnxValueInfoProto[] {
  const inputs: OnnxValueInfoProto[] = [];
  for (const inp of graph.inputs.map((v) => ({ name: v.name, type: tt(v.type) }))) {
    b.types.set(inp.name, inp.type);
    b.used.add(inp.name);
    if (hf && inp.type.dtype === 'int32') {
      inputs.push(valueInfo(inp.name, INT64, inp.type.shape));
      b.onnxName.set(
        inp.name,
        b.emit(inp.name, 'Cast', [inp.name], { to: { int: ONNX_TYPE.int32 } }, [b.fresh(`${inp.name}__int32`)])[0]!,
      );
    } else inputs.push(valueInfo(inp.name, ONNX_TYPE[inp.type.dtype], inp.type.shape));
    if (half && inp.type.dtype === 'fp32')
      b.onnxName.set(
        inp.name,
        roundTrip((t, i, a, out) => b.emit(inp.name, t, i, a, out), inp.name),
      );
  }
  return inputs;
}

/** The graph's constants as initializers: pointing into their file where they lie there, else bytes of their own. */
function lowerConsts(graph: Graph, { b, o, half, tt }: Lowering): void {
  for (const c of graph.consts.values()) {
    const type = tt(c.type);
    b.types.set(c.name, type);
    const dims = type.shape.map(Number);
    const n = dims.reduce((p, q) => p * q, 1);
    const stored =
      o.inPlace && c.stored && c.stored.byteLength === n * STORED_TYPE[c.stored.dtype].bytes ? c.stored : undefined;
    if (stored) {
      // Cast to the compute type (and, in float16 emulation, rounded) in the graph: onnxruntime folds it at load.
      const kind = STORED_TYPE[stored.dtype];
      const same = kind.onnx === ONNX_TYPE[type.dtype];
      const init = b.init(
        same ? c.name : `${c.name}__stored`,
        kind.onnx,
        dims,
        stored.byteLength,
        () => readStored(stored),
        { path: stored.path, offset: stored.offset },
      );
      const cast = (v: string, to: number, out?: string) =>
        b.emit(c.name, 'Cast', [v], { to: { int: to } }, out === undefined ? undefined : [out])[0]!;
      const value =
        half && stored.dtype !== 'fp16' ? cast(same ? init : cast(init, ONNX_TYPE.fp32), ONNX_TYPE.fp16) : init;
      b.onnxName.set(c.name, value === init && same ? init : cast(value, ONNX_TYPE[type.dtype], b.fresh(c.name)));
      continue;
    }
    const load = half && c.type.dtype === 'fp32' ? () => roundedCopy(c.load()) : () => c.load();
    b.onnxName.set(
      c.name,
      b.init(c.name, ONNX_TYPE[type.dtype], dims, n * ELEMENT_BYTES[type.dtype], () =>
        encodeTensorBytes(type.dtype, load(), c.name),
      ),
    );
  }
}

/** One op, through its definition's ONNX lowering; in emulation its new float values rounded to float16. */
function lowerOp(op: Op, { b, o, half, precision, dt, tt }: Lowering): void {
  const def = opDef(op.op);
  if (!def?.onnx)
    throw new ModernBertError('UNSUPPORTED', `op ${op.op} ("${op.name}") has no ONNX form`, { op: op.name });
  const typeOf = (v: string): TensorType => b.types.get(v) ?? internal(`value "${v}" of op "${op.name}" has no type`);
  const ia = inferArgs(op.op, `${op.op} "${op.name}"`, inputTypesOf(op.inputs, typeOf));
  const node: OnnxArgs['node'] = (opType, ins, attrs, outs) => b.emit(op.name, opType, ins, attrs, outs);
  // Float outputs of ops that compute new values are computed exact, then rounded into their names.
  const rounded = op.outputs.map((v) => half && !MOVES_VALUES.has(op.op) && b.types.get(v.name)?.dtype === 'fp32');
  const literalInit = (key: string, l: Literal): string => {
    if (l.dtype === 'string') return ia.fail(`input "${key}" is a string, not a tensor`);
    const dtype = dt(l.dtype);
    const data = (l.value as (number | boolean)[]).map(Number);
    const bytes = encodeTensorBytes(
      dtype,
      dtype === 'fp32' || dtype === 'fp16' ? Float32Array.from(data) : Int32Array.from(data),
      `${op.name}.${key}`,
    );
    return b.init(`${op.name}__${key}`, ONNX_TYPE[dtype], l.shape, bytes.byteLength, () => bytes);
  };
  const args: OnnxArgs = {
    op,
    has: ia.has,
    input(key) {
      const v = op.inputs[key];
      if (typeof v === 'string') return b.nameOf(v);
      if (isLiteral(v)) return literalInit(key, v);
      const d = ia.literal(key);
      return d ? literalInit(key, d) : ia.fail(`missing input "${key}"`);
    },
    tuple(key) {
      const v = op.inputs[key];
      return Array.isArray(v) ? v.map((n) => b.nameOf(n)) : ia.fail(`input "${key}" must be a tuple`);
    },
    type: (key) => tt(ia.t(key)),
    outTypes: op.outputs.map((v) => tt(v.type)),
    ints: ia.ints,
    nums: (key) => {
      const l = ia.literal(key);
      return l && typeof l.value !== 'string'
        ? l.value.map(Number)
        : ia.fail(`input "${key}" must be a numeric constant`);
    },
    bools: ia.bools,
    str: ia.str,
    out: op.outputs.map((v, k) => (rounded[k] ? b.fresh(`${b.nameOf(v.name)}__exact`) : b.nameOf(v.name))),
    node,
    ...(precision === 'fp16' ? { round: (v: string) => roundTrip(node, v) } : {}),
    ...(o.channelsFirst ? { channelsFirst: true } : {}),
    int64s: (values) => b.int64s(`${op.name}__i64`, values),
    scalar: (value, dtype0) => {
      const dtype = dt(dtype0);
      const bytes = encodeTensorBytes(
        dtype,
        dtype === 'fp32' || dtype === 'fp16' ? Float32Array.of(value) : Int32Array.of(value),
        op.name,
      );
      return b.init(`${op.name}__const`, ONNX_TYPE[dtype], [], bytes.byteLength, () => bytes);
    },
    fail: ia.fail,
  };
  def.onnx(args);
  op.outputs.forEach((v, k) => rounded[k] && roundTrip(node, args.out[k]!, b.nameOf(v.name)));
}

function sameFileOnce(g: { nodes: OnnxNodeProto[]; initializers: OnnxInitializer[] }): {
  nodes: OnnxNodeProto[];
  initializers: OnnxInitializer[];
} {
  const first = new Map<string, string>();
  const renamed = new Map<string, string>();
  for (const t of g.initializers) {
    if (!t.file) continue;
    const key = JSON.stringify([t.file.path, t.file.offset, t.dataType, t.dims]);
    const seen = first.get(key);
    if (seen === undefined) first.set(key, t.name);
    else renamed.set(t.name, seen);
  }
  if (renamed.size === 0) return g;
  return {
    nodes: g.nodes.map((n) =>
      n.input.some((i) => renamed.has(i)) ? { ...n, input: n.input.map((i) => renamed.get(i) ?? i) } : n,
    ),
    initializers: g.initializers.filter((t) => !renamed.has(t.name)),
  };
}

/** Float data rounded to float16 (a copy, unless it is rounded already). */
function roundedCopy(d: TensorData): TensorData {
  return d instanceof Float32Array && !F16_EXACT.has(d) ? roundToF16InPlace(Float32Array.from(d)) : d;
}

/** The bytes of a stored tensor, read from its file (for writers that copy them). */
function readStored(s: StoredTensor): Uint8Array {
  const out = new Uint8Array(s.byteLength);
  const fd = openSync(s.path, 'r');
  try {
    for (let done = 0; done < s.byteLength;) {
      const n = readSync(fd, out, done, s.byteLength - done, s.offset + done);
      if (n === 0) throw new ModernBertError('CORRUPT_FILE', `${s.path} ends inside a tensor`, { file: s.path });
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

type Emit = (
  opType: string,
  inputs: readonly string[],
  attrs?: Record<string, OnnxAttr>,
  outputs?: readonly string[],
) => string[];

// (1, X, K, S) -> (1, S, K * X): token s's row is [k * X + x] (a split decoder's logit v = k * Vc + x),
// cut to `width` columns when given.
function hfOutput(
  name: string,
  from: string,
  t: TensorType,
  width: number | undefined,
  emit: Emit,
  int64s: (v: number[]) => string,
): OnnxValueInfoProto {
  const [, X, K, S] = t.shape as [Dim, Dim, Dim, Dim];
  const moved = emit('Transpose', [from], { perm: { ints: [0, 3, 2, 1] } }); // (1, S, K, X)
  if (typeof X !== 'number' || typeof K !== 'number') return internal(`output "${name}" has symbolic channels`);
  const cut = width !== undefined && width < X * K;
  const flat = emit('Reshape', [moved[0]!, int64s([1, -1, X * K])], {}, cut ? undefined : [name]);
  if (cut) emit('Slice', [flat[0]!, int64s([0]), int64s([width]), int64s([2])], {}, [name]);
  return valueInfo(name, ONNX_TYPE[t.dtype], [1, S, cut ? width : X * K]);
}

function internal(message: string): never {
  throw new ModernBertError('INTERNAL', message);
}
