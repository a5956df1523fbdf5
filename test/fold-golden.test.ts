// End to end: real checkpoints, folded and rotated, run through the project's graph with RMS (or l2) norms,
// must reproduce the reference goldens of the unfolded model.

import { describe, expect, it } from 'vitest';
import { orthonormalizeRows } from './helpers/orthogonal.js';
import { join } from 'node:path';
import { Engine } from '../src/run/engine.js';
import { readGolden } from '../src/eval/golden.js';
import { verify } from '../src/eval/verify.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import {
  DenseRotation,
  foldWeights,
  HadamardRotation,
  IdentityRotation,
  type Rotation,
} from '../src/rotation/index.js';

const FX = join(import.meta.dirname, 'fixtures');

/** A random orthogonal matrix: Gram–Schmidt on rows from a fixed LCG. */
function randomOrthogonal(n: number): Float64Array {
  let state = 12345;
  const q = Float64Array.from({ length: n * n }, () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 32 - 0.5;
  });
  return orthonormalizeRows(q, n);
}

const rotations: [string, (n: number) => Rotation][] = [
  ['identity', (n) => new IdentityRotation(n)],
  ['Hadamard', (n) => new HadamardRotation(n, 0)],
  ['dense', (n) => new DenseRotation(n, randomOrthogonal(n))],
];

describe('folded and rotated checkpoints reproduce the goldens', () => {
  for (const name of ['tiny-mlm', 'tiny-mlm-bias', 'tiny-cls-mean', 'tiny-token']) {
    for (const [rotName, rotation] of rotations) {
      for (const norm of ['rms', 'l2'] as const) {
        it(`${name}, ${rotName}, ${norm} norm: logits within 1e-4`, async () => {
          const ckpt = loadCheckpoint(join(FX, name));
          const weights = foldWeights(ckpt.weights, ckpt.config, rotation(ckpt.config.hidden));
          const engine = new Engine({ ...ckpt, weights }, { norm });
          const report = await verify(engine, readGolden(join(FX, name, 'golden.safetensors')), 1e-4);
          ckpt.close();
          for (const c of report.cases) expect(c.logits, `${name}/${c.name} logits`).not.toBeNull();
          expect(report.max_abs_diff).toBeLessThan(1e-4);
        });
      }
    }
  }
});
