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
import { isLiteral, type Dim, type DType, type Graph, type Literal, type TensorType } from '../ir/graph.js';
import { inferArgs, inputTypesOf, ONNX_TYPE, ONNX_TYPE_INT64 as INT64, opDef, type OnnxArgs, type OnnxAttr } from '../ops/index.js';
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
}

const ELEMENT_BYTES: Record<DType, number> = { fp32: 4, fp16: 2, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1, uint32: 4, int4: 0.5, uint1: 0.125, uint2: 0.25, uint3: 0.375, uint4: 0.5, uint6: 0.75 };

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
  const hf = o.io === 'hf';
  const dt = (d: DType): DType => (o.float32 && d === 'fp16' ? 'fp32' : d);
  const tt = (t: TensorType): TensorType => ({ dtype: dt(t.dtype), shape: t.shape });
  const nodes: OnnxNodeProto[] = [];
  const initializers: OnnxInitializer[] = [];
  const types = new Map<string, TensorType>();
  const onnxName = new Map<string, string>();
  const nameOf = (v: string) => onnxName.get(v) ?? v;
  const used = new Set<string>();
  const fresh = (base: string) => {
    let n = base;
    for (let k = 1; used.has(n); k++) n = `${base}_${k}`;
    used.add(n);
    return n;
  };
  const addInit = (name: string, dataType: number, dims: number[], byteLength: number, bytes: () => Uint8Array): string => {
    const n = fresh(name);
    initializers.push({ name: n, dataType, dims, byteLength, bytes });
    return n;
  };
  const emit = (base: string, opType: string, inputs: readonly string[], attrs: Record<string, OnnxAttr> = {}, outputs?: readonly string[]): string[] => {
    const outs = outputs ? [...outputs] : [fresh(`${base}__${opType.toLowerCase()}`)];
    const attribute_ = Object.entries(attrs).map(([k, v]) => attribute(k, v));
    nodes.push({ name: fresh(`${base}__${opType}`), op_type: opType, input: [...inputs], output: outs, ...(attribute_.length ? { attribute: attribute_ } : {}) });
    return outs;
  };

  const inputs: OnnxValueInfoProto[] = [];
  for (const inp of graph.inputs.map((v) => ({ name: v.name, type: tt(v.type) }))) {
    types.set(inp.name, inp.type);
    used.add(inp.name);
    if (hf && inp.type.dtype === 'int32') {
      inputs.push(valueInfo(inp.name, INT64, inp.type.shape));
      onnxName.set(inp.name, emit(inp.name, 'Cast', [inp.name], { to: { int: ONNX_TYPE.int32 } }, [fresh(`${inp.name}__int32`)])[0]!);
    } else inputs.push(valueInfo(inp.name, ONNX_TYPE[inp.type.dtype], inp.type.shape));
  }
  for (const c of graph.consts.values()) {
    const type = tt(c.type);
    types.set(c.name, type);
    const dims = type.shape.map(Number);
    const n = dims.reduce((p, q) => p * q, 1);
    onnxName.set(c.name, addInit(c.name, ONNX_TYPE[type.dtype], dims, n * ELEMENT_BYTES[type.dtype], () => encodeTensorBytes(type.dtype, c.load(), c.name)));
  }
  for (const op of graph.ops) for (const v of op.outputs) types.set(v.name, tt(v.type));
  // Outputs that change layout are computed under another name, then adapted.
  const adapted = new Set(hf ? graph.outputs.filter((n) => types.get(n)?.shape.length === 4) : []);
  for (const n of graph.outputs) {
    used.add(n);
    if (adapted.has(n)) onnxName.set(n, fresh(`${n}__ane`));
  }
  for (const op of graph.ops) for (const v of op.outputs) if (!onnxName.has(v.name)) used.add(v.name);

  for (const op of graph.ops) {
    const def = opDef(op.op);
    if (!def?.onnx) throw new ModernBertError('UNSUPPORTED', `op ${op.op} ("${op.name}") has no ONNX form`, { op: op.name });
    const typeOf = (v: string): TensorType => types.get(v) ?? internal(`value "${v}" of op "${op.name}" has no type`);
    const ia = inferArgs(op.op, `${op.op} "${op.name}"`, inputTypesOf(op.inputs, typeOf));
    const literalInit = (key: string, l: Literal): string => {
      if (l.dtype === 'string') return ia.fail(`input "${key}" is a string, not a tensor`);
      const dtype = dt(l.dtype);
      const data = (l.value as (number | boolean)[]).map(Number);
      const bytes = encodeTensorBytes(dtype, dtype === 'fp32' || dtype === 'fp16' ? Float32Array.from(data) : Int32Array.from(data), `${op.name}.${key}`);
      return addInit(`${op.name}__${key}`, ONNX_TYPE[dtype], l.shape, bytes.byteLength, () => bytes);
    };
    const args: OnnxArgs = {
      op,
      has: ia.has,
      input(key) {
        const v = op.inputs[key];
        if (typeof v === 'string') return nameOf(v);
        if (isLiteral(v)) return literalInit(key, v);
        const d = ia.literal(key);
        return d ? literalInit(key, d) : ia.fail(`missing input "${key}"`);
      },
      tuple(key) {
        const v = op.inputs[key];
        return Array.isArray(v) ? v.map(nameOf) : ia.fail(`input "${key}" must be a tuple`);
      },
      type: (key) => tt(ia.t(key)),
      outTypes: op.outputs.map((v) => tt(v.type)),
      ints: ia.ints,
      nums: (key) => {
        const l = ia.literal(key);
        return l && typeof l.value !== 'string' ? l.value.map(Number) : ia.fail(`input "${key}" must be a numeric constant`);
      },
      bools: ia.bools,
      str: ia.str,
      out: op.outputs.map((v) => nameOf(v.name)),
      node: (opType, ins, attrs, outs) => emit(op.name, opType, ins, attrs, outs),
      int64s: (values) => addInit(`${op.name}__i64`, INT64, [values.length], 8 * values.length, () => int64Bytes(values)),
      scalar: (value, dtype0) => {
        const dtype = dt(dtype0);
        const bytes = encodeTensorBytes(dtype, dtype === 'fp32' || dtype === 'fp16' ? Float32Array.of(value) : Int32Array.of(value), op.name);
        return addInit(`${op.name}__const`, ONNX_TYPE[dtype], [], bytes.byteLength, () => bytes);
      },
      fail: ia.fail,
    };
    def.onnx(args);
  }

  const outputs = graph.outputs.map((n) => {
    const t = types.get(n) ?? internal(`output "${n}" has no type`);
    if (!adapted.has(n)) return valueInfo(n, ONNX_TYPE[t.dtype], t.shape);
    return hfOutput(n, nameOf(n), t, o.vocabSize, (opType, ins, attrs, outs) => emit(n, opType, ins, attrs, outs), (v) => addInit(`${n}__i64`, INT64, [v.length], 8 * v.length, () => int64Bytes(v)));
  });
  const graphOutputs = new Set(graph.outputs);
  const weights = foldWeightLayouts(nodes, initializers, graphOutputs);
  const kept = simplifyNodes(weights.nodes, graphOutputs);
  // Initializers that no node reads any more (a folded weight's first form, a dropped node's shape).
  const read = new Set(kept.flatMap((n) => n.input));
  return { nodes: kept, initializers: weights.initializers.filter((t) => read.has(t.name)), inputs, outputs };
}

type Emit = (opType: string, inputs: readonly string[], attrs?: Record<string, OnnxAttr>, outputs?: readonly string[]) => string[];

// (1, X, K, S) -> (1, S, K * X): token s's row is [k * X + x] (a split decoder's logit v = k * Vc + x),
// cut to `width` columns when given.
function hfOutput(name: string, from: string, t: TensorType, width: number | undefined, emit: Emit, int64s: (v: number[]) => string): OnnxValueInfoProto {
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
