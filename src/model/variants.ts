// The weight forms a model can run or be converted in: as trained (LayerNorm), folded (RMS norm, Q = I),
// rotated by a seeded random Hadamard matrix, or by a learned rotation. One place decides, so that
// `convert`, `diff`, `outliers` and the fidelity report always mean the same thing by a name.

import { ModernBertError } from '../errors.js';
import type { ModelSource, NormStyle } from './options.js';
import { foldWeights, HadamardRotation, IdentityRotation, type Rotation } from '../rotation/index.js';

export type RotationKind = 'none' | 'hadamard' | 'learned';

export interface VariantSpec {
  /** false: the plain LayerNorm model (no folding, no rotation). */
  fold: boolean;
  rotation: RotationKind;
  /** How the folded model normalises: 'l2' (overflow-safe, the default) or 'rms' (x*x). */
  norm: Exclude<NormStyle, 'layernorm'>;
  seed: number;
}

/** A model source in the given form, and the norm style its graph must use. */
export interface Variant {
  source: ModelSource;
  norm: NormStyle;
  rotation?: Rotation;
  /** A short name for reports: 'layernorm', 'folded', 'hadamard', 'learned'. */
  name: string;
}

/** Prepares a variant; a learned rotation is passed in (learn/learned.ts computes it). */
export function prepareVariant(src: ModelSource, spec: VariantSpec, learned?: Rotation): Variant {
  if (!spec.fold) {
    if (spec.rotation !== 'none')
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `--no-fold keeps the plain LayerNorm model and cannot be combined with --rotation ${spec.rotation}`,
      );
    return { source: src, norm: 'layernorm', name: 'layernorm' };
  }
  const n = src.config.hidden;
  let rotation: Rotation;
  if (spec.rotation === 'none') rotation = new IdentityRotation(n);
  else if (spec.rotation === 'hadamard') rotation = new HadamardRotation(n, spec.seed);
  else {
    if (!learned)
      throw new ModernBertError('INTERNAL', 'a learned rotation must be computed before preparing its variant');
    rotation = learned;
  }
  const weights = foldWeights(src.weights, src.config, rotation);
  const name = spec.rotation === 'none' ? 'folded' : spec.rotation;
  return { source: { ...src, weights }, norm: spec.norm, rotation, name: spec.norm === 'rms' ? `${name}-rms` : name };
}
