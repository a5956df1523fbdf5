// Reading the engine's (1, C, 1, S) outputs token by token, and comparing them with references.

import { expect } from 'vitest';
import { ModernBertError, type ErrorCode } from '../../src/errors.js';
import type { RtTensor } from '../../src/runtime/tensor.js';
import type { GoldenCase } from '../../src/eval/golden.js';
import type { Tensor, WeightSource } from '../../src/io/weights.js';

/** Channel vector of token `s` of a (1, C, 1, S) tensor. */
export function tokenColumn(t: RtTensor, s: number): Float64Array {
  const C = t.shape[1]!;
  const S = t.shape[3]!;
  return Float64Array.from({ length: C }, (_, c) => Number(t.data[c * S + s]));
}

/** Max |a - b| over tokens of a (1, C, 1, S) tensor against per-token reference vectors. */
export function maxDiffTokens(ours: RtTensor, ref: ArrayLike<number>[], tokens: number[]): number {
  let d = 0;
  for (const s of tokens) {
    const col = tokenColumn(ours, s);
    expect(col.length).toBe(ref[s]!.length);
    for (let c = 0; c < col.length; c++) d = Math.max(d, Math.abs(col[c]! - ref[s]![c]!));
  }
  return d;
}

/** Max |a - b| of two equally long vectors. */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/** Row `b` of a golden case: ids, attention and the indices of real tokens. */
export function goldenRow(
  gc: GoldenCase,
  b: number,
): { ids: Int32Array; attention: Int32Array | undefined; real: number[] } {
  const S = gc.inputIds.shape[1];
  const ids = gc.inputIds.data.subarray(b * S, (b + 1) * S);
  const attention = gc.attentionMask?.subarray(b * S, (b + 1) * S);
  const real = Array.from({ length: S }, (_, s) => s).filter((s) => !attention || attention[s] === 1);
  return { ids, attention, real };
}

/** Hidden state i, row b of a golden case as per-token vectors ([L+1, B, S, H]). */
export function goldenHidden(gc: GoldenCase, i: number, b: number): Float32Array[] {
  const h = gc.hiddenStates!;
  const [, B, S, H] = h.shape as [number, number, number, number];
  const base = (i * B + b) * S * H;
  return Array.from({ length: S }, (_, s) => h.data.subarray(base + s * H, base + (s + 1) * H));
}

/** A weight lookup for the reference implementation (each tensor read once). */
export function lookup(w: WeightSource): (name: string) => Tensor | undefined {
  const cache = new Map<string, Tensor | undefined>();
  return (name) => {
    if (!cache.has(name)) cache.set(name, w.has(name) ? w.get(name) : undefined);
    return cache.get(name);
  };
}

/** Runs `f` (sync or async) and returns the ModernBertError it throws, checking its code. */
export async function expectError(f: () => unknown, code: ErrorCode): Promise<ModernBertError> {
  let err: unknown;
  try {
    await f();
  } catch (e) {
    err = e;
  }
  expect(err, `expected a ModernBertError ${code}`).toBeInstanceOf(ModernBertError);
  expect((err as ModernBertError).code, (err as Error).message).toBe(code);
  return err as ModernBertError;
}
