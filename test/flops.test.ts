// The matrix-product FLOP count (ane/cost.ts) that bench divides by the latency: checked by hand on a small
// graph of each op, and against the closed form for a whole ModernBERT graph.

import { describe, expect, it } from 'vitest';
import { matrixFlops } from '../src/ane/cost.js';
import { literal, type Graph } from '../src/ir/graph.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { buildModel } from '../src/model/model.js';
import { join } from 'node:path';
import { ROOT } from './helpers/fixtures.js';

const t = (dtype: 'fp16' | 'int32', ...shape: (number | string)[]) => ({ dtype, shape });
const konst = (name: string, ...shape: number[]) =>
  [name, { name, type: t('fp16', ...shape), load: () => new Float32Array(0) }] as const;

describe('matrixFlops', () => {
  it('counts 2 x outputs x reduction for conv, linear, matmul and einsum, and nothing for the rest', () => {
    const g: Graph = {
      inputs: [{ name: 'x', type: t('fp16', 1, 8, 1, 'S') }],
      consts: new Map([konst('w', 16, 4, 1, 1), konst('lw', 3, 16)]),
      ops: [
        // Grouped 1x1 conv: 16 outputs per position, each over 4 inputs.
        {
          op: 'conv',
          name: 'c',
          inputs: { x: 'x', weight: 'w', groups: literal('int32', 2) },
          outputs: [{ name: 'y', type: t('fp16', 1, 16, 1, 'S') }],
        },
        { op: 'relu', name: 'r', inputs: { x: 'y' }, outputs: [{ name: 'yr', type: t('fp16', 1, 16, 1, 'S') }] },
        {
          op: 'reshape',
          name: 'rs',
          inputs: { x: 'yr', shape: literal('int32', [-1, 16]) },
          outputs: [{ name: 'y2', type: t('fp16', 'S', 16) }],
        },
        {
          op: 'linear',
          name: 'l',
          inputs: { x: 'y2', weight: 'lw' },
          outputs: [{ name: 'z', type: t('fp16', 'S', 3) }],
        },
        {
          op: 'matmul',
          name: 'm',
          inputs: { x: 'z', y: 'z', transpose_x: literal('bool', true) },
          outputs: [{ name: 'zz', type: t('fp16', 3, 3) }],
        },
        { op: 'matmul', name: 'm2', inputs: { x: 'z', y: 'zz' }, outputs: [{ name: 'z3', type: t('fp16', 'S', 3) }] },
        {
          op: 'einsum',
          name: 'e',
          inputs: { values: ['y', 'y'], equation: literal('string', 'bchq,bchk->bkhq') },
          outputs: [{ name: 's', type: t('fp16', 1, 'S', 1, 'S') }],
        },
      ],
      outputs: ['s'],
      taps: new Map(),
    };
    const S = 10;
    const expected = 2 * 16 * S * 4 + 2 * S * 3 * 16 + 2 * 9 * S + 2 * S * 3 * 3 + 2 * S * S * 16;
    expect(matrixFlops(g, { S })).toBe(expected);
    expect(() => matrixFlops(g)).toThrow(/symbolic dimension S/);
  });

  it('a whole ModernBERT graph: the closed form L x (2S(4C^2 + 3CI) + 4S^2 C) with all-pairs attention', () => {
    const ckpt = loadCheckpoint(join(ROOT, 'models', 'mini-trained'));
    try {
      const { hidden: C, intermediate: I, numLayers: L } = ckpt.config;
      for (const S of [16, 64]) {
        const g = buildModel(ckpt, { seqLen: S, dtype: 'fp16', maskFrom: 'input', head: 'none' });
        expect(matrixFlops(g)).toBe(L * (2 * S * (4 * C * C + 3 * C * I) + 4 * S * S * C));
      }
    } finally {
      ckpt.close();
    }
  });
});
