// A fidelity report in words: one line for a terminal, and where NaN or infinity first appears with the
// advice that addresses it (a rotation helps the residual stream, nothing else).

import type { FidelityReport, ModelPart } from './fidelity.js';

/** How the package was made, which decides what advice can help. */
export interface ConversionSettings {
  fold: boolean;
  rotation: string;
  norm: 'l2' | 'rms';
}

/** Advice that addresses where the first non-finite value appears, or says that no conversion option does. */
export function nonFiniteAdvice(part: ModelPart | undefined, s: ConversionSettings): string {
  const none = 'no rotation or other conversion option changes them (the model itself exceeds float16 there)';
  switch (part) {
    case 'norm':
      if (!s.fold)
        return "the LayerNorm squares its input, which overflows float16: convert without --no-fold (the folded model's l2 norm does not square)";
      if (s.norm === 'rms')
        return 'the x*x RMSNorm overflows float16: use --norm l2 (the default), which does not square';
      return `the norm's input exceeds float16; ${none}`;
    case 'residual':
    case 'embedding':
      if (!s.fold)
        return 'the residual stream exceeds float16 (65504): convert without --no-fold, and if it still overflows, with --rotation hadamard, which spreads an outlier channel over all channels';
      if (s.rotation === 'none')
        return 'the residual stream exceeds float16 (65504): try --rotation hadamard, which spreads an outlier channel over all channels';
      return `the residual stream exceeds float16 (65504) even with the ${s.rotation} rotation; no rotation fixes it`;
    case 'attention':
      return `the attention (queries, keys, scores) exceeds float16; ${none}`;
    case 'mlp':
      return `the MLP's inner activations exceed float16; ${none}`;
    case 'head':
      return `the output head exceeds float16; ${none}`;
    default:
      return 'the op could not be located';
  }
}

/**
 * One sentence on where the converted model first gives NaN or infinity, with advice when `settings` say how it
 * was made (convert refuses to write such a package with it).
 */
export function nonFiniteSummary(f: FidelityReport, settings?: ConversionSettings): string {
  const n = f.non_finite!;
  const where =
    n.first_layer === null ? 'in the head' : n.first_layer === 0 ? 'in the embeddings' : `after layer ${n.first_layer}`;
  const op = n.first_op ? `, at op ${n.first_op.op} "${n.first_op.name}"` : '';
  const advice = settings ? `: ${nonFiniteAdvice(n.first_op?.part, settings)}` : '';
  return `the converted model gives NaN or infinity in ${f.precision} emulation on ${n.tokens} of ${f.tokens} ${unit(f)}; the first appears ${where}${op} (in "${n.sequence.slice(0, 60)}"), so it would not work on the Neural Engine${advice}`;
}

/** What the compared vectors are: one per text for pooled heads, one per token otherwise. */
function unit(f: FidelityReport): string {
  return f.head === 'embedding' || f.head === 'seqcls' ? 'texts' : 'tokens';
}

/** One line for a terminal: what was compared (the shipped head and form), and how closely it follows float32. */
export function formatFidelity(f: FidelityReport, settings?: ConversionSettings): string {
  // Reports stored by earlier versions name no head.
  const form =
    f.head === undefined ? '' : ` of the ${f.head} output${f.pack === undefined ? '' : `, ${f.pack} texts per window`}`;
  const head = `fidelity${form} (${f.precision} emulation vs float32, ${f.tokens} ${unit(f)} of ${f.inputs}):`;
  if (f.non_finite) return `${head} ${nonFiniteSummary(f, settings)}`;
  if (f.cosine)
    return `${head} cosine similarity mean ${f.cosine.mean.toFixed(6)}, min ${f.cosine.min.toFixed(6)}, max |diff| ${f.max_abs_diff.toPrecision(3)}`;
  return `${head} KL ${f.kl.toExponential(2)}, top-1 ${(100 * f.top1).toFixed(1)}%, top-5 ${(100 * f.top5).toFixed(1)}%, max |diff| ${f.max_abs_diff.toPrecision(3)}`;
}
