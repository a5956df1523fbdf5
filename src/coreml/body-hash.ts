// Which body a head package belongs to: a hash of the body package's program (its ops, types and weight
// offsets) and of its weight file, the metadata and description aside (they hold the fidelity report and
// texts that do not change what the body computes).

import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { fileError, readFileBounded } from '../io/files.js';
import { MAX_MODEL_BYTES } from './mil-read.js';
import { locatePackage, WEIGHT_FILE } from './package.js';
import { decodeModel, encodeModel } from './schema.js';

/** The sha256 (hex) of a body package's program and weights. */
export function bodyHash(path: string): string {
  const { modelFile, weightsDir } = locatePackage(path);
  const model = decodeModel(readFileBounded(modelFile, MAX_MODEL_BYTES, 'Core ML model'), modelFile);
  const h = createHash('sha256');
  h.update(encodeModel({ specificationVersion: model.specificationVersion, mlProgram: model.mlProgram }));
  const weights = join(weightsDir, WEIGHT_FILE);
  let fd: number;
  try {
    fd = openSync(weights, 'r');
  } catch (e) {
    throw fileError(e, weights, 'weight file');
  }
  try {
    const buf = Buffer.alloc(1 << 22);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}
