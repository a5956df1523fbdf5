// Where the model is sensitive to noise in its residual stream: M = Σ AᵀA over the matrices that read the
// normalised stream, each with its norm's scale folded in (A = W·diag(γ): every layer's Wqkv and Wi, and
// the head's dense layer behind the final norm). Trained models read their outlier channels weakly, so
// rounding noise left in those channels costs little; fp16-proxy.ts weights the noise by M.

import type { ModelSource } from '../model/options.js';
import { gemmSync } from '../runtime/kernels/index.js';

/** The matrices reading the normalised stream, with the norm whose scale multiplies their columns. */
function streamReaders(src: ModelSource): { weight: string; norm: string }[] {
  const readers: { weight: string; norm: string }[] = [];
  for (let l = 0; l < src.config.numLayers; l++) {
    readers.push({
      weight: `model.layers.${l}.attn.Wqkv.weight`,
      norm: l === 0 ? 'model.embeddings.norm.weight' : `model.layers.${l}.attn_norm.weight`,
    });
    readers.push({ weight: `model.layers.${l}.mlp.Wi.weight`, norm: `model.layers.${l}.mlp_norm.weight` });
  }
  // Without a prediction head, whatever reads the last hidden state is unknown: the final norm's scale alone.
  readers.push({
    weight: src.weights.has('head.dense.weight') ? 'head.dense.weight' : '',
    norm: 'model.final_norm.weight',
  });
  return readers;
}

/**
 * M = Σ AᵀA / ‖A‖²_F·n over the readers (each reader weighs the same), scaled to trace n, so that M = I
 * means "every direction matters equally". Computed from the plain (unfolded) checkpoint.
 */
export function readerSensitivity(src: ModelSource): Float32Array {
  const n = src.config.hidden;
  const m = new Float32Array(n * n);
  for (const r of streamReaders(src)) {
    const gamma = src.weights.has(r.norm) ? src.weights.get(r.norm).data : undefined;
    const w = r.weight ? src.weights.get(r.weight) : undefined;
    const rows = w ? w.shape[0]! : n;
    const a = new Float32Array(rows * n);
    let fro = 0;
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < n; j++) {
        const v = (w ? w.data[i * n + j]! : i === j ? 1 : 0) * (gamma ? gamma[j]! : 1);
        a[i * n + j] = v;
        fro += v * v;
      }
    }
    if (!(fro > 0)) continue;
    const s = Math.sqrt(n / fro);
    for (let i = 0; i < a.length; i++) a[i]! *= s;
    gemmSync({ M: n, N: n, K: rows, a, b: a, c: m, transA: true, accumulate: true });
  }
  let trace = 0;
  for (let i = 0; i < n; i++) trace += m[i * n + i]!;
  if (trace > 0) for (let i = 0; i < m.length; i++) m[i]! *= n / trace;
  // Exact symmetry (the float32 product is symmetric only to rounding): the proxy's gradient assumes it.
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const avg = 0.5 * (m[i * n + j]! + m[j * n + i]!);
      m[i * n + j] = avg;
      m[j * n + i] = avg;
    }
  }
  return m;
}
