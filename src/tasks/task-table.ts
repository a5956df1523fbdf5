// The one table of tasks, as transformers.js's SUPPORTED_TASKS: for each task, the head it reads and how one
// text's share of a window's output becomes its result (and, for the command line, its lines of text). The
// library's pipeline(), `predict`, `predict --input` and `embed` all run through it (tasks/batch.ts).

import { ModernBertError } from '../errors.js';
import type { EmbeddingSpec } from '../model/checkpoint.js';
import type { OutputHead } from '../model/options.js';
import type { LoadedModel } from '../run/load.js';
import type { RtTensor } from '../runtime/tensor.js';
import type { Span } from '../tokenizer/offsets.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { aggregate, isSubword, type ScoredToken } from './entities.js';
import type {
  AggregationStrategy,
  EntityGroup,
  FillMaskItem,
  Pooling,
  TaskName,
  TextClassificationItem,
  TokenClassificationItem,
} from './results.js';

/** One text as a batch runs it: its ids (special tokens included) and, when the task needs them, their spans. */
export interface EncodedText {
  /** The text as given (without a batch prefix). */
  text: string;
  ids: number[];
  /** Each id's span in `text` (a prefix's tokens start below 0); only for tasks that ask for spans. */
  offsets?: Span[];
}

/** Where one text's values are in its window's output. */
export interface TextView {
  text: EncodedText;
  /** The head's output: (1, C, 1, S) per token, (1, C) or packed (1, K, C) pooled, (1, V, 1, P) at positions. */
  output: RtTensor;
  /** The text's row of a packed pooled output (its segment k + 1). */
  row: number;
  /** The text's first column of a per-token output. */
  start: number;
  /** The first column of the text's evaluated positions (fill-mask). */
  column: number;
}

/** How one call runs a task on a model: the head, the forward options it adds, and the reading of each text. */
export interface TaskPlan<R> {
  head: OutputHead;
  /** How the embedding head pools (feature-extraction on a checkpoint). */
  embedding?: EmbeddingSpec;
  /** Whether texts are encoded with their spans. */
  offsets: boolean;
  /** Positions evaluated per text (fill-mask: its [MASK] tokens); absent: every token. */
  positions?: (text: EncodedText, label: string) => number[];
  read(view: TextView): R;
}

/** The options of each task's call, in transformers' names. */
export interface FillMaskOptions {
  /** Candidates per [MASK] (default 5). */
  top_k?: number;
}
export interface TextClassificationOptions {
  /** Labels to return, most likely first (default 1; null: all). */
  top_k?: number | null;
}
export interface TokenClassificationOptions {
  /** How tokens are grouped into entities (default 'none': one result per token). */
  aggregation_strategy?: AggregationStrategy;
  /** Labels left out of the results (default ['O']). */
  ignore_labels?: string[];
}
export interface FeatureExtractionOptions {
  /** 'mean' or 'cls' (default: the model's own, mean unless its sentence-transformers config says cls), or 'none'. */
  pooling?: Pooling;
  /** Scale each vector to unit length (default: as the model's own config says). */
  normalize?: boolean;
}

/** Each task's options and its result for one text. */
export interface TaskTypes {
  'fill-mask': { options: FillMaskOptions; result: FillMaskItem[] };
  'text-classification': { options: TextClassificationOptions; result: TextClassificationItem[] };
  'token-classification': { options: TokenClassificationOptions; result: TokenClassificationItem[] | EntityGroup[] };
  /** A pooled vector (C values), or with pooling 'none' one vector per token ([T, C], row-major). */
  'feature-extraction': { options: FeatureExtractionOptions; result: Float32Array };
}

/** A task: the head it needs, its plan for a model, and its text form (the command line's). */
export interface TaskSpec<T extends TaskName> {
  name: T;
  /** The head a model (or a package's function) must have; feature-extraction takes any checkpoint. */
  head: OutputHead;
  plan(model: LoadedModel, tok: Tokenizer, o: TaskTypes[T]['options']): TaskPlan<TaskTypes[T]['result']>;
  format(result: TaskTypes[T]['result']): string;
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

/** Row k of a packed (1, K, N) output, or the whole of an unpacked (1, N) one. */
export function pooledRow(t: RtTensor, k: number): Float32Array {
  if (t.shape.length === 2) return Float32Array.from(t.data);
  const N = t.shape[2]!;
  return Float32Array.from(t.data.subarray(k * N, (k + 1) * N));
}

/** Scales each run of n values to unit length (a zero vector stays zero). */
function normalizeRows(v: Float32Array, n: number): Float32Array {
  for (let at = 0; at < v.length; at += n) {
    let s = 0;
    for (let i = at; i < at + n; i++) s += v[i]! * v[i]!;
    const norm = Math.sqrt(s);
    if (norm > 0) for (let i = at; i < at + n; i++) v[i]! /= norm;
  }
  return v;
}

/** The checkpoint's or package's head must be `head` for this task. */
function needHead(model: LoadedModel, task: TaskName, head: OutputHead, what: string): void {
  const has = model.kind === 'checkpoint' ? model.config!.head : model.head;
  if (has !== head)
    throw new ModernBertError('BAD_ARGUMENT', `${model.path} has the ${model.head} head; ${task} needs ${what}`, {
      task,
      head: model.head,
    });
}

const fillMask: TaskSpec<'fill-mask'> = {
  name: 'fill-mask',
  head: 'mlm',
  plan(model, tok, o) {
    needHead(model, 'fill-mask', 'mlm', 'a masked language model (ModernBertForMaskedLM)');
    const mask = tok.maskTokenId;
    if (mask === undefined) throw new ModernBertError('BAD_INPUT', 'the tokenizer has no [MASK] token');
    const k = o.top_k ?? 5;
    return {
      head: 'mlm',
      offsets: false,
      positions: (t, label) => {
        const at = t.ids.flatMap((id, i) => (id === mask ? [i] : []));
        if (at.length === 0)
          throw new ModernBertError(
            'BAD_INPUT',
            `${label}: the text has no ${tok.idToToken(mask) ?? '[MASK]'} token to fill: ${JSON.stringify(t.text.slice(0, 200))}`,
          );
        return at;
      },
      read: ({ text, output, column }) => {
        const [V, P] = [output.shape[1]!, output.shape[3]!];
        const masks = text.ids.flatMap((id, i) => (id === mask ? [i] : []));
        return masks.flatMap((position, j) => {
          const p = softmaxColumn(output.data, V, column + j, P);
          return topK(p, k).map((id) => {
            const filled = text.ids.slice();
            filled[position] = id;
            return {
              score: p[id]!,
              token: id,
              token_str: tok.decode([id], { skipSpecialTokens: false }),
              sequence: tok.decode(filled),
              mask: j,
            };
          });
        });
      },
    };
  },
  format: (items) => {
    const masks = new Set(items.map((r) => r.mask)).size;
    return items
      .map(
        (r, i) =>
          `${i === 0 || items[i - 1]!.mask !== r.mask ? `[MASK]${masks > 1 ? ` ${r.mask + 1} of ${masks}` : ''}:\n` : ''}  ${JSON.stringify(r.token_str.trim()).padEnd(20)} ${r.score.toFixed(4)}\n`,
      )
      .join('');
  },
};

const textClassification: TaskSpec<'text-classification'> = {
  name: 'text-classification',
  head: 'seqcls',
  plan(model, _tok, o) {
    needHead(model, 'text-classification', 'seqcls', 'a sequence classifier (ModernBertForSequenceClassification)');
    const labels = model.labels;
    const k = o.top_k === null ? labels.length : (o.top_k ?? 1);
    return {
      head: 'seqcls',
      offsets: false,
      read: ({ output, row }) => {
        const p = softmaxColumn(pooledRow(output, row), labels.length);
        return topK(p, k).map((i) => ({ label: labels[i]!, score: p[i]! }));
      },
    };
  },
  format: (items) => items.map((l) => `${l.label.padEnd(20)} ${l.score.toFixed(4)}\n`).join(''),
};

const tokenClassification: TaskSpec<'token-classification'> = {
  name: 'token-classification',
  head: 'tokcls',
  plan(model, tok, o) {
    needHead(model, 'token-classification', 'tokcls', 'a token classifier (ModernBertForTokenClassification)');
    const labels = model.labels;
    return {
      head: 'tokcls',
      offsets: true,
      read: ({ text, output, start }) => {
        const S = output.shape[3]!;
        const tokens: ScoredToken[] = [];
        text.ids.forEach((id, s) => {
          const [a, b] = text.offsets![s]!;
          // [CLS], [SEP], tokens of a batch prefix, and a token of spaces only (its span is empty: it labels no text).
          if (tok.isSpecial(id) || a < 0 || b <= a) return;
          const unknown = id === tok.unkTokenId;
          tokens.push({
            index: s,
            scores: softmaxColumn(output.data, labels.length, start + s, S),
            start: a,
            end: b,
            isSubword: !unknown && isSubword(text.text, a),
          });
        });
        return aggregate(text.text, tokens, labels, o.aggregation_strategy ?? 'none', o.ignore_labels);
      },
    };
  },
  format: (items) =>
    items
      .map(
        (e) =>
          `${JSON.stringify(e.word).padEnd(20)} ${('entity' in e ? e.entity : e.entity_group).padEnd(12)} ${e.score.toFixed(4)} [${e.start}, ${e.end})\n`,
      )
      .join(''),
};

const featureExtraction: TaskSpec<'feature-extraction'> = {
  name: 'feature-extraction',
  head: 'embedding',
  plan(model, _tok, o) {
    const pooling = o.pooling ?? 'model';
    if (pooling === 'none' || (model.kind === 'package' && model.head === 'none')) {
      if (model.kind === 'package' && model.head !== 'none')
        throw new ModernBertError(
          'BAD_ARGUMENT',
          `pooling 'none' reads every token's vector: ${model.path} has the ${model.head} head, not a body package (convert --head none, or --split)`,
        );
      return tokenVectors(pooling === 'model' ? 'mean' : pooling, Boolean(o.normalize));
    }
    if (model.kind === 'package') {
      if (model.head !== 'embedding')
        throw new ModernBertError(
          'BAD_ARGUMENT',
          `${model.path} has the ${model.head} head; feature-extraction needs an embedding package (convert --head embedding) or a checkpoint`,
          { head: model.head },
        );
      if (o.pooling !== undefined)
        throw new ModernBertError(
          'BAD_ARGUMENT',
          `${model.path} pools as it was converted: leave out pooling (or convert the checkpoint again)`,
        );
      return pooled(undefined, Boolean(o.normalize));
    }
    // A checkpoint pools in its graph, as `embed` does: its sentence-transformers pooling, else mean.
    const own = model.embedding ?? { pooling: 'mean', normalize: false };
    return pooled(
      { pooling: pooling === 'model' ? own.pooling : pooling, normalize: o.normalize ?? own.normalize },
      false,
    );
  },
  format: (v) => `${Array.from(v, (x) => x.toFixed(6)).join(' ')}\n`,
};

/** The embedding head's row per text, normalized here when the graph does not (packages). */
function pooled(embedding: EmbeddingSpec | undefined, normalize: boolean): TaskPlan<Float32Array> {
  return {
    head: 'embedding',
    ...(embedding ? { embedding } : {}),
    offsets: false,
    read: ({ output, row }) => {
      const v = pooledRow(output, row);
      return normalize ? normalizeRows(v, v.length) : v;
    },
  };
}

/** The last hidden state, pooled here: per token ([T, C]), mean or cls. */
function tokenVectors(pooling: Pooling, normalize: boolean): TaskPlan<Float32Array> {
  return {
    head: 'none',
    offsets: false,
    read: ({ text, output, start }) => {
      const [C, S] = [output.shape[1]!, output.shape[3]!];
      const T = text.ids.length;
      const at = (t: number, c: number) => output.data[c * S + start + t]!;
      let v: Float32Array;
      if (pooling === 'none') {
        v = new Float32Array(T * C);
        for (let t = 0; t < T; t++) for (let c = 0; c < C; c++) v[t * C + c] = at(t, c);
      } else if (pooling === 'cls') {
        v = Float32Array.from({ length: C }, (_, c) => at(0, c));
      } else {
        v = Float32Array.from({ length: C }, (_, c) => {
          let s = 0;
          for (let t = 0; t < T; t++) s += at(t, c);
          return s / T;
        });
      }
      return normalize ? normalizeRows(v, C) : v;
    },
  };
}

/** Every task, by name. */
export const TASKS: { [T in TaskName]: TaskSpec<T> } = {
  'fill-mask': fillMask,
  'text-classification': textClassification,
  'token-classification': tokenClassification,
  'feature-extraction': featureExtraction,
};

/** The task whose results a head gives (`predict` runs a model's own head). */
export function taskOfHead(head: OutputHead): TaskName {
  const task = (Object.values(TASKS) as TaskSpec<TaskName>[]).find((t) => t.head === head);
  return task?.name ?? 'feature-extraction';
}
