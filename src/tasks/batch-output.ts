// Writing batch results: JSONL (one object per input text, in input order), or for embeddings a float32
// matrix [N, C] as .npy or .safetensors, chosen by the file's extension. Every file is written whole to a
// temporary name and renamed, so a failed run leaves no half-written output.

import { ModernBertError } from '../errors.js';
import { writeFileAtomically } from '../io/fs-errors.js';
import { npyBytes } from '../io/npy.js';
import { writeSafetensors } from '../io/safetensors-writer.js';

/** The format a path's extension asks for: .jsonl, .npy or .safetensors; any other is refused, not guessed. */
export function outputFormat(path: string): 'npy' | 'safetensors' | 'jsonl' {
  if (/\.npy$/i.test(path)) return 'npy';
  if (/\.safetensors$/i.test(path)) return 'safetensors';
  if (/\.jsonl$/i.test(path)) return 'jsonl';
  const ext = /(\.[^./\\]+)$/.exec(path)?.[1];
  throw new ModernBertError('BAD_ARGUMENT', `\`out\` ${path}: embeddings are written as .jsonl, .npy or .safetensors, chosen by the extension${ext ? `, and ${ext} is none of them` : ''}`, { path, option: 'out' });
}

/** Writes embeddings (one row per text) as JSONL {"index", "embedding"}, .npy or .safetensors ("embeddings"). */
export async function writeEmbeddings(path: string, rows: readonly Float32Array[]): Promise<void> {
  const format = outputFormat(path);
  if (format === 'jsonl') return writeJsonl(path, rows.map((e, index) => ({ index, embedding: Array.from(e) })));
  const C = rows[0]?.length ?? 0;
  const matrix = new Float32Array(rows.length * C);
  rows.forEach((r, i) => matrix.set(r, i * C));
  if (format === 'npy') return writeFileAtomically(path, npyBytes(matrix, [rows.length, C]), '--out');
  await writeSafetensors(path, [{ name: 'embeddings', dtype: 'F32', shape: [rows.length, C], data: () => matrix }], { metadata: { format: 'pt' } });
}

/** Writes one JSON object per line. */
export function writeJsonl(path: string, objects: readonly unknown[]): void {
  writeFileAtomically(path, objects.map((o) => `${JSON.stringify(o)}\n`).join(''), '--out');
}
