// The batch path of `embed` and `predict --input`: tokenize every text, pack them first-fit-decreasing into
// windows (several texts per forward pass, model/packing.ts), run each window, and split its output back
// into one result per text, in input order.

import type { ForwardResult } from '../run/runner.js';
import { describeLength, encodeWithin } from '../tokenizer/encode-within.js';
import { ModernBertError } from '../errors.js';
import { assertFinite, firstNonFinite, nonFiniteError } from '../numeric/finite.js';
import { formatBytes, MAX_RESULT_BYTES } from '../io/limits.js';
import type { LoadedModel } from '../run/load.js';
import type { OutputHead } from '../model/options.js';
import type { RtTensor } from '../runtime/tensor.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { InputText } from './batch-input.js';
import { packTexts, type PackedWindow } from '../model/pack-texts.js';
import { softmaxColumn, topK, type LabelScore, type MaskPrediction, type TokenLabel } from './predict.js';

/** Default window of checkpoints (the reference project's length), shortened to what the model takes. */
export const DEFAULT_WINDOW = 512;
/** Default texts per window of checkpoints: room for 64 texts of 8 tokens in 512. */
export const DEFAULT_PACK = 64;

export interface BatchOptions {
  /** 'embed': the pooled embedding; 'predict': what the model's head gives (fill-mask, labels, token labels). */
  task: 'embed' | 'predict';
  /** Tokens per window (checkpoints: DEFAULT_WINDOW; packages: their length). */
  window?: number;
  /** Most texts per window (checkpoints: DEFAULT_PACK; packages: their --pack, 1 when unpacked). */
  pack?: number;
  /** Cut texts longer than the window (keeping their last special token) instead of failing. */
  truncate?: boolean;
  /** Prepended to every text (sentence-transformers prompts such as "search_query: "). */
  prefix?: string;
  /** Tokens listed per [MASK]. */
  topK?: number;
  /** Called after each window with the texts done so far. */
  onProgress?: (done: number, total: number) => void;
}

/** One text's result: an embedding, or the head's prediction. */
export type BatchResult =
  | { index: number; embedding: Float32Array }
  | { index: number; masks: MaskPrediction[] }
  | { index: number; labels: LabelScore[] }
  | { index: number; tokens: TokenLabel[] };

export interface BatchStats {
  texts: number;
  windows: number;
  window: number;
  textsPerWindow: number;
  tokens: number;
  /** Real tokens over window slots run. */
  fill: number;
  seconds: number;
}

/** Runs one window and returns the model's outputs: the one step that a runtime plugs into. */
export type RunWindow = (w: PackedWindow, positions?: number[]) => Promise<ForwardResult>;

/** Resolves the window and texts per window for a model, refusing what its graph cannot take. */
export function batchShape(model: LoadedModel, o: Pick<BatchOptions, 'window' | 'pack'>): { window: number; pack: number; packed: boolean } {
  if (model.kind === 'checkpoint') {
    const window = o.window ?? Math.min(DEFAULT_WINDOW, model.maxLen);
    if (window > model.maxLen) throw new ModernBertError('BAD_ARGUMENT', `--window ${window} is longer than the model allows (max_position_embeddings ${model.maxLen})`);
    return { window, pack: Math.min(o.pack ?? DEFAULT_PACK, window), packed: true };
  }
  const window = o.window ?? model.maxLen;
  if (window > model.maxLen) throw new ModernBertError('BAD_ARGUMENT', `--window ${window} is longer than ${model.path} takes (${model.maxLen} tokens)`);
  if (model.pack === undefined) {
    if (o.pack !== undefined && o.pack > 1) throw new ModernBertError('BAD_ARGUMENT', `${model.path} runs one text per window: convert it with --pack ${o.pack} to pack texts`);
    return { window, pack: 1, packed: false };
  }
  if (o.pack !== undefined && o.pack > model.pack) throw new ModernBertError('BAD_ARGUMENT', `--pack ${o.pack}: ${model.path} was converted with --pack ${model.pack}`);
  return { window, pack: o.pack ?? model.pack, packed: true };
}

/** A model's RunWindow: packed windows with segment ids, or one unpadded text for unpacked packages. */
export function windowRunner(model: LoadedModel, head: OutputHead, pack: number, packed: boolean, texts: readonly (readonly number[])[]): RunWindow {
  const runner = model.runner;
  if (!packed) return (w, positions) => runner.forward({ ids: texts[w.texts[0]!]! }, { head, positions });
  return (w, positions) => runner.forward({ ids: w.ids, segments: w.segments }, { head, positions, pack });
}

/** Tokenizes, packs and runs every text; results come back in input order. */
export async function runBatch(model: LoadedModel, tok: Tokenizer, inputs: readonly InputText[], o: BatchOptions): Promise<{ results: BatchResult[]; stats: BatchStats }> {
  const { window } = batchShape(model, o);
  const head = batchHead(model, o.task);
  const texts = inputs.map((t) => encode(tok, (o.prefix ?? '') + t.text, t.line, window, Boolean(o.truncate)));
  const masks = head === 'mlm' ? texts.map((ids, i) => maskPositions(tok, ids, inputs[i]!.line)) : [];
  return runTokenized(model, texts, masks, o, tok, (t) => `line ${inputs[t]!.line}`);
}

function batchHead(model: LoadedModel, task: BatchOptions['task']): OutputHead {
  const head: OutputHead = task === 'embed' ? 'embedding' : model.head;
  if (task === 'predict' && (head === 'embedding' || head === 'none')) {
    throw new ModernBertError('BAD_ARGUMENT', `${model.path} has the ${head} head: use embed for embeddings`);
  }
  return head;
}

/**
 * Packs and runs tokenized texts (each at most the window long; `masks`: a masked LM's [MASK] positions
 * per text). Without a tokenizer (benchmarks) mlm tokens are listed by id. A result that is not finite is an
 * error naming its text (`label`).
 */
export async function runTokenized(model: LoadedModel, texts: readonly number[][], masks: readonly number[][], o: BatchOptions, tok?: Tokenizer, label = (t: number) => `text ${t + 1}`): Promise<{ results: BatchResult[]; stats: BatchStats }> {
  const t0 = performance.now();
  const { window, pack, packed } = batchShape(model, o);
  const head = batchHead(model, o.task);
  const windows = packTexts(texts, window, pack, model.ids.special[0]!);
  const run = windowRunner(model, head, pack, packed, texts);
  const results: BatchResult[] = new Array(texts.length);
  let store: Float32Array | undefined;
  let done = 0;
  for (const w of windows) {
    // A masked LM is evaluated only at the [MASK] positions of the window's texts.
    const at = head === 'mlm' ? w.texts.flatMap((t, k) => masks[t]!.map((p) => (packed ? w.starts[k]! : 0) + p)) : undefined;
    const out = await run(w, at);
    let col = 0;
    w.texts.forEach((t, k) => {
      const start = packed ? w.starts[k]! : 0;
      const r = textResult(out, head, t, k, start, texts[t]!, masks[t] ?? [], col, model, o.topK ?? 5, label(t), tok);
      if ('embedding' in r) {
        // Every embedding in one buffer, in input order (a million small arrays cost several times their values).
        const C = r.embedding.length;
        if (!store) {
          checkResultBytes(r, texts.length);
          store = new Float32Array(texts.length * C);
        }
        store.set(r.embedding, t * C);
        r.embedding = store.subarray(t * C, (t + 1) * C);
      }
      results[t] = r;
      col += masks[t]?.length ?? 0;
    });
    done += w.texts.length;
    o.onProgress?.(done, texts.length);
  }
  const tokens = texts.reduce((s, t) => s + t.length, 0);
  return {
    results,
    stats: { texts: texts.length, windows: windows.length, window, textsPerWindow: pack, tokens, fill: tokens / (windows.length * window), seconds: (performance.now() - t0) / 1000 },
  };
}

// Only as much of a long text is tokenized as the window needs (encode-within.ts).
/** Refuses, at the first embedding, a run whose embeddings would outgrow MAX_RESULT_BYTES (io/limits.ts). */
export function checkResultBytes(first: BatchResult, texts: number): void {
  if (!('embedding' in first)) return;
  const bytes = texts * first.embedding.length * 4;
  if (bytes > MAX_RESULT_BYTES) {
    throw new ModernBertError('BAD_INPUT', `${texts} texts of ${first.embedding.length} values each would hold ${formatBytes(bytes)} of embeddings, more than the ${formatBytes(MAX_RESULT_BYTES)} one run may: split the input`, { texts });
  }
}

function encode(tok: Tokenizer, text: string, line: number, window: number, truncate: boolean): number[] {
  const e = encodeWithin(tok, text, window);
  const { ids } = e;
  if (ids.length <= window) return ids;
  if (!truncate) throw new ModernBertError('BAD_INPUT', `line ${line}: the text is ${describeLength(e, window)} tokens long, more than the window of ${window} (give --truncate to cut it)`, { line });
  return [...ids.slice(0, window - 1), ids[ids.length - 1]!]; // keeps the closing [SEP]
}

function maskPositions(tok: Tokenizer, ids: number[], line: number): number[] {
  const mask = tok.maskTokenId;
  if (mask === undefined) throw new ModernBertError('BAD_INPUT', 'the tokenizer has no [MASK] token');
  const at = ids.flatMap((id, i) => (id === mask ? [i] : []));
  if (at.length === 0) throw new ModernBertError('BAD_INPUT', `line ${line}: the text has no ${tok.idToToken(mask) ?? '[MASK]'} token to fill`, { line });
  return at;
}

// Text t, the k-th of its window (segment k + 1) starting at `start`: its row of a pooled output, or its
// columns of a per-token one (masked LMs: columns col.. of the gathered [MASK] positions).
function textResult(out: ForwardResult, head: OutputHead, index: number, k: number, start: number, ids: readonly number[], masks: readonly number[], col: number, model: LoadedModel, topk: number, label: string, tok?: Tokenizer): BatchResult {
  const [name, t] = [...out.outputs.entries()][0]!;
  const display = (id: number) => tok?.decode([id], { skipSpecialTokens: false }).trim() ?? String(id);
  const what = `${label}: the model's "${name}" output`;
  // Only the values that become this text's result are checked (padding may hold anything).
  const finiteColumn = (n: number, column: number, stride: number, where: string): void => {
    const bad = firstNonFinite(t.data, n, column, stride);
    if (bad >= 0) throw nonFiniteError(what, t.data[column + bad * stride]!, `${where}, channel ${bad}`);
  };
  switch (head) {
    case 'embedding': {
      const row = pooledRow(t, k);
      assertFinite(row, what);
      return { index, embedding: row };
    }
    case 'seqcls': {
      const row = pooledRow(t, k);
      assertFinite(row, what);
      const p = softmaxColumn(row, model.labels.length);
      return { index, labels: topK(p, model.labels.length).map((i) => ({ label: model.labels[i]!, prob: p[i]! })) };
    }
    case 'mlm': {
      const [V, P] = [t.shape[1]!, t.shape[3]!];
      return {
        index,
        masks: masks.map((position, j) => {
          finiteColumn(V, col + j, P, `at [MASK] token ${position}`);
          const p = softmaxColumn(t.data, V, col + j, P);
          return { position, top: topK(p, topk).map((id) => ({ token: display(id), id, prob: p[id]! })) };
        }),
      };
    }
    default: {
      const S = t.shape[3]!;
      return {
        index,
        tokens: ids.map((id, s) => {
          finiteColumn(model.labels.length, start + s, S, `at token ${s}`);
          const p = softmaxColumn(t.data, model.labels.length, start + s, S);
          const best = topK(p, 1)[0]!;
          return { position: s, token: tok?.idToToken(id) ?? String(id), label: model.labels[best]!, prob: p[best]! };
        }),
      };
    }
  }
}

/** Row k of a packed (1, K, N) output, or the whole of an unpacked (1, N) one. */
function pooledRow(t: RtTensor, k: number): Float32Array {
  if (t.shape.length === 2) return Float32Array.from(t.data);
  const N = t.shape[2]!;
  return Float32Array.from(t.data.subarray(k * N, (k + 1) * N));
}
