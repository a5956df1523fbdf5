// Writing batch results: JSONL (one object per input text, in input order), or for embeddings a float32
// matrix [N, C] as .npy or .safetensors, chosen by the file's extension. Every file is written as
// io/output.ts writes outputs: checked before the work, and whole or not at all.

import { ModernBertError } from '../errors.js';
import { npyHeader } from '../io/npy.js';
import { writeOutput, type CheckedOutput } from '../io/output.js';
import { writeSafetensors } from '../io/safetensors-writer.js';

/**
 * The format a path's extension asks for: .jsonl, .npy or .safetensors; any other is refused, not guessed,
 * except that a device, FIFO or our own stdout (`direct`: /dev/stdout) without one takes JSONL.
 */
export function outputFormat(path: string, direct = false): 'npy' | 'safetensors' | 'jsonl' {
  if (/\.npy$/i.test(path)) return 'npy';
  if (/\.safetensors$/i.test(path)) return 'safetensors';
  if (/\.jsonl$/i.test(path) || direct) return 'jsonl';
  const ext = /(\.[^./\\]+)$/.exec(path)?.[1];
  throw new ModernBertError(
    'BAD_ARGUMENT',
    `\`out\` ${path}: embeddings are written as .jsonl, .npy or .safetensors, chosen by the extension${ext ? `, and ${ext} is none of them` : ''}`,
    { path, option: 'out' },
  );
}

/** Writes embeddings (one row per text) as JSONL {"index", "embedding"}, .npy or .safetensors ("embeddings"). */
export async function writeEmbeddings(out: CheckedOutput, rows: readonly Float32Array[]): Promise<void> {
  const format = outputFormat(out.path, out.how === 'direct');
  if (format === 'jsonl') {
    return writeJsonl(
      out,
      (function* objects() {
        for (const [index, e] of rows.entries()) yield { index, embedding: Array.from(e) };
      })(),
    );
  }
  const C = rows[0]?.length ?? 0;
  const matrix = asMatrix(rows, C);
  // The header, then the matrix as it is: no second copy of every embedding.
  if (format === 'npy')
    return writeOutput(out, [
      npyHeader([rows.length, C]),
      new Uint8Array(matrix.buffer, matrix.byteOffset, matrix.byteLength),
    ]);
  await writeSafetensors(out, [{ name: 'embeddings', dtype: 'F32', shape: [rows.length, C], data: () => matrix }], {
    metadata: { format: 'pt' },
  });
}

/** The rows as one [N, C] matrix: the buffer they already share (runTokenized keeps embeddings so), else a copy. */
function asMatrix(rows: readonly Float32Array[], C: number): Float32Array {
  const first = rows[0];
  if (
    first &&
    rows.every((r, i) => r.buffer === first.buffer && r.byteOffset === first.byteOffset + i * C * 4 && r.length === C)
  ) {
    return new Float32Array(first.buffer, first.byteOffset, rows.length * C);
  }
  const matrix = new Float32Array(rows.length * C);
  rows.forEach((r, i) => matrix.set(r, i * C));
  return matrix;
}

/** Writes one JSON object per line, a line at a time (a whole file as one string would outgrow what a string holds). */
export function writeJsonl(out: CheckedOutput, objects: Iterable<unknown>): void {
  writeOutput(
    out,
    (function* lines() {
      for (const o of objects) yield `${JSON.stringify(o)}\n`;
    })(),
  );
}
