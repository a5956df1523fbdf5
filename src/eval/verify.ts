// Checks a model against golden outputs: max abs difference per case, for logits and every hidden state,
// over real tokens only (padded positions are not meaningful). A case that compares nothing (no outputs in
// the golden, no real tokens, batch 0) is an error: a check that checks nothing must not pass.

import type { ForwardOptions, Runner } from '../run/runner.js';
import { ModernBertError } from '../errors.js';
import type { RtTensor } from '../runtime/tensor.js';
import type { Tensor } from '../io/weights.js';
import type { GoldenCase } from './golden.js';

export interface CaseReport {
  name: string;
  /** Max abs difference of the logits (or embedding / output), null when the golden has none. */
  logits: number | null;
  /** Max abs difference over all hidden states compared, null when none were. */
  hidden_states: number | null;
}

export interface VerifyReport {
  passed: boolean;
  /** Values compared over all cases (always > 0: verify throws otherwise). */
  compared: number;
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
function diffTokens(
  ours: RtTensor,
  gold: Float32Array,
  goldOffset: number,
  tokens: number[],
  oursPos: number[],
  C: number,
): { d: number; n: number } {
  if (ours.shape.length !== 4)
    throw new ModernBertError(
      'SHAPE_MISMATCH',
      `the golden has per-token values but the model's output is [${ours.shape.join(', ')}]`,
    );
  const S = ours.shape[3]!;
  if (ours.shape[1] !== C)
    throw new ModernBertError('SHAPE_MISMATCH', `the model gives ${ours.shape[1]} channels, the golden ${C}`);
  let d = 0;
  tokens.forEach((s, i) => {
    const p = oursPos[i]!;
    for (let c = 0; c < C; c++) d = maxDiff(d, ours.data[c * S + p]!, gold[goldOffset + s * C + c]!);
  });
  return { d, n: tokens.length * C };
}

/** A golden from another model (other layer count, batch or length) is an error, not an out-of-range read. */
function checkGoldenShapes(gc: GoldenCase, L: number): void {
  const [B, S] = gc.inputIds.shape;
  const fail = (what: string, shape: number[], expected: string) => {
    throw new ModernBertError(
      'SHAPE_MISMATCH',
      `golden case "${gc.name}": ${what} is [${shape.join(', ')}], but this model and the case's input_ids [${B}, ${S}] need ${expected}`,
      { case: gc.name },
    );
  };
  const h = gc.hiddenStates?.shape;
  if (h && (h.length !== 4 || h[0] !== L + 1 || h[1] !== B || h[2] !== S))
    fail('hidden_states', h, `[${L + 1}, ${B}, ${S}, hidden]`);
  const g = gc.logits?.shape;
  if (g && !(g.length === 2 ? g[0] === B : g.length === 3 && g[0] === B && g[1] === S))
    fail('logits', g, `[${B}, labels] or [${B}, ${S}, classes]`);
  if (gc.attentionMask && gc.attentionMask.length !== B * S)
    fail('attention_mask', [gc.attentionMask.length], `${B * S} values`);
  const last = gc.lastHiddenState?.shape;
  if (last && (last.length !== 2 || last[0] !== S || B !== 1))
    fail('last_hidden_state', last, `[${S}, hidden] with batch 1`);
  const P = gc.positions?.length ?? 0;
  for (const [what, t] of [
    ['logits_at_positions', gc.logitsAtPositions],
    ['last_hidden_state_at_positions', gc.lastHiddenStateAtPositions],
  ] as const) {
    if (t && (t.shape.length !== 2 || t.shape[0] !== P)) fail(what, t.shape, `[${P}, channels]`);
  }
  if (gc.positions?.some((p) => !Number.isInteger(p) || p < 0 || p >= S)) {
    throw new ModernBertError('SHAPE_MISMATCH', `golden case "${gc.name}": positions fall outside its ${S} tokens`, {
      case: gc.name,
    });
  }
}

/** Runs every case of a golden file and compares. `onCase(i, total)` reports progress. */
export async function verify(
  runner: Runner,
  cases: GoldenCase[],
  atol: number,
  base: ForwardOptions = {},
  onCase?: (done: number, total: number) => void,
): Promise<VerifyReport> {
  const reports: CaseReport[] = [];
  const L = runner.numLayers;
  if (cases.length === 0)
    throw new ModernBertError('BAD_INPUT', 'the golden file holds no cases: there is nothing to compare');
  let compared = 0;
  for (const [ci, gc] of cases.entries()) {
    const [B, S] = gc.inputIds.shape;
    checkGoldenShapes(gc, L);
    let logitsDiff: number | null = null;
    let hiddenDiff: number | null = null;
    let caseCompared = 0;
    // Only a comparison of at least one value counts: an empty one must not turn "no value" into a 0 difference.
    const bump = (cur: number | null, r: { d: number; n: number }) => {
      if (r.n === 0) return cur;
      caseCompared += r.n;
      return cur === null ? r.d : Math.max(cur, r.d);
    };
    for (let b = 0; b < B; b++) {
      const ids = gc.inputIds.data.subarray(b * S, (b + 1) * S);
      const attention = gc.attentionMask?.subarray(b * S, (b + 1) * S);
      const real = Array.from({ length: S }, (_, s) => s).filter((s) => !attention || attention[s]);
      if (real.length === 0) continue; // an all-padding row says nothing, even for a pooled head
      const taps: string[] = [];
      const wantHidden = gc.hiddenStates !== undefined;
      if (wantHidden)
        for (let i = 0; i <= L; i++) if (runner.hasTap(`hidden_states.${i}`)) taps.push(`hidden_states.${i}`);
      if (
        (gc.lastHiddenState || gc.lastHiddenStateAtPositions) &&
        !taps.includes(`hidden_states.${L}`) &&
        runner.hasTap(`hidden_states.${L}`)
      )
        taps.push(`hidden_states.${L}`);

      // Per-token logits only at the golden's positions when it gives them (saves the big decoder).
      const positions = gc.positions && (gc.logitsAtPositions || !gc.logits) ? gc.positions : undefined;
      const res = await runner.forward({ ids, attention }, { ...base, positions, taps });
      const out = res.outputs.get('logits') ?? res.outputs.get('embedding') ?? res.outputs.get('hidden_states');

      if (gc.logits && out) {
        const g = gc.logits;
        if (g.shape.length === 2) {
          // Sequence classification: [B, L] against our (1, L).
          const n = g.shape[1]!;
          if (out.shape.length !== 2 || out.shape[1] !== n) {
            throw new ModernBertError(
              'SHAPE_MISMATCH',
              `golden case "${gc.name}" has ${n} sequence-classification logits per row, the model's output is [${out.shape.join(', ')}]`,
              { case: gc.name },
            );
          }
          let d = 0;
          for (let k = 0; k < n; k++) d = maxDiff(d, out.data[k]!, g.data[b * n + k]!);
          logitsDiff = bump(logitsDiff, { d, n });
        } else {
          const V = g.shape[2]!;
          logitsDiff = bump(logitsDiff, diffTokens(out, g.data, b * S * V, real, real, V));
        }
      }
      if (gc.logitsAtPositions && out && positions) {
        const V = gc.logitsAtPositions.shape[1]!;
        logitsDiff = bump(
          logitsDiff,
          diffTokens(
            out,
            gc.logitsAtPositions.data,
            0,
            positions.map((_, i) => i),
            positions.map((_, i) => i),
            V,
          ),
        );
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
        hiddenDiff = bump(
          hiddenDiff,
          diffTokens(last, gc.lastHiddenState.data, 0, real, real, gc.lastHiddenState.shape[1]!),
        );
      }
      if (last && gc.lastHiddenStateAtPositions && gc.positions) {
        const g = gc.lastHiddenStateAtPositions;
        hiddenDiff = bump(
          hiddenDiff,
          diffTokens(
            last,
            g.data,
            0,
            gc.positions.map((_, i) => i),
            gc.positions,
            g.shape[1]!,
          ),
        );
      }
    }
    if (caseCompared === 0) {
      throw new ModernBertError(
        'BAD_INPUT',
        `golden case "${gc.name}" compares nothing: it needs logits or hidden states (that this model produces) and at least one row with a real token (batch ${B}, attention_mask all 0 counts as none)`,
        { case: gc.name },
      );
    }
    compared += caseCompared;
    reports.push({ name: gc.name, logits: logitsDiff, hidden_states: hiddenDiff });
    onCase?.(ci + 1, cases.length);
  }
  const max = Math.max(0, ...reports.flatMap((r) => [r.logits ?? 0, r.hidden_states ?? 0]));
  return { passed: max <= atol, compared, atol, max_abs_diff: max, cases: reports };
}
