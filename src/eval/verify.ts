// Checks a model against golden outputs: max abs difference per case, for logits and every hidden state,
// over real tokens only (padded positions are not meaningful).

import type { ForwardOptions, ForwardResult, Sequence } from '../engine.js';
import { ModernBertError } from '../errors.js';
import type { RtTensor } from '../runtime/tensor.js';
import type { Tensor } from '../weights.js';
import type { GoldenCase } from './golden.js';

/** Anything that runs sequences: a checkpoint's Engine or a Core ML package. */
export interface Runner {
  numLayers: number;
  forward(seq: Sequence, o?: ForwardOptions): Promise<ForwardResult>;
  /** Whether the runner can return a tapped value ('hidden_states.3'). */
  hasTap(role: string): boolean;
}

export interface CaseReport {
  name: string;
  /** Max abs difference of the logits (or embedding / output), null when the golden has none. */
  logits: number | null;
  /** Max abs difference over all hidden states compared, null when none were. */
  hidden_states: number | null;
}

export interface VerifyReport {
  passed: boolean;
  atol: number;
  max_abs_diff: number;
  cases: CaseReport[];
}

/** Max |a - b|; any non-finite value on our side counts as Infinity. */
function maxDiff(acc: number, ours: number, gold: number): number {
  const d = Math.abs(ours - gold);
  return Number.isFinite(d) ? Math.max(acc, d) : Infinity;
}

// Our per-token tensors are (1, C, 1, S): element (c, s) is at c * S + s.
function diffTokens(ours: RtTensor, gold: Float32Array, goldOffset: number, tokens: number[], oursPos: number[], C: number): number {
  const S = ours.shape[3]!;
  if (ours.shape[1] !== C) throw new ModernBertError('SHAPE_MISMATCH', `the model gives ${ours.shape[1]} channels, the golden ${C}`);
  let d = 0;
  tokens.forEach((s, i) => {
    const p = oursPos[i]!;
    for (let c = 0; c < C; c++) d = maxDiff(d, ours.data[c * S + p]!, gold[goldOffset + s * C + c]!);
  });
  return d;
}

/** Runs every case of a golden file and compares. `onCase(i, total)` reports progress. */
export async function verify(runner: Runner, cases: GoldenCase[], atol: number, base: ForwardOptions = {}, onCase?: (done: number, total: number) => void): Promise<VerifyReport> {
  const reports: CaseReport[] = [];
  const L = runner.numLayers;
  for (const [ci, gc] of cases.entries()) {
    const [B, S] = gc.inputIds.shape;
    let logitsDiff: number | null = null;
    let hiddenDiff: number | null = null;
    const bump = (cur: number | null, v: number) => (cur === null ? v : Math.max(cur, v));
    for (let b = 0; b < B; b++) {
      const ids = gc.inputIds.data.subarray(b * S, (b + 1) * S);
      const attention = gc.attentionMask?.subarray(b * S, (b + 1) * S);
      const real = Array.from({ length: S }, (_, s) => s).filter((s) => !attention || attention[s]);
      const taps: string[] = [];
      const wantHidden = gc.hiddenStates !== undefined;
      if (wantHidden) for (let i = 0; i <= L; i++) if (runner.hasTap(`hidden_states.${i}`)) taps.push(`hidden_states.${i}`);
      if ((gc.lastHiddenState || gc.lastHiddenStateAtPositions) && !taps.includes(`hidden_states.${L}`) && runner.hasTap(`hidden_states.${L}`)) taps.push(`hidden_states.${L}`);

      // Per-token logits only at the golden's positions when it gives them (saves the big decoder).
      const positions = gc.positions && (gc.logitsAtPositions || !gc.logits) ? gc.positions : undefined;
      const res = await runner.forward({ ids, attention }, { ...base, positions, taps });
      const out = res.outputs.get('logits') ?? res.outputs.get('embedding') ?? res.outputs.get('hidden_states');

      if (gc.logits && out) {
        const g = gc.logits;
        if (g.shape.length === 2) {
          // Sequence classification: [B, L] against our (1, L).
          const n = g.shape[1]!;
          let d = 0;
          for (let k = 0; k < n; k++) d = maxDiff(d, out.data[k]!, g.data[b * n + k]!);
          logitsDiff = bump(logitsDiff, d);
        } else {
          const V = g.shape[2]!;
          logitsDiff = bump(logitsDiff, diffTokens(out, g.data, b * S * V, real, real, V));
        }
      }
      if (gc.logitsAtPositions && out && positions) {
        const V = gc.logitsAtPositions.shape[1]!;
        logitsDiff = bump(logitsDiff, diffTokens(out, gc.logitsAtPositions.data, 0, positions.map((_, i) => i), positions.map((_, i) => i), V));
      }
      if (wantHidden) {
        const g = gc.hiddenStates as Tensor;
        const H = g.shape[3]!;
        for (let i = 0; i <= L; i++) {
          const t = res.taps.get(`hidden_states.${i}`);
          if (t) hiddenDiff = bump(hiddenDiff, diffTokens(t, g.data, (i * B + b) * S * H, real, real, H));
        }
      }
      const last = res.taps.get(`hidden_states.${L}`);
      if (last && gc.lastHiddenState) {
        hiddenDiff = bump(hiddenDiff, diffTokens(last, gc.lastHiddenState.data, 0, real, real, gc.lastHiddenState.shape[1]!));
      }
      if (last && gc.lastHiddenStateAtPositions && gc.positions) {
        const g = gc.lastHiddenStateAtPositions;
        hiddenDiff = bump(hiddenDiff, diffTokens(last, g.data, 0, gc.positions.map((_, i) => i), gc.positions, g.shape[1]!));
      }
    }
    reports.push({ name: gc.name, logits: logitsDiff, hidden_states: hiddenDiff });
    onCase?.(ci + 1, cases.length);
  }
  const max = Math.max(0, ...reports.flatMap((r) => [r.logits ?? 0, r.hidden_states ?? 0]));
  return { passed: max <= atol, atol, max_abs_diff: max, cases: reports };
}
