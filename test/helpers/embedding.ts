// Sentence-transformers folders built from tiny-mlm's body, and the embedding they must give.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSentenceTransformersModules } from '../../scripts/variants-checkpoints.mjs';
import { FX, readFixtureJson, readTensors, tempDir, writeCheckpoint } from './fixtures.js';

const TINY_MLM = join(FX, 'tiny-mlm');

/** tiny-mlm's body as a ModernBertModel checkpoint, its tensors without the "model." prefix. */
export async function bareBody(extra: (dir: string) => void = () => {}): Promise<string> {
  const tensors = new Map(
    [...readTensors(join(TINY_MLM, 'model.safetensors'))].flatMap(([n, t]) =>
      n.startsWith('model.') ? [[n.slice('model.'.length), t] as const] : [],
    ),
  );
  const config = { ...readFixtureJson('tiny-mlm'), architectures: ['ModernBertModel'] };
  const dir = await writeCheckpoint(tempDir('mbane-body-'), { config, tensors, tokenizerFrom: TINY_MLM });
  extra(dir);
  return dir;
}

/** A sentence-transformers folder around tiny-mlm's body. */
export async function sentenceTransformers(pooling: 'mean' | 'cls', normalize: boolean): Promise<string> {
  return bareBody((dir) => {
    writeSentenceTransformersModules(dir, 64, pooling, normalize);
    writeFileSync(
      join(dir, 'sentence_bert_config.json'),
      JSON.stringify({ max_seq_length: 512, do_lower_case: false }),
    );
  });
}

/** The embedding a sentence-transformers model gives for golden row b: pooled last hidden state, maybe unit length. */
export function expectedEmbedding(
  last: Float32Array[],
  real: number[],
  pooling: 'mean' | 'cls',
  normalize: boolean,
): Float64Array {
  const H = last[0]!.length;
  const e = new Float64Array(H);
  if (pooling === 'cls') e.set(last[0]!);
  else for (const s of real) for (let j = 0; j < H; j++) e[j]! += last[s]![j]! / real.length;
  if (normalize) {
    const n = Math.hypot(...e);
    for (let j = 0; j < H; j++) e[j]! /= n;
  }
  return e;
}
