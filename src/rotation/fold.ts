// Norm folding with an orthogonal rotation (QuaRot / SliceGPT for a pre-norm LayerNorm model). The folded
// model carries r̃ = Qᵀ·C·r instead of the residual stream r and normalizes it with an RMS norm without
// scale; since rms(r̃) = rms(C·r), the LayerNorm's output γ⊙(C·r)/rms(C·r) + β equals diag(γ)·Q·(r̃/rms(r̃)) + β,
// so γ and β fold into the matrices that read a norm, and Qᵀ·C into the matrices that write the stream.
// docs/ROTATION.md has the derivation and what each output tensor is.

import { ModernBertError } from '../errors.js';
import { sharedFloat32, type Tensor, type WeightSource } from '../io/weights.js';
import { LazyWeights, type Recipe } from './lazy-weights.js';
import { affine, centerColumns, centerRows, centeredDiagonal, diagonal, scaleColumns } from './matrix-ops.js';
import type { Rotation } from './rotation.js';
import { Workspace } from './workspace.js';

/** The model dimensions folding needs. */
export interface FoldConfig {
  numLayers: number;
  hidden: number;
}

/** The token embedding table; folded, its rows are centered and rotated (E·C·Q). */
export const TOK_EMBEDDINGS = 'model.embeddings.tok_embeddings.weight';
/** Prefix of layer 0's residual path (`.weight` [n, n] = Qᵀ·C·diag(γ_emb)·Q, `.bias` = Qᵀ·C·β_emb). */
export const LAYER0_RESIDUAL = 'model.layers.0.residual';
/** Prefix of the map from the normalized stream back to the last hidden state (`.weight` = diag(γ)·Q, `.bias` = β). */
export const FINAL_UNROTATE = 'model.final_norm.unrotate';

const EMBEDDING_NORM = 'model.embeddings.norm';
const FINAL_NORM = 'model.final_norm';
/** Rows prepared (centered or scaled) per batch before rotation: bounds the float64 working copy. */
const ROW_BATCH = 1024;

/** The folded (and rotated, unless Q = I) weights of `src`, computed tensor by tensor on demand. */
export function foldWeights(src: WeightSource, cfg: FoldConfig, rotation: Rotation): WeightSource {
  return new LazyWeights(new Folding(src, cfg, rotation).recipes());
}

class Folding {
  private readonly n: number;
  private readonly workspace = new Workspace();

  constructor(
    private readonly src: WeightSource,
    private readonly cfg: FoldConfig,
    private readonly rotation: Rotation,
  ) {
    this.n = cfg.hidden;
    if (rotation.size !== cfg.hidden) {
      throw new ModernBertError(
        'SHAPE_MISMATCH',
        `rotation of order ${rotation.size} does not match hidden size ${cfg.hidden}`,
        {
          size: rotation.size,
          hidden: cfg.hidden,
        },
      );
    }
    this.validate();
  }

  /** Every output tensor: the folded ones, the new ones, and the rest of `src` unchanged, minus the body's norms. */
  recipes(): Map<string, Recipe> {
    const dropped = new Set(this.norms().flatMap((p) => [`${p}.weight`, `${p}.bias`]));
    const out = new Map<string, Recipe>();
    for (const name of this.src.names()) {
      if (!dropped.has(name)) out.set(name, { shape: () => this.src.shape(name), get: () => this.src.get(name) });
    }
    out.set(TOK_EMBEDDINGS, { shape: () => this.src.shape(TOK_EMBEDDINGS), get: () => this.embeddings() });
    this.residual(out);
    for (let i = 0; i < this.cfg.numLayers; i++) {
      const layer = `model.layers.${i}`;
      this.reader(out, `${layer}.attn.Wqkv`, i === 0 ? EMBEDDING_NORM : `${layer}.attn_norm`);
      this.writer(out, `${layer}.attn.Wo`);
      this.reader(out, `${layer}.mlp.Wi`, `${layer}.mlp_norm`);
      this.writer(out, `${layer}.mlp.Wo`);
    }
    this.unrotate(out);
    return out;
  }

  /** The LayerNorms that folding removes (head.norm is not one: the head reads the unrotated state). */
  private norms(): string[] {
    const norms = [EMBEDDING_NORM, FINAL_NORM];
    for (let i = 0; i < this.cfg.numLayers; i++) {
      if (i > 0) norms.push(`model.layers.${i}.attn_norm`);
      norms.push(`model.layers.${i}.mlp_norm`);
    }
    return norms;
  }

  /** Checks names and shapes up front (no tensor data is read), so a bad checkpoint fails before any work. */
  private validate(): void {
    const n = this.n;
    this.expect(TOK_EMBEDDINGS, [null, n]);
    for (const norm of this.norms()) {
      this.expect(`${norm}.weight`, [n]);
      this.expectOptional(`${norm}.bias`, [n]);
    }
    for (let i = 0; i < this.cfg.numLayers; i++) {
      const layer = `model.layers.${i}`;
      for (const reader of [`${layer}.attn.Wqkv`, `${layer}.mlp.Wi`]) {
        const [out] = this.expect(`${reader}.weight`, [null, n]);
        this.expectOptional(`${reader}.bias`, [out!]);
      }
      for (const writer of [`${layer}.attn.Wo`, `${layer}.mlp.Wo`]) {
        this.expect(`${writer}.weight`, [n, null]);
        this.expectOptional(`${writer}.bias`, [n]);
      }
    }
    if (this.src.has('model.layers.0.attn_norm.weight')) {
      throw new ModernBertError(
        'BAD_CONFIG',
        "layer 0 has an attention norm; ModernBERT's layer 0 reads the embedding norm",
        {
          tensor: 'model.layers.0.attn_norm.weight',
        },
      );
    }
    const extra = `model.layers.${this.cfg.numLayers}.attn.Wqkv.weight`;
    if (this.src.has(extra)) {
      throw new ModernBertError(
        'BAD_CONFIG',
        `the weights have more than the ${this.cfg.numLayers} layers of the config`,
        {
          tensor: extra,
        },
      );
    }
  }

  /** The shape of a required tensor, checked against `want` (null = any size). */
  private expect(name: string, want: (number | null)[]): number[] {
    if (!this.src.has(name)) throw new ModernBertError('BAD_CONFIG', `weight "${name}" is missing`, { tensor: name });
    const shape = this.src.shape(name);
    if (shape.length !== want.length || want.some((w, i) => w !== null && w !== shape[i])) {
      const expected = want.map((w) => w ?? '*').join(', ');
      throw new ModernBertError(
        'SHAPE_MISMATCH',
        `weight "${name}" has shape [${shape.join(', ')}], expected [${expected}]`,
        {
          tensor: name,
          shape,
        },
      );
    }
    return shape;
  }

  private expectOptional(name: string, want: (number | null)[]): void {
    if (this.src.has(name)) this.expect(name, want);
  }

  private data(name: string): Float32Array {
    return this.src.get(name).data;
  }

  /** E·C·Q. */
  private embeddings(): Tensor {
    const e = this.data(TOK_EMBEDDINGS);
    const rows = e.length / this.n;
    return {
      shape: [rows, this.n],
      data: this.rotateRows(rows, (first, count, dst) => centerRows(e, first, count, this.n, dst)),
    };
  }

  /** P·Q for P [rows, n] produced batch by batch by `prepare` (rows first .. first + count − 1, float64). */
  private rotateRows(
    rows: number,
    prepare: (first: number, count: number, dst: Float64Array) => Float64Array,
  ): Float32Array {
    const n = this.n;
    const out = sharedFloat32(rows * n);
    for (let r0 = 0; r0 < rows; r0 += ROW_BATCH) {
      const t = Math.min(ROW_BATCH, rows - r0);
      const batch = prepare(r0, t, this.workspace.take(t * n));
      this.rotation.rightMul(batch, t, n, out.subarray(r0 * n, (r0 + t) * n));
    }
    return out;
  }

  /** A matrix reading a norm's output: W' = W·diag(γ)·Q, b' = b + W·β (a bias appears if only the norm has one). */
  private reader(out: Map<string, Recipe>, prefix: string, norm: string): void {
    const n = this.n;
    const weight = `${prefix}.weight`;
    const bias = `${prefix}.bias`;
    const [rows] = this.src.shape(weight) as [number, number];
    out.set(weight, {
      shape: () => [rows, n],
      get: () => {
        const w = this.data(weight);
        const gamma = this.data(`${norm}.weight`);
        return {
          shape: [rows, n],
          data: this.rotateRows(rows, (first, count, dst) => scaleColumns(w, first, count, n, gamma, dst)),
        };
      },
    });
    const normBias = `${norm}.bias`;
    if (!this.src.has(normBias)) return; // b' = b: the bias, if any, passes through
    out.set(bias, {
      shape: () => [rows],
      get: () => {
        const b = this.src.has(bias) ? this.data(bias) : null;
        return { shape: [rows], data: new Float32Array(affine(this.data(weight), rows, n, this.data(normBias), b)) };
      },
    });
  }

  /** A matrix adding to the residual stream: W' = Qᵀ·C·W, b' = Qᵀ·C·b. */
  private writer(out: Map<string, Recipe>, prefix: string): void {
    const n = this.n;
    const weight = `${prefix}.weight`;
    const bias = `${prefix}.bias`;
    const [, cols] = this.src.shape(weight) as [number, number];
    out.set(weight, {
      shape: () => [n, cols],
      get: () => {
        const centered = centerColumns(this.data(weight), n, cols, this.workspace.take(n * cols));
        return { shape: [n, cols], data: this.rotation.leftMulT(centered, n, cols) };
      },
    });
    if (this.src.has(bias)) out.set(bias, this.centeredVector(bias));
  }

  /** Layer 0's residual path: the original adds the embedding norm's output, γ⊙n + β, to the stream. */
  private residual(out: Map<string, Recipe>): void {
    const n = this.n;
    out.set(`${LAYER0_RESIDUAL}.weight`, {
      shape: () => [n, n],
      get: () => {
        const cg = centeredDiagonal(this.data(`${EMBEDDING_NORM}.weight`));
        return { shape: [n, n], data: this.rotation.leftMulT(this.rotation.rightMul(cg, n, n), n, n) };
      },
    });
    if (this.src.has(`${EMBEDDING_NORM}.bias`))
      out.set(`${LAYER0_RESIDUAL}.bias`, this.centeredVector(`${EMBEDDING_NORM}.bias`));
  }

  /** Qᵀ·C·v for the vector tensor `name`. */
  private centeredVector(name: string): Recipe {
    const n = this.n;
    return {
      shape: () => [n],
      get: () => ({
        shape: [n],
        data: this.rotation.leftMulT(centerColumns(this.data(name), n, 1, new Float64Array(n)), n, 1),
      }),
    };
  }

  /** The final norm's γ and β, applied to the rotated normalized stream: last hidden state = diag(γ)·Q·ñ + β. */
  private unrotate(out: Map<string, Recipe>): void {
    const n = this.n;
    out.set(`${FINAL_UNROTATE}.weight`, {
      shape: () => [n, n],
      get: () => ({ shape: [n, n], data: this.rotation.rightMul(diagonal(this.data(`${FINAL_NORM}.weight`)), n, n) }),
    });
    const bias = `${FINAL_NORM}.bias`;
    if (this.src.has(bias)) out.set(`${FINAL_UNROTATE}.bias`, { shape: () => [n], get: () => this.src.get(bias) });
  }
}
