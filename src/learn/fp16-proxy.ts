// A cheap, differentiable stand-in for the float16 error that a rotation Q of the residual stream causes,
// evaluated on float32 residual-stream rows X (one row per token and layer, the folded stream C·r) as X·Q.
//
// Why this form. Float16 rounds each value v to a relative precision (error variance ≈ κ·v², κ ≈ 2⁻²⁴), so
// rounding a stream row v = x̂·Q (x̂ = x/‖x‖) adds noise e with Var(eᵢ) ≈ κ·vᵢ², that is Q·e in the model's
// own coordinates. The next op is an RMS norm, blind to the radial part of the noise (along x̂ itself), and
// the readers behind it (Wqkv, Wi, the head, each with its norm's scale folded in: A = W·diag(γ)) see the
// tangential part P·Q·e, P = I − x̂x̂ᵀ. The expected error they see is κ·Σᵢ vᵢ²·‖A·P·qᵢ‖² over the columns
// qᵢ of Q; with M = AᵀA (stream-readers.ts) and d = diag(QᵀMQ), w = x̂ᵀMQ, m = x̂ᵀMx̂ this is
//
//     noise(x̂, Q) = Σᵢ vᵢ² (dᵢ − 2·vᵢ·wᵢ + vᵢ²·m)          (in units of κ; with M = I: 1 − Σᵢ vᵢ⁴)
//
// Two things make Q matter. A token whose energy sits in one channel (a massive activation, axis-aligned as
// trained models make it) has radial noise only, so spreading it (Hadamard) costs precision: unlike integer
// quantization, float16 prefers the stream concentrated. And trained models read their outlier channels
// weakly (small γ and weights), so noise left there is cheap: M says where noise is expensive.
//
// Overflow is the other side: the stream must stay below 65504, and with the x*x norm ('rms') every |vᵢ|·‖x‖
// below √65504 ≈ 256. A barrier adds Σᵢ ((vᵢ²‖x‖² − τ²)/τ²)² over the values beyond τ, a fraction of that
// limit, so that concentrating never pushes a value past what float16 holds.
//
// docs/FIDELITY.md shows, over many Q's, how this proxy orders rotations against the measured float16 KL.

import { gemmSync } from '../runtime/kernels/index.js';

/** Float32 residual-stream rows, each scaled to unit length, with their original norms. */
export interface StreamRows {
  /** [count, n] row-major unit rows x̂. */
  rows: Float32Array;
  /** ‖x‖ of each row before scaling. */
  norms: Float32Array;
  count: number;
  n: number;
}

/** Stream rows prepared for one sensitivity matrix M: x̂·M and x̂ᵀ·M·x̂ per row. */
export interface ProxyData extends StreamRows {
  /** M (n×n, symmetric, trace n). */
  sensitivity: Float32Array;
  /** [count, n]: x̂·M. */
  xm: Float32Array;
  /** x̂ᵀ·M·x̂ per row. */
  xmx: Float32Array;
}

export interface ProxyOptions {
  /** τ: values of |X·Q| beyond this are penalised (e.g. 0.8 × 256 for the x*x norm, 0.8 × 65504 for l2). */
  limit: number;
}

/** The proxy and its parts, as means over the rows. */
export interface ProxyValue {
  /** noise + barrier. */
  loss: number;
  /** Mean sensitivity-weighted tangential rounding noise (in units of κ). */
  noise: number;
  /** Mean overflow barrier. */
  barrier: number;
  /** Compressed (learned.ts's objective): the weights' mean relative squared quantization error. */
  weights?: number;
}

/** Largest number of rows multiplied in one GEMM: bounds the scratch memory to chunk·n floats. */
const CHUNK_ROWS = 1024;

/** Precomputes x̂·M and x̂ᵀMx̂ for the rows (M symmetric n×n). */
export function prepareProxy(x: StreamRows, sensitivity: Float32Array): ProxyData {
  const { n, count } = x;
  const xm = new Float32Array(count * n);
  if (count > 0) gemmSync({ M: count, N: n, K: n, a: x.rows, b: sensitivity, c: xm });
  const xmx = new Float32Array(count);
  for (let r = 0; r < count; r++) {
    let s = 0;
    for (let i = r * n; i < (r + 1) * n; i++) s += x.rows[i]! * xm[i]!;
    xmx[r] = s;
  }
  return { ...x, sensitivity, xm, xmx };
}

/**
 * The proxy at Q over the rows `pick` (all rows when absent), and, when `grad` is given, its Euclidean
 * gradient ∂loss/∂Q written there ([n, n]). Cost: four n²-per-row products and two n³ ones.
 */
export function fp16Proxy(
  x: ProxyData,
  q: Float32Array,
  o: ProxyOptions,
  grad?: Float32Array,
  pick?: Uint32Array,
): ProxyValue {
  const { n } = x;
  const total = pick ? pick.length : x.count;
  const scale = 1 / Math.max(total, 1);
  const tau2 = o.limit * o.limit;
  // d = diag(QᵀMQ), from MQ.
  const mq = new Float32Array(n * n);
  gemmSync({ M: n, N: n, K: n, a: x.sensitivity, b: q, c: mq });
  const d = new Float64Array(n);
  for (let k = 0; k < n; k++) for (let i = 0; i < n; i++) d[i]! += q[k * n + i]! * mq[k * n + i]!;
  const c = new Float64Array(n); // Σ over rows of vᵢ², the weight of ∂dᵢ
  let noise = 0;
  let barrier = 0;
  if (grad) grad.fill(0);
  const chunk = Math.min(CHUNK_ROWS, Math.max(total, 1));
  const xs = new Float32Array(chunk * n);
  const ys = new Float32Array(chunk * n);
  const v = new Float32Array(chunk * n);
  const w = new Float32Array(chunk * n);
  const dv = new Float32Array(chunk * n);
  const dw = new Float32Array(chunk * n);
  const norms = new Float64Array(chunk);
  const xmx = new Float64Array(chunk);
  for (let start = 0; start < total; start += chunk) {
    const rows = Math.min(chunk, total - start);
    for (let r = 0; r < rows; r++) {
      const row = pick ? pick[start + r]! : start + r;
      xs.set(x.rows.subarray(row * n, (row + 1) * n), r * n);
      ys.set(x.xm.subarray(row * n, (row + 1) * n), r * n);
      norms[r] = x.norms[row]!;
      xmx[r] = x.xmx[row]!;
    }
    gemmSync({ M: rows, N: n, K: n, a: xs, b: q, c: v });
    gemmSync({ M: rows, N: n, K: n, a: ys, b: q, c: w });
    for (let r = 0; r < rows; r++) {
      const s2 = norms[r]! * norms[r]!;
      const m = xmx[r]!;
      let f = 0;
      let pen = 0;
      for (let i = 0, at = r * n; i < n; i++, at++) {
        const vi = v[at]!;
        const wi = w[at]!;
        const v2 = vi * vi;
        f += v2 * (d[i]! - 2 * vi * wi + v2 * m);
        c[i]! += v2;
        let g = 2 * vi * d[i]! - 6 * v2 * wi + 4 * v2 * vi * m;
        // The barrier on the unscaled value |vᵢ|·‖x‖.
        const excess = (v2 * s2 - tau2) / tau2;
        if (excess > 0) {
          pen += excess * excess;
          g += (4 * excess * s2 * vi) / tau2;
        }
        dv[at] = g * scale;
        dw[at] = -2 * v2 * vi * scale;
      }
      noise += f;
      barrier += pen;
    }
    // ∂loss/∂Q through v = x̂·Q and w = (x̂M)·Q.
    if (grad) {
      gemmSync({ M: n, N: n, K: rows, a: xs, b: dv, c: grad, transA: true, accumulate: true });
      gemmSync({ M: n, N: n, K: rows, a: ys, b: dw, c: grad, transA: true, accumulate: true });
    }
  }
  // ∂loss/∂Q through dᵢ = qᵢᵀMqᵢ: 2·M·qᵢ·(mean vᵢ²).
  if (grad)
    for (let k = 0; k < n; k++) for (let i = 0; i < n; i++) grad[k * n + i]! += 2 * mq[k * n + i]! * c[i]! * scale;
  return { loss: (noise + barrier) * scale, noise: noise * scale, barrier: barrier * scale };
}
