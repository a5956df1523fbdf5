// The constant tensors of a program as stored: each weight once (a compressed one as the constexpr op that
// decompresses it), its shape, its stored bytes against float16, and how it is compressed.

import type { Graph, Op } from '../ir/graph.js';
import { storedBytes } from '../coreml/tensor-bytes.js';
import { isConstexpr } from '../ops/index.js';
import { valueInputs } from '../ane/cost.js';

export interface TensorRow {
  name: string;
  shape: number[];
  /** The element type the program computes with (float16 for a decompressed weight). */
  dtype: string;
  /** Bytes in the weight file (a compressed tensor: its indices or integers, tables and scales). */
  storedBytes: number;
  /** Bytes the same tensor takes in float16. */
  fp16Bytes: number;
  /** 'none', or the compressed form: 'palette of 16', 'int8 affine', 'int4 blockwise', ... */
  compression: string;
}

const numel = (s: readonly (number | string)[]) => (s as number[]).reduce((a, b) => a * b, 1);

/** Every constant tensor of `g`, largest stored first; tied tensors (one storage key) once. */
export function tensorRows(g: Graph): TensorRow[] {
  const constexpr = g.ops.filter((op) => isConstexpr(op.op));
  const feedsConstexpr = new Set(constexpr.flatMap((op) => valueInputs(op).map((v) => v.name)));
  const rows: TensorRow[] = [];
  const seen = new Set<string>();
  for (const op of constexpr) {
    const srcs = valueInputs(op)
      .map((v) => g.consts.get(v.name))
      .filter((c) => c !== undefined);
    const key = srcs.map((c) => c.storageKey ?? c.name).join('|');
    if (seen.has(key)) continue;
    seen.add(key);
    const out = op.outputs[0]!.type;
    rows.push({
      name: op.name,
      shape: out.shape as number[],
      dtype: out.dtype,
      storedBytes: srcs.reduce((s, c) => s + storedBytes(c.type.dtype, numel(c.type.shape)), 0),
      fp16Bytes: 2 * numel(out.shape),
      compression: compressionOf(op, g),
    });
  }
  for (const [name, c] of g.consts) {
    if (feedsConstexpr.has(name) || seen.has(c.storageKey ?? name)) continue;
    seen.add(c.storageKey ?? name);
    rows.push({
      name,
      shape: c.type.shape as number[],
      dtype: c.type.dtype,
      storedBytes: storedBytes(c.type.dtype, numel(c.type.shape)),
      fp16Bytes: 2 * numel(c.type.shape),
      compression: 'none',
    });
  }
  return rows.sort((a, b) => b.storedBytes - a.storedBytes || a.name.localeCompare(b.name));
}

/** The compressed form a constexpr op decodes. */
function compressionOf(op: Op, g: Graph): string {
  const type = (key: string) =>
    typeof op.inputs[key] === 'string' ? g.consts.get(op.inputs[key] as string)?.type : undefined;
  if (op.op === 'constexpr_lut_to_dense') {
    const lut = type('lut');
    // iOS 16: a 1-D table; iOS 18: (..., entries, vector size).
    const entries = lut ? (lut.shape.length === 1 ? lut.shape[0] : lut.shape.at(-2)) : undefined;
    return `palette of ${entries ?? '?'}`;
  }
  if (op.op === 'constexpr_affine_dequantize') return `${type('quantized_data')?.dtype ?? 'int8'} affine`;
  if (op.op === 'constexpr_blockwise_shift_scale') return `${type('data')?.dtype ?? '?'} blockwise`;
  return op.op;
}
