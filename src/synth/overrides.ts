// Overrides of synthetic weights, `NAME[i,j,...]=VALUE`: an index shorter than the tensor's rank sets
// the whole sub-tensor (`W[100]=2000` on a matrix sets row 100), which is how synth-base-massive plants
// its massive activation.

import { ModernBertError } from '../errors.js';

export interface Override {
  name: string;
  index: number[];
  value: number;
}

const SPEC = /^\s*([^\s[\]=]+)\s*(?:\[([^\]]*)\])?\s*=\s*(\S+)\s*$/;

/** Parses `NAME[i,...]=VALUE` (or `NAME=VALUE` for the whole tensor). */
export function parseOverride(spec: string): Override {
  const bad = (why: string): never => {
    throw new ModernBertError('BAD_ARGUMENT', `override "${spec}": ${why} (expected NAME[i,...]=VALUE)`, {
      override: spec,
    });
  };
  const m = SPEC.exec(spec) ?? bad('cannot parse it');
  const index =
    (m[2] ?? '').trim() === ''
      ? []
      : m[2]!.split(',').map((s) => {
          const t = s.trim();
          if (!/^\d+$/.test(t)) bad(`index "${t}" is not a non-negative integer`);
          return Number(t);
        });
  const value = Number(m[3]);
  if (Number.isNaN(value)) bad(`value "${m[3]}" is not a number`);
  return { name: m[1]!, index, value };
}

/** Throws BAD_ARGUMENT unless `o` addresses a sub-tensor of a tensor with this shape. */
export function checkOverride(o: Override, shape: readonly number[]): void {
  const where = `${o.name}[${o.index.join(',')}]`;
  if (o.index.length > shape.length) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `override ${where}: ${o.index.length} indices for a tensor of rank ${shape.length}`,
      { tensor: o.name, index: o.index, shape },
    );
  }
  o.index.forEach((i, d) => {
    if (!Number.isInteger(i) || i < 0 || i >= shape[d]!) {
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `override ${where}: index ${i} is outside dimension ${d} of size ${shape[d]}`,
        { tensor: o.name, index: o.index, shape },
      );
    }
  });
}

/** Sets the sub-tensor `o.index` of `data` (row-major, shape `shape`) to `o.value`. */
export function applyOverride(data: Float32Array, shape: readonly number[], o: Override): void {
  let start = 0;
  let count = data.length;
  o.index.forEach((i, d) => {
    count /= shape[d]!;
    start += i * count;
  });
  data.fill(o.value, start, start + count);
}
