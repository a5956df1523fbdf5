// Writing batch results: JSONL (one object per input text, in input order), or for embeddings a float32
// matrix [N, C] as .npy or .safetensors, chosen by the file's extension. Every file is written as
// io/output.ts writes outputs: checked before the work, and whole or not at all.

import { npyBytes } from '../io/npy.js';
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
  const C = rows[0]?.length ?? 0;
  const matrix = new Float32Array(rows.length * C);
  rows.forEach((r, i) => matrix.set(r, i * C));
  if (format === 'npy') return writeOutput(out, npyBytes(matrix, [rows.length, C]));
  await writeSafetensors(out, [{ name: 'embeddings', dtype: 'F32', shape: [rows.length, C], data: () => matrix }], { metadata: { format: 'pt' } });
}

/** Writes one JSON object per line, a line at a time (a whole file as one string would outgrow what a string holds). */
export function writeJsonl(out: CheckedOutput, objects: Iterable<unknown>): void {
  writeOutput(out, (function* lines() {
    for (const o of objects) yield `${JSON.stringify(o)}\n`;
  })());
}
