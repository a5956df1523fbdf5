// The op families the placement rules and findings name: Core ML op types grouped by how the Neural Engine
// treats them (ANE-RULES.md), and the literal arguments the checks read.

import type { Op } from '../ir/graph.js';
import { isLiteral } from '../ir/graph.js';

/** Ops the Neural Engine never runs. */
export const BLOCKLIST = new Set([
  'lstm',
  'rnn',
  'gru',
  'non_maximum_suppression',
  'custom_layer',
  'cond',
  'while_loop',
]);
const POOLS = new Set(['avg_pool', 'max_pool', 'l2_pool']);
const UPSAMPLE = new Set([
  'upsample_nearest_neighbor',
  'upsample_bilinear',
  'resize_nearest_neighbor',
  'resize_bilinear',
]);
export const GATHERS = new Set(['gather', 'gather_nd', 'gather_along_axis', 'tile', 'topk', 'band_part']);
/** Element types the Neural Engine computes in (float16, and int8/int16/uint8 data). */
export const ANE_DTYPES = new Set(['fp16', 'int8', 'int16', 'uint8']);
/** The model's own math: an op of these is never input preparation. */
export const MODEL_OPS = new Set([
  'conv',
  'linear',
  'matmul',
  'einsum',
  'softmax',
  'layer_norm',
  'l2_norm',
  'reduce_l2_norm',
  'batch_norm',
  'instance_norm',
  'gelu',
  'silu',
  'relu',
  'sigmoid',
  'tanh',
  'erf',
  'scaled_dot_product_attention',
]);
export const ELEMENTWISE_BINARY = new Set([
  'add',
  'sub',
  'mul',
  'real_div',
  'maximum',
  'minimum',
  'pow',
  'greater',
  'greater_equal',
  'less',
  'less_equal',
  'equal',
  'not_equal',
  'select',
]);
/** Apple's two attention einsums (ml-ane-transformers: bchq,bkhc->bkhq and bkhq,bchk->bchq), either operand order, letters renamed in order of appearance. */
export const ANE_EINSUMS = new Set(
  ['bchq,bkhc->bkhq', 'bkhc,bchq->bkhq', 'bkhq,bchk->bchq', 'bchk,bkhq->bchq'].map(canonicalEinsum),
);

/** An einsum equation with its index letters renamed a, b, c, ... in order of first appearance (the same computation reads the same). */
export function canonicalEinsum(eq: string): string {
  const names = new Map<string, string>();
  return eq
    .replace(/\s/g, '')
    .replace(/[A-Za-z]/g, (ch) => names.get(ch) ?? names.set(ch, String.fromCharCode(97 + names.size)).get(ch)!);
}

/** The numbers of a literal list argument ([] for anything else). */
export const literalNumbers = (arg: unknown): number[] =>
  isLiteral(arg as never) && Array.isArray((arg as { value: unknown }).value)
    ? ((arg as { value: unknown[] }).value as number[])
    : [];

/** A pool whose kernel or stride the Neural Engine does not take. */
export function tooBigPool(op: Op): boolean {
  return (
    POOLS.has(op.op) &&
    (literalNumbers(op.inputs.kernel_sizes).some((k) => k > 13) || literalNumbers(op.inputs.strides).some((s) => s > 2))
  );
}

/** An upsample by more than 2 (off the Neural Engine). */
export function bigUpsample(op: Op): boolean {
  return (
    UPSAMPLE.has(op.op) &&
    ['scale_factor_height', 'scale_factor_width'].some((k) => literalNumbers(op.inputs[k]).some((s) => s > 2))
  );
}
