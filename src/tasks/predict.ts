// What `predict` computes, for each kind of head: fill-mask top-k, sequence labels, token labels, embeddings.

import type { Runner, Sequence } from '../run/runner.js';
import { describeLength, encodeWithin } from '../tokenizer/encode-within.js';
import { ModernBertError } from '../errors.js';
import { assertFinite } from '../numeric/finite.js';
import type { RtTensor } from '../runtime/tensor.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

export interface TopToken {
  token: string;
  id: number;
  prob: number;
}

export interface MaskPrediction {
  position: number;
  top: TopToken[];
}

export interface LabelScore {
  label: string;
  prob: number;
}

export interface TokenLabel {
  position: number;
  token: string;
  label: string;
  prob: number;
}

/** Softmax of n values read with a stride (a (1, V, 1, S) column has stride S). */
export function softmaxColumn(data: ArrayLike<number>, n: number, offset = 0, stride = 1): Float64Array {
  const p = new Float64Array(n);
  let m = -Infinity;
  for (let i = 0; i < n; i++) m = Math.max(m, data[offset + i * stride]!);
  let s = 0;
  for (let i = 0; i < n; i++) s += p[i] = Math.exp(data[offset + i * stride]! - m);
  for (let i = 0; i < n; i++) p[i]! /= s;
  return p;
}

/** Indices of the k largest values, largest first. */
export function topK(p: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: p.length }, (_, i) => i);
  return idx.sort((a, b) => p[b]! - p[a]!).slice(0, Math.min(k, p.length));
}

/** Tokenizes text (no more of it than the model takes: encode-within.ts) and checks its length against the model. */
export function encodeText(tok: Tokenizer, text: string, maxLen: number): Sequence & { ids: number[] } {
  const e = encodeWithin(tok, text, maxLen);
  if (e.ids.length > maxLen) {
    throw new ModernBertError('BAD_INPUT', `the text is ${describeLength(e, maxLen)} tokens long but the model allows at most ${maxLen}`, { max: maxLen });
  }
  return { ids: e.ids };
}

const display = (tok: Tokenizer, id: number) => tok.decode([id], { skipSpecialTokens: false }).trim();

/** Top-k tokens at every [MASK] of the text. */
export async function fillMask(runner: Runner, tok: Tokenizer, text: string, k: number, maxLen: number): Promise<MaskPrediction[]> {
  const maskId = tok.maskTokenId;
  if (maskId === undefined) throw new ModernBertError('BAD_INPUT', 'the tokenizer has no [MASK] token');
  const seq = encodeText(tok, text, maxLen);
  const positions = seq.ids.flatMap((id, i) => (id === maskId ? [i] : []));
  if (positions.length === 0) {
    throw new ModernBertError('BAD_INPUT', `the text has no ${tok.idToToken(maskId) ?? '[MASK]'} token to fill: ${JSON.stringify(text)}`);
  }
  const res = await runner.forward(seq, { positions });
  const logits = output(res.outputs, 'logits');
  const V = logits.shape[1]!;
  const P = logits.shape[3]!;
  return positions.map((position, j) => {
    const p = softmaxColumn(logits.data, V, j, P);
    return { position, top: topK(p, k).map((id) => ({ token: display(tok, id), id, prob: p[id]! })) };
  });
}

/** Label probabilities of a sequence-classification model, most likely first. */
export async function classify(runner: Runner, tok: Tokenizer, text: string, labels: string[], maxLen: number): Promise<LabelScore[]> {
  const res = await runner.forward(encodeText(tok, text, maxLen));
  const logits = output(res.outputs, 'logits');
  const p = softmaxColumn(logits.data, labels.length);
  return topK(p, labels.length).map((i) => ({ label: labels[i]!, prob: p[i]! }));
}

/** The most likely label of every token (special tokens included, as the model sees them). */
export async function labelTokens(runner: Runner, tok: Tokenizer, text: string, labels: string[], maxLen: number): Promise<TokenLabel[]> {
  const seq = encodeText(tok, text, maxLen);
  const res = await runner.forward(seq);
  const logits = output(res.outputs, 'logits');
  const S = logits.shape[3]!;
  return seq.ids.map((id, s) => {
    const p = softmaxColumn(logits.data, labels.length, s, S);
    const best = topK(p, 1)[0]!;
    return { position: s, token: tok.idToToken(id) ?? String(id), label: labels[best]!, prob: p[best]! };
  });
}

/** The pooled sentence embedding. */
export async function embed(runner: Runner, tok: Tokenizer, text: string, maxLen: number): Promise<number[]> {
  const res = await runner.forward(encodeText(tok, text, maxLen), { head: 'embedding' });
  return Array.from(output(res.outputs, 'embedding').data);
}

/** The output `name`, all of it finite (numeric/finite.ts). */
function output(outputs: Map<string, RtTensor>, name: string): RtTensor {
  const t = outputs.get(name);
  if (!t) throw new ModernBertError('BAD_INPUT', `the model has no "${name}" output (it has: ${[...outputs.keys()].join(', ')})`);
  assertFinite(t.data, `the model's "${name}" output`, t.shape);
  return t;
}
