// Results that are NaN or infinite are errors, never printed: JSON would show them as null, a table as "NaN",
// and both would exit 0. One check, used wherever a model's output becomes a result (predict, embed, diff,
// outliers, the fidelity report), on every runtime, names where the first such value is.

import { ModernBertError } from '../errors.js';

/** What usually makes a model's output non-finite. */
const CAUSE = 'the model overflowed (float16 holds at most 65504) or its weights are not finite; no result was given';

/** The first k < n with data[offset + k * stride] NaN or infinite, or -1. */
export function firstNonFinite(data: ArrayLike<number>, n = data.length, offset = 0, stride = 1): number {
  for (let k = 0; k < n; k++) if (!Number.isFinite(data[offset + k * stride]!)) return k;
  return -1;
}

/** Index `i` of a row-major array of `shape` as "[a, b, c]". */
function indexIn(i: number, shape: readonly number[]): string {
  const at: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    const n = shape[d]!;
    at.unshift(n > 0 ? i % n : 0);
    i = n > 0 ? Math.floor(i / n) : 0;
  }
  return `[${at.join(', ')}]`;
}

/** The error (NON_FINITE: exit 1) for `what` holding `value` `where` ("at [0, 3]", "at token 5, channel 17"), and its `cause`. */
export function nonFiniteError(what: string, value: number, where: string, cause = CAUSE): ModernBertError {
  return new ModernBertError('NON_FINITE', `${what} holds ${value} ${where}: ${cause}`, { value: String(value) });
}

/** Throws nonFiniteError when `data` (of `shape`) holds NaN or infinity. */
export function assertFinite(
  data: ArrayLike<number>,
  what: string,
  shape: readonly number[] = [data.length],
  cause = CAUSE,
): void {
  const i = firstNonFinite(data);
  if (i >= 0) throw nonFiniteError(what, data[i]!, `(first at ${indexIn(i, shape)} of [${shape.join(', ')}])`, cause);
}
