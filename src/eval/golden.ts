// Golden files: safetensors with keys `<case>.<what>` (see docs/FIXTURES.md). Users export them from
// Hugging Face for their own checkpoints (README), so every optional key is optional here too.

import { ModernBertError } from '../errors.js';
import { READ_LIMITS } from '../io/limits.js';
import { SafetensorsFile } from '../io/safetensors.js';
import type { Tensor } from '../io/weights.js';

export interface GoldenCase {
  name: string;
  /** [B, S] token ids. */
  inputIds: { shape: [number, number]; data: Int32Array };
  /** [B, S], 1 = token; absent means all tokens are real. */
  attentionMask?: Int32Array;
  /** [B, S, V] / [B, S, L] for per-token heads, [B, L] for sequence classification. */
  logits?: Tensor;
  /** [L+1, B, S, H]. */
  hiddenStates?: Tensor;
  positions?: number[];
  logitsAtPositions?: Tensor;
  lastHiddenStateAtPositions?: Tensor;
  /** [S, H] (B = 1). */
  lastHiddenState?: Tensor;
  residualAbsmax?: Float32Array;
}

const KNOWN = new Set([
  'input_ids',
  'attention_mask',
  'logits',
  'hidden_states',
  'positions',
  'logits_at_positions',
  'last_hidden_state_at_positions',
  'last_hidden_state',
  'residual_absmax',
]);

/** Reads every case of a golden file. */
export function readGolden(path: string): GoldenCase[] {
  const f = SafetensorsFile.open(path, READ_LIMITS.golden, 'golden file');
  try {
    const byCase = new Map<string, Set<string>>();
    for (const key of f.tensors.keys()) {
      const dot = key.lastIndexOf('.');
      const [name, what] = dot > 0 ? [key.slice(0, dot), key.slice(dot + 1)] : ['', key];
      if (!KNOWN.has(what))
        throw new ModernBertError(
          'CORRUPT_FILE',
          `${path}: unknown golden key "${key}" (expected <case>.<${[...KNOWN].join('|')}>)`,
          { file: path, key },
        );
      if (!byCase.has(name)) byCase.set(name, new Set());
      byCase.get(name)!.add(what);
    }
    const cases: GoldenCase[] = [];
    for (const [name, keys] of byCase) {
      const k = (what: string) => (name ? `${name}.${what}` : what);
      if (!keys.has('input_ids'))
        throw new ModernBertError('CORRUPT_FILE', `${path}: case "${name}" has no input_ids`, {
          file: path,
          case: name,
        });
      const idsInfo = f.info(k('input_ids'));
      if (idsInfo.shape.length !== 2)
        throw new ModernBertError(
          'CORRUPT_FILE',
          `${path}: ${k('input_ids')} must be [batch, seq], got [${idsInfo.shape.join(', ')}]`,
          { file: path },
        );
      const float = (what: string): Tensor | undefined =>
        keys.has(what) ? { shape: [...f.info(k(what)).shape], data: f.readFloat32(k(what)) } : undefined;
      const c: GoldenCase = {
        name,
        inputIds: { shape: idsInfo.shape as [number, number], data: f.readInt32(k('input_ids')) },
        attentionMask: keys.has('attention_mask') ? f.readInt32(k('attention_mask')) : undefined,
        logits: float('logits'),
        hiddenStates: float('hidden_states'),
        positions: keys.has('positions') ? Array.from(f.readInt32(k('positions'))) : undefined,
        logitsAtPositions: float('logits_at_positions'),
        lastHiddenStateAtPositions: float('last_hidden_state_at_positions'),
        lastHiddenState: float('last_hidden_state'),
        residualAbsmax: float('residual_absmax')?.data,
      };
      if ((c.logitsAtPositions || c.lastHiddenStateAtPositions) && !c.positions) {
        throw new ModernBertError('CORRUPT_FILE', `${path}: case "${name}" has *_at_positions without positions`, {
          file: path,
          case: name,
        });
      }
      cases.push(c);
    }
    return cases;
  } finally {
    f.close();
  }
}
