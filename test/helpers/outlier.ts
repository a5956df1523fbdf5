// A copy of a fixture checkpoint with one row of a weight set to a large value: a planted outlier.

import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import type { Tensor } from '../../src/io/weights.js';
import { writeCheckpoint } from './fixtures.js';

/** Writes `src` with row `row` of `tensor` set to `value` into a new folder under `parent`; returns it. */
export async function withOutlier(
  src: string,
  tensor: string,
  row: number,
  value: number,
  parent: string,
): Promise<string> {
  const ckpt = loadCheckpoint(src);
  const tensors = new Map<string, Tensor>();
  for (const name of ckpt.weights.names()) {
    if (name === 'decoder.weight' && ckpt.weights.storedName?.(name) !== name) continue; // tied: not stored
    tensors.set(name, ckpt.weights.get(name));
  }
  ckpt.close();
  const t = tensors.get(tensor)!;
  const cols = t.shape[1]!;
  t.data.fill(value, row * cols, (row + 1) * cols);
  const dir = mkdtempSync(join(parent, 'outlier-'));
  await writeCheckpoint(dir, {
    config: JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')),
    tensors,
    tokenizerFrom: src,
  });
  copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
  return dir;
}
