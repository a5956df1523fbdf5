// Types of variants-checkpoints.mjs, for test/variants.test.ts.

import type { Head } from './variants-list.mjs';

export function stripPrefix(srcFile: string, dstFile: string, prefix: string): void;
export function buildCheckpoints(fixtures: string, dir: string): Record<Head, string>;
export function writeSentenceTransformersModules(dir: string, hidden: number, pooling: 'mean' | 'cls', normalize: boolean): void;
