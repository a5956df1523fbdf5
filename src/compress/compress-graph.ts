// Replaces each compressed weight Const of a model graph by the constexpr op that decompresses it, in the
// form coremltools writes for the target:
//   palettes before iOS 18: constexpr_lut_to_dense(indices uint8 [M] packed LSB first, lut [2^n], shape uint32)
//   palettes from iOS 18:   constexpr_lut_to_dense(indices uint<n> [shape], lut [groups, 1.., 2^n, 1])
//   int8 before iOS 18:     constexpr_affine_dequantize(quantized_data int8, zero_point int8 [out], scale [out], axis 0)
//   int8 from iOS 18:       constexpr_blockwise_shift_scale(data int8, scale [out, 1..], offset int8 [out, 1..])
//   int4 (iOS 18):          constexpr_blockwise_shift_scale(data int4, scale [out, in / block, 1..])
// The op's output keeps the Const's name, so its readers are unchanged; the op goes just before the first.
// Parts of a tied table share storage keys, so the writer stores them once.

import type { Const, DType, Graph, Literal, Op, TensorData } from '../ir/graph.js';
import { atLeast } from '../ir/target.js';
import { packSubByte } from '../coreml/tensor-bytes.js';
import { sliceRows, type Compressed, type CompressedWeights } from './compressed-weights.js';
import { paletteBits, type CompressSpec } from './spec.js';

const ones = (n: number): number[] => Array<number>(n).fill(1);

/**
 * The constexpr op (and its input Consts) that stands for Const `c`. Each input part is stored under
 * `key#part`; `shared` names the parts stored under the whole tensor's key instead (a chunk's table).
 */
function constexprFor(
  c: Const,
  get: () => Compressed,
  spec: CompressSpec,
  key: string,
  shared?: { key: string; parts: string[] },
): { op: Op; consts: Const[] } {
  const kind: Compressed['kind'] = spec.mode.startsWith('pal') ? 'palette' : (spec.mode as 'int8' | 'int4');
  const bits = paletteBits(spec.mode) ?? 8;
  const shape = c.type.shape as number[];
  const rank = shape.length;
  const consts: Const[] = [];
  const input = (part: string, dtype: DType, partShape: number[], load: () => TensorData): string => {
    const name = `${c.name}_${part}`;
    consts.push({
      name,
      type: { dtype, shape: partShape },
      load,
      storageKey: shared?.parts.includes(part) ? `${shared.key}#${part}` : `${key}#${part}`,
    });
    return name;
  };
  const ios18 = atLeast(spec.target, 'iOS18');
  const out = { name: c.name, type: c.type };
  if (kind === 'palette') {
    const k = 2 ** bits;
    const pal = () => get() as Extract<Compressed, { kind: 'palette' }>;
    if (!ios18) {
      const bytes = Math.ceil((shape.reduce((a, b) => a * b, 1) * bits) / 8);
      const packed = (): TensorData =>
        bits === 8 ? pal().indices : packSubByte(`uint${bits}` as DType, pal().indices);
      const shapeLit: Literal = { kind: 'literal', dtype: 'uint32', shape: [rank], value: shape };
      const inputs = {
        indices: input('indices', 'uint8', [bytes], packed),
        lut: input('lut', c.type.dtype, [k], () => pal().luts),
        shape: shapeLit,
      };
      return { op: { op: 'constexpr_lut_to_dense', name: `${c.name}_palettized`, inputs, outputs: [out] }, consts };
    }
    const groups = shape[0]! / (spec.groupSize ?? shape[0]!);
    const inputs = {
      indices: input('indices', `uint${bits}` as DType, shape, () => pal().indices),
      lut: input('lut', c.type.dtype, [groups, ...ones(rank - 1), k, 1], () => pal().luts),
    };
    return { op: { op: 'constexpr_lut_to_dense', name: `${c.name}_palettized`, inputs, outputs: [out] }, consts };
  }
  const lin = () => get() as Extract<Compressed, { kind: 'int8' | 'int4' }>;
  if (kind === 'int8' && !ios18) {
    const inputs = {
      quantized_data: input('quantized_data', 'int8', shape, () => lin().q),
      zero_point: input(
        'zero_point',
        'int8',
        [shape[0]!],
        () => (get() as Extract<Compressed, { kind: 'int8' }>).zeroPoint,
      ),
      scale: input('scale', c.type.dtype, [shape[0]!], () => lin().scale),
      axis: { kind: 'literal', dtype: 'int32', shape: [], value: [0] } as Literal,
    };
    return { op: { op: 'constexpr_affine_dequantize', name: `${c.name}_quantized`, inputs, outputs: [out] }, consts };
  }
  const blocks =
    kind === 'int4' ? [shape[0]!, shape[1]! / spec.blockSize, ...ones(rank - 2)] : [shape[0]!, ...ones(rank - 1)];
  const inputs: Op['inputs'] = {
    // The integers as held (one byte each), not widened to int32: 4x the tensor for the embedding table.
    data: input('data', kind === 'int4' ? 'int4' : 'int8', shape, () => lin().q),
    scale: input('scale', c.type.dtype, blocks, () => lin().scale),
  };
  if (kind === 'int8')
    inputs.offset = input('offset', 'int8', blocks, () => (get() as Extract<Compressed, { kind: 'int8' }>).zeroPoint);
  return { op: { op: 'constexpr_blockwise_shift_scale', name: `${c.name}_quantized`, inputs, outputs: [out] }, consts };
}

/** A copy of `graph` whose checkpoint weights that `weights` compresses are stored compressed. */
export function compressGraph(graph: Graph, weights: CompressedWeights): Graph {
  const consts = new Map<string, Const>();
  const pending = new Map<string, Op>();
  for (const [name, c] of graph.consts) {
    const weight = c.weight ?? c.rowsOf?.weight;
    if (weight === undefined || !weights.isCompressed(weight)) {
      consts.set(name, c);
      continue;
    }
    const key = weights.storedName(weight);
    const slice = c.rowsOf;
    // A chunk of the split decoder: its rows of the table's compressed form, under a key of its own, and
    // one table for the whole tensor stored once (coremltools, compressing each chunk on its own, would
    // cluster each: the chunk would then no longer equal the embedding's rows, nor what the report ran).
    const made = slice
      ? constexprFor(
          c,
          () => sliceRows(weights.compressed(weight)!, slice.lo, slice.hi, c.type.shape[0] as number),
          weights.spec,
          `${key}@${slice.lo}`,
          weights.spec.groupSize === undefined ? { key, parts: ['lut'] } : undefined,
        )
      : constexprFor(c, () => weights.compressed(weight)!, weights.spec, key);
    for (const part of made.consts) consts.set(part.name, part);
    pending.set(name, made.op);
  }
  const ops: Op[] = [];
  for (const op of graph.ops) {
    for (const arg of Object.values(op.inputs)) {
      for (const ref of typeof arg === 'string' ? [arg] : Array.isArray(arg) ? arg : []) {
        const cx = pending.get(ref);
        if (cx) {
          ops.push(cx);
          pending.delete(ref);
        }
      }
    }
    ops.push(op);
  }
  return { ...graph, consts, ops };
}
