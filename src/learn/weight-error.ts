// The compression side of the learned rotation's objective (SpinQuant's): how much of each rotated linear
// layer the package's quantizer loses. With the folded model's matrices at Q = I (fold.ts), a rotation Q
// makes the readers A·Q (A = W·diag(γ): Wqkv, Wi), the writers Qᵀ·B (B = C·W: both Wo) and the tied
// embedding/decoder table E·C·Q. Each matrix is stood for by a fixed, seeded sample: whole runs of rows of a
// reader or of the table (a run is one table group for grouped palettes), whole runs of int4 blocks of a
// writer's columns. The loss is the mean over matrices of ‖q(Y) − Y‖²_F / ‖Y‖²_F, where q is the package's
// own quantizer (compressTensor, then the constexpr op's decompress), so int4 blocks, per-row int8 and k-means
// palettes are measured as they ship (a sample's palette stands in for the tensor's).
//
// The gradient holds the quantized values fixed (straight-through for the codes, as in ITQ's alternation of
// codes and rotation): ∂/∂Y = 2·(Y − q(Y)) / ‖Y‖²_F, so a step turns each rotated matrix towards the grid
// it quantizes onto, and the next step re-quantizes. The n×n maps of the folded model (layer 0's residual
// path, the final unrotation) are left out: 2 of ModernBERT-base's 90 matrices, 1% of its weights.

import { compressTensor, decompress } from '../compress/compressed-weights.js';
import { isCompressed, type CompressSpec } from '../compress/spec.js';
import type { ModelSource } from '../model/options.js';
import { foldWeights, TOK_EMBEDDINGS } from '../rotation/fold.js';
import { IdentityRotation } from '../rotation/rotation.js';
import { gemmSync } from '../runtime/kernels/index.js';
import { splitmix32 } from '../numeric/prng.js';

/** A sampled matrix: `data` [rows, cols]; a reader (Y = data·Q, data [rows, n]) or a writer (Y = Qᵀ·data, data [n, cols]). */
interface Sample {
  name: string;
  kind: 'reader' | 'writer';
  data: Float32Array;
  rows: number;
  cols: number;
  /** ‖data‖²_F, which a rotation keeps: ‖Y‖²_F. */
  energy: number;
}

/** The sampled weights of one model under one compression mode. */
export interface WeightSamples {
  spec: CompressSpec;
  n: number;
  samples: Sample[];
}

/** Rows (readers) or columns (writers) sampled per matrix, at least one run: ~50k values of each matrix of a base-size model. */
const SAMPLE_LINES = 64;

/** Samples every compressed reader, writer and the embedding table of `src` folded with Q = I. */
export function sampleWeights(src: ModelSource, spec: CompressSpec, seed: number): WeightSamples {
  const n = src.config.hidden;
  const folded = foldWeights(src.weights, src.config, new IdentityRotation(n));
  const rng = splitmix32(seed ^ 0x77e16475);
  const samples: Sample[] = [];
  // A run of reader rows is one table group (grouped palettes) or 16 rows; a run of writer columns is one
  // int4 block (or 32 columns): the quantizer's unit, so that the sample is quantized as the tensor is.
  const rowRun = spec.groupSize ?? 16;
  const colRun = spec.mode === 'int4' ? spec.blockSize : 32;
  const pickRuns = (lines: number, run: number): number[] => {
    const runs = Math.floor(lines / run);
    const want = Math.min(runs, Math.max(1, Math.floor(SAMPLE_LINES / run)));
    const chosen = new Set<number>();
    while (chosen.size < want) chosen.add(rng() % runs);
    return [...chosen].sort((a, b) => a - b);
  };
  const add = (name: string, kind: Sample['kind']): void => {
    if (!folded.has(name) || !isCompressed(spec, name, folded.shape(name))) return;
    const t = folded.get(name);
    const [rows, cols] = [t.shape[0]!, t.data.length / t.shape[0]!];
    let data: Float32Array;
    let shape: [number, number];
    if (kind === 'reader') {
      const runs = pickRuns(rows, rowRun);
      data = new Float32Array(runs.length * rowRun * cols);
      runs.forEach((r, i) => data.set(t.data.subarray(r * rowRun * cols, (r + 1) * rowRun * cols), i * rowRun * cols));
      shape = [runs.length * rowRun, cols];
    } else {
      const runs = pickRuns(cols, colRun);
      const w = runs.length * colRun;
      data = new Float32Array(rows * w);
      for (let r = 0; r < rows; r++)
        runs.forEach((c, i) =>
          data.set(t.data.subarray(r * cols + c * colRun, r * cols + (c + 1) * colRun), r * w + i * colRun),
        );
      shape = [rows, w];
    }
    let energy = 0;
    for (const v of data) energy += v * v;
    if (energy > 0) samples.push({ name, kind, data, rows: shape[0], cols: shape[1], energy });
  };
  add(TOK_EMBEDDINGS, 'reader');
  for (let l = 0; l < src.config.numLayers; l++) {
    add(`model.layers.${l}.attn.Wqkv.weight`, 'reader');
    add(`model.layers.${l}.attn.Wo.weight`, 'writer');
    add(`model.layers.${l}.mlp.Wi.weight`, 'reader');
    add(`model.layers.${l}.mlp.Wo.weight`, 'writer');
  }
  return { spec, n, samples };
}

/**
 * Mean relative squared error ‖q(Y) − Y‖²/‖Y‖² of the sampled matrices rotated by Q (row-major n×n), and,
 * when `grad` is given, the straight-through gradient added into it (scaled by `scale`).
 */
export function weightError(w: WeightSamples, q: Float32Array, grad?: Float32Array, scale = 1): number {
  const n = w.n;
  if (w.samples.length === 0) return 0;
  const per = 1 / w.samples.length;
  let total = 0;
  for (const s of w.samples) {
    const y = new Float32Array(s.rows * s.cols);
    if (s.kind === 'reader') gemmSync({ M: s.rows, N: n, K: n, a: s.data, b: q, c: y });
    else gemmSync({ M: n, N: s.cols, K: n, a: q, b: s.data, c: y, transA: true });
    const deq = decompress(compressTensor(w.spec, y, [s.rows, s.cols]));
    let err = 0;
    const g = new Float32Array(y.length);
    const k = (2 * per * scale) / s.energy;
    for (let i = 0; i < y.length; i++) {
      const d = y[i]! - deq[i]!;
      err += d * d;
      g[i] = k * d;
    }
    total += (err / s.energy) * per;
    if (!grad) continue;
    // Y = S·Q: ∂/∂Q = Sᵀ·G.  Y = Qᵀ·B: ∂/∂Q = B·Gᵀ.
    if (s.kind === 'reader')
      gemmSync({ M: n, N: n, K: s.rows, a: s.data, b: g, c: grad, transA: true, accumulate: true });
    else gemmSync({ M: n, N: n, K: s.cols, a: s.data, b: g, c: grad, transB: true, accumulate: true });
  }
  return total;
}
