// Writing batch results: JSONL (one object per input text, in input order), or for embeddings a float32
// matrix [N, C] as .npy or .safetensors, chosen by the file's extension. Every file is written as
// io/output.ts writes outputs: checked before the work, and whole or not at all.

import { npyHeader } from '../io/npy.js';
import { writeOutput, type CheckedOutput } from '../io/output.js';
import { writeSafetensors } from '../io/safetensors-writer.js';

/** The format a path's extension asks for. */
export function outputFormat(path: string): 'npy' | 'safetensors' | 'jsonl' {
  return /\.npy$/i.test(path) ? 'npy' : /\.safetensors$/i.test(path) ? 'safetensors' : 'jsonl';
}

/** Writes embeddings (one row per text) as JSONL {"index", "embedding"}, .npy or .safetensors ("embeddings"). */
export async function writeEmbeddings(out: CheckedOutput, rows: readonly Float32Array[]): Promise<void> {
  const format = outputFormat(out.path);
  if (format === 'jsonl') {
    return writeJsonl(out, (function* objects() {
      for (const [index, e] of rows.entries()) yield { index, embedding: Array.from(e) };
    })());
  }
  const matrix = asMatrix(rows);
  const C = rows[0]?.length ?? 0;
  // The header, then the matrix as it is: no second copy of every embedding.
  if (format === 'npy') return writeOutput(out, [npyHeader([rows.length, C]), new Uint8Array(matrix.buffer, matrix.byteOffset, matrix.byteLength)]);
  await writeSafetensors(out, [{ name: 'embeddings', dtype: 'F32', shape: [rows.length, C], data: () => matrix }], { metadata: { format: 'pt' } });
}

/** The rows as one [N, C] matrix: the buffer they already share (runBatch keeps them so), else a copy. */
function asMatrix(rows: readonly Float32Array[]): Float32Array {
  const C = rows[0]?.length ?? 0;
  const first = rows[0];
  if (first && rows.every((r, i) => r.buffer === first.buffer && r.byteOffset === first.byteOffset + i * C * 4 && r.length === C)) {
    return new Float32Array(first.buffer, first.byteOffset, rows.length * C);
  }
  const matrix = new Float32Array(rows.length * C);
  rows.forEach((r, i) => matrix.set(r, i * C));
  return matrix;
}

/** Writes one JSON object per line, a line at a time (a whole file as one string would outgrow what a string holds). */
export function writeJsonl(out: CheckedOutput, objects: Iterable<unknown>): void {
  writeOutput(out, (function* lines() {
    for (const o of objects) yield `${JSON.stringify(o)}\n`;
  })());
}
