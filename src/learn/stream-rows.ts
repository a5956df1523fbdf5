// The float32 residual stream of calibration tokens, as rows for rotation learning: every place where the
// folded model stores the stream (and float16 rounds it) contributes one row per real token. The folded
// stream with Q = I is the centred stream C·r, so the plain model's taps, each row minus its mean, give it
// without a folded copy of the model; the same run gives the float32 reference outputs.

import { CachedWeights, Engine } from '../run/engine.js';
import type { Sequence } from '../run/runner.js';
import { ModernBertError } from '../errors.js';
import type { ModelSource } from '../model/options.js';
import { shutdownRuntime } from '../runtime/shutdown.js';
import type { RtTensor } from '../runtime/tensor.js';
import { TOK_EMBEDDINGS } from '../rotation/fold.js';
import type { StreamRows } from './fp16-proxy.js';

/** Float32 reference outputs of one sequence: the head output as (V, P) columns. */
export interface ReferenceOutput {
  data: Float32Array;
  V: number;
  P: number;
}

/** What one float32 pass over the calibration gives. */
export interface Float32Pass {
  stream: StreamRows;
  outputs: ReferenceOutput[];
  /** Real tokens seen. */
  tokens: number;
}

/** The head output of a forward pass as (V, P) columns: per-token (1, V, 1, P), or one pooled column. */
export function headColumns(outputs: Map<string, RtTensor>): ReferenceOutput {
  const t = outputs.get('logits') ?? outputs.get('embedding') ?? outputs.get('hidden_states');
  if (!t || !(t.data instanceof Float32Array))
    throw new ModernBertError('INTERNAL', 'the model produced no float output');
  return t.shape.length === 4
    ? { data: t.data, V: t.shape[1]!, P: t.shape[3]! }
    : { data: t.data, V: t.shape[1]!, P: 1 };
}

/** Positions of the real tokens of a sequence. */
export function realPositions(s: Sequence): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.ids.length; i++) if (!s.attention || s.attention[i]) out.push(i);
  return out;
}

/**
 * Runs the plain model in float32 over `seqs`, keeping its outputs and the centred stream rows: the
 * embedding of each real token and the residual stream after the embedding norm and after every layer.
 * At most `maxRows` rows are kept, an evenly spaced subset when there are more.
 */
export async function float32Pass(
  src: ModelSource,
  seqs: Sequence[],
  maxRows: number,
  onSequence?: () => void,
): Promise<Float32Pass> {
  const { config: c } = src;
  const n = c.hidden;
  // One cached copy serves both the engine and the embedding rows (a synthetic table is computed per read).
  const weights = src.weights instanceof CachedWeights ? src.weights : new CachedWeights(src.weights);
  const engine = new Engine({ ...src, weights }, { precision: 'fp32', norm: 'layernorm' });
  const taps = Array.from({ length: c.numLayers + 1 }, (_, i) => `residual.${i}`);
  const embeddings = weights.get(TOK_EMBEDDINGS).data;
  const raw: Float32Array[] = [];
  const outputs: ReferenceOutput[] = [];
  let tokens = 0;
  for (const s of seqs) {
    const res = await engine.forward(s, { taps });
    outputs.push(headColumns(res.outputs));
    const S = s.ids.length;
    const real = realPositions(s);
    tokens += real.length;
    for (const p of real) raw.push(embeddings.slice(s.ids[p]! * n, (s.ids[p]! + 1) * n));
    for (const t of taps) {
      const d = res.taps.get(t)!.data as Float32Array;
      for (const p of real) {
        const row = new Float32Array(n);
        for (let ch = 0; ch < n; ch++) row[ch] = d[ch * S + p]!;
        raw.push(row);
      }
    }
    onSequence?.();
  }
  await shutdownRuntime(); // frees the weights the kernel workers still reference
  const keep =
    raw.length <= maxRows
      ? raw
      : Array.from({ length: maxRows }, (_, i) => raw[Math.floor((i * raw.length) / maxRows)]!);
  return { stream: unitRows(keep, n), outputs, tokens };
}

/** Centres each row (C·x), scales it to unit length and records its norm; drops all-zero rows. */
export function unitRows(rowsIn: ArrayLike<number>[], n: number): StreamRows {
  const rows = new Float32Array(rowsIn.length * n);
  const norms = new Float32Array(rowsIn.length);
  let count = 0;
  for (const x of rowsIn) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[i]!;
    mean /= n;
    let ss = 0;
    for (let i = 0; i < n; i++) ss += (x[i]! - mean) ** 2;
    const norm = Math.sqrt(ss);
    if (!(norm > 0) || !Number.isFinite(norm)) continue;
    for (let i = 0; i < n; i++) rows[count * n + i] = (x[i]! - mean) / norm;
    norms[count++] = norm;
  }
  return { rows: rows.subarray(0, count * n), norms: norms.subarray(0, count), count, n };
}
