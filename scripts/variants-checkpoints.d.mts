// Types of variants-checkpoints.mjs, for test/variants.test.ts.

import type { Head } from './variants-list.mjs';

export function stripPrefix(srcFile: string, dstFile: string, prefix: string): void;
/** Every head's checkpoint, and 'mlm-70k' (tiny-mlm with a 70,000-token vocabulary) for the layout variants. */
export function buildCheckpoints(fixtures: string, dir: string): Record<Head | 'mlm-70k', string>;
export function writeSentenceTransformersModules(
  dir: string,
  hidden: number,
  pooling: 'mean' | 'cls',
  normalize: boolean,
): void;
