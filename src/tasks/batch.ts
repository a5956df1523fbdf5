// Running a task on many texts: tokenize every text, pack them first-fit-decreasing into windows (several
// texts per forward pass, model/packing.ts), run each window, and read each text's share of the output with
// the task's plan (task-table.ts), in input order. One text is a batch of one.

import type { ForwardResult } from '../run/runner.js';
import { ModernBertError } from '../errors.js';
import type { LoadedModel } from '../run/load.js';
import type { OutputHead } from '../model/options.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { prefersOnePerPass } from '../run/runtime-cost.js';
import { DEFAULT_PACK, DEFAULT_WINDOW, packBlocks, packTexts, type PackedWindow } from '../model/pack-texts.js';
import { blockSizes } from '../model/blocked.js';
import { describeLength, encodeWithin } from '../tokenizer/encode-within.js';
import { firstNonFinite, nonFiniteError } from '../numeric/finite.js';
import { formatBytes, MAX_RESULT_BYTES } from '../io/limits.js';
import type { RtTensor } from '../runtime/tensor.js';
import type { EncodedText, TaskPlan } from './task-table.js';

export { DEFAULT_PACK, DEFAULT_WINDOW } from '../model/pack-texts.js';

export interface BatchOptions {
  /** Tokens per window (checkpoints: DEFAULT_WINDOW; packages: their length). */
  window?: number;
  /** Most texts per window (checkpoints: DEFAULT_PACK; packages: their --pack, 1 when unpacked). */
  pack?: number;
  /** Cut texts longer than the window (keeping their last special token) instead of failing. */
  truncate?: boolean;
  /** Prepended to every text (sentence-transformers prompts such as "search_query: "). */
  prefix?: string;
  /** Names text i in messages (default "text i+1"; the commands name lines of their input file). */
  label?: (i: number) => string;
  /** Called after each window with the texts done so far. */
  onProgress?: (done: number, total: number) => void;
}

export interface BatchStats {
  texts: number;
  /** Forward passes: packed windows, or one per text ('single'). */
  windows: number;
  /**
   * 'packed': several texts per window; 'blocks': packed with each text inside one block, every layer
   * attending within blocks (short texts on checkpoints, model/blocked.ts); 'single': one text per pass at its
   * own length (runtime-cost.ts prefersOnePerPass).
   */
  strategy: 'packed' | 'blocks' | 'single';
  window: number;
  textsPerWindow: number;
  tokens: number;
  /** Real tokens over window slots run. */
  fill: number;
  seconds: number;
}

/** Runs one window and returns the model's outputs: the one step that a runtime plugs into. */
export type RunWindow = (w: PackedWindow, positions?: number[]) => Promise<ForwardResult>;

/**
 * The longest text a model takes in a batch (`limit`), and whether and how many texts share a window. A
 * checkpoint's window is `window` when given, else sized to the texts (windowFor); a package's is its length.
 */
export function batchShape(
  model: LoadedModel,
  o: Pick<BatchOptions, 'window' | 'pack'>,
): { limit: number; pack: number; packed: boolean } {
  if (model.kind === 'checkpoint') {
    const limit = o.window ?? model.maxLen;
    if (limit > model.maxLen)
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `\`window: ${limit}\` is longer than the model allows (max_position_embeddings ${model.maxLen})`,
        { option: 'window' },
      );
    return { limit, pack: o.pack ?? DEFAULT_PACK, packed: true };
  }
  const limit = o.window ?? model.maxLen;
  if (limit > model.maxLen)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`window: ${limit}\` is longer than ${model.path} takes (${model.maxLen} tokens)`,
      { option: 'window' },
    );
  if (model.pack === undefined) {
    if (o.pack !== undefined && o.pack > 1)
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `${model.path} runs one text per window: convert it with --pack ${o.pack} to pack texts`,
        { option: 'pack' },
      );
    return { limit, pack: 1, packed: false };
  }
  if (o.pack !== undefined && o.pack > model.pack)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`pack: ${o.pack}\`: ${model.path} was converted with --pack ${model.pack}`,
      { option: 'pack' },
    );
  return { limit, pack: o.pack ?? model.pack, packed: true };
}

/**
 * A checkpoint's window for these texts: `window` when given; else as long as the longest text, and as all of
 * them together up to DEFAULT_WINDOW (so that one short text runs at its own length, and many pack well).
 */
function windowFor(model: LoadedModel, texts: readonly EncodedText[], o: BatchOptions, limit: number): number {
  if (model.kind !== 'checkpoint' || o.window !== undefined) return limit;
  const longest = Math.max(1, ...texts.map((t) => t.ids.length));
  const total = texts.reduce((s, t) => s + t.ids.length, 0);
  return Math.min(limit, Math.max(longest, Math.min(DEFAULT_WINDOW, total)));
}

/** A model's RunWindow: packed windows with segment ids, or one unpadded text for unpacked packages. */
export function windowRunner(
  model: LoadedModel,
  plan: Pick<TaskPlan<unknown>, 'head' | 'embedding'>,
  pack: number,
  packed: boolean,
  texts: readonly EncodedText[],
  block?: number,
): RunWindow {
  const runner = model.runner;
  const head: OutputHead = plan.head;
  const extra = {
    ...(plan.embedding ? { embedding: plan.embedding } : {}),
    ...(block === undefined ? {} : { packBlocks: block }),
  };
  if (!packed) return (w, positions) => runner.forward({ ids: texts[w.texts[0]!]!.ids }, { head, positions, ...extra });
  return (w, positions) => runner.forward({ ids: w.ids, segments: w.segments }, { head, positions, pack, ...extra });
}

/**
 * A checkpoint's short texts laid out in blocks (pack-texts.ts packBlocks): when every text fits in one block
 * of half the local window, or of the whole window, each layer attends within blocks (model/blocked.ts),
 * which costs less than attention over the whole window. Its windows are the whole blocks that fit in
 * `window`; the smaller block that every text fits in.
 */
function inBlocks(
  model: LoadedModel,
  texts: readonly EncodedText[],
  window: number,
  pack: number,
): { windows: PackedWindow[]; window: number; pack: number; block: number } | undefined {
  if (model.kind !== 'checkpoint' || !model.config) return undefined;
  const longest = texts.reduce((m, t) => Math.max(m, t.ids.length), 0);
  const B = blockSizes(model.config.localWindow).find((b) => b >= longest);
  const S = B === undefined ? 0 : Math.floor(window / B) * B;
  if (B === undefined || S < B) return undefined;
  const K = Math.min(pack, S);
  const ids = texts.map((t) => t.ids);
  return { windows: packBlocks(ids, S, B, K, model.ids.special[0]!), window: S, pack: K, block: B };
}

/** Tokenizes texts for a plan: the ids (cut to `limit` tokens with `truncate`), and their spans when it asks. */
export function encodeTexts(
  tok: Tokenizer,
  texts: readonly string[],
  plan: Pick<TaskPlan<unknown>, 'offsets'>,
  limit: number,
  o: BatchOptions,
): EncodedText[] {
  const prefix = o.prefix ?? '';
  return texts.map((text, i) => {
    const full = prefix + text;
    // Only as much of a long text is tokenized as the window needs (tokenizer/encode-within.ts).
    const e = encodeWithin(tok, full, limit, (t) =>
      plan.offsets ? tok.encodeWithOffsets(t) : { ids: tok.encode(t).ids, offsets: undefined },
    );
    const offsets = e.offsets?.map(([a, b]): [number, number] => [a - prefix.length, b - prefix.length]);
    if (e.ids.length <= limit) return { text, ids: e.ids, ...(offsets ? { offsets } : {}) };
    if (!o.truncate) {
      const most =
        o.window === undefined ? ` but the model allows at most ${limit}` : `, more than the window of ${limit}`;
      throw new ModernBertError(
        'BAD_INPUT',
        `${texts.length > 1 || o.label ? `${label(o, i)}: ` : ''}the text is ${describeLength(e, limit)} tokens long${most} (give \`truncate\` to cut it)`,
        { limit },
      );
    }
    const keep = (list: readonly unknown[]) => [...list.slice(0, limit - 1), list.at(-1)]; // keeps the closing [SEP]
    return { text, ids: keep(e.ids) as number[], ...(offsets ? { offsets: keep(offsets) as [number, number][] } : {}) };
  });
}

function label(o: BatchOptions, i: number): string {
  return o.label?.(i) ?? `text ${i + 1}`;
}

/** Tokenizes, packs and runs every text; results come back in input order. */
export async function runBatch<R>(
  model: LoadedModel,
  tok: Tokenizer,
  texts: readonly string[],
  plan: TaskPlan<R>,
  o: BatchOptions = {},
): Promise<{ results: R[]; stats: BatchStats }> {
  const { limit } = batchShape(model, o);
  return runTokenized(model, encodeTexts(tok, texts, plan, limit, o), plan, o);
}

/** Packs and runs tokenized texts (each at most the window long) and reads each text's result. */
export async function runTokenized<R>(
  model: LoadedModel,
  texts: readonly EncodedText[],
  plan: TaskPlan<R>,
  o: BatchOptions = {},
): Promise<{ results: R[]; stats: BatchStats }> {
  const t0 = performance.now();
  const shape = batchShape(model, o);
  const window = windowFor(model, texts, o, shape.limit);
  // One text runs alone, unpacked (the graph a single prediction has always run).
  const packed = shape.packed && !(model.kind === 'checkpoint' && texts.length === 1);
  const pack = Math.min(shape.pack, window);
  const tokens = texts.reduce((s, t) => s + t.ids.length, 0);
  const positions = plan.positions ? texts.map((t, i) => plan.positions!(t, label(o, i))) : undefined;
  const packedWindows = packTexts(
    texts.map((t) => t.ids),
    window,
    pack,
    model.ids.special[0]!,
  );
  // Without `pack`, a runtime that runs every length on one graph takes each text alone when that is sooner.
  const lengths = texts.map((t) => t.ids.length);
  const single =
    packed &&
    o.pack === undefined &&
    model.runner.sharesGraph?.(lengths.reduce((m, n) => Math.max(m, n), 0)) === true &&
    prefersOnePerPass(lengths, packedWindows.length, window);
  // Short texts each inside one block when that takes no more windows (none longer than the local window).
  const blocked = packed && !single && o.pack === undefined ? inBlocks(model, texts, window, pack) : undefined;
  const windows = single
    ? texts.map((t, i): PackedWindow => ({ texts: [i], starts: [0], ids: t.ids as number[], segments: [] }))
    : blocked && blocked.windows.length <= packedWindows.length
      ? blocked.windows
      : packedWindows;
  const blocks = blocked !== undefined && windows === blocked.windows;
  const run = windowRunner(
    model,
    plan,
    blocks ? blocked.pack : pack,
    packed && !single,
    texts,
    blocks ? blocked.block : undefined,
  );
  const perText = !packed || single;
  const results: R[] = new Array(texts.length);
  let store: Float32Array | undefined;
  let done = 0;
  for (const w of windows) {
    const starts = w.texts.map((_, k) => (perText ? 0 : w.starts[k]!));
    // Positions are evaluated only where the texts ask (a masked LM at its [MASK]s), one column each.
    const at = positions ? w.texts.flatMap((t, k) => positions[t]!.map((p) => starts[k]! + p)) : undefined;
    const out = await run(w, at);
    const [name, output] = [...out.outputs.entries()][0]!;
    let column = 0;
    w.texts.forEach((t, k) => {
      const view = { text: texts[t]!, output, row: k, start: starts[k]!, column };
      checkFinite(view, positions?.[t]?.length, `${label(o, t)}: the model's "${name}" output`);
      const r = plan.read(view);
      // Embeddings all in one buffer, in input order: a million small arrays cost several times their values.
      if (plan.head === 'embedding' && r instanceof Float32Array) {
        store ??= embeddingStore(r.length, texts.length);
        store.set(r, t * r.length);
        results[t] = store.subarray(t * r.length, (t + 1) * r.length) as R;
      } else {
        results[t] = r;
      }
      column += positions?.[t]!.length ?? 0;
    });
    done += w.texts.length;
    o.onProgress?.(done, texts.length);
  }
  return {
    results,
    stats: {
      texts: texts.length,
      windows: windows.length,
      strategy: single ? 'single' : blocks ? 'blocks' : 'packed',
      window: blocks ? blocked.window : window,
      textsPerWindow: single ? 1 : blocks ? blocked.pack : pack,
      tokens,
      fill: single ? 1 : tokens / (windows.length * (blocks ? blocked.window : window)),
      seconds: (performance.now() - t0) / 1000,
    },
  };
}

/**
 * Throws NON_FINITE when the values a text's result is read from hold NaN or infinity: its row of a pooled
 * output, its evaluated positions (`positions` columns from `column`), or its tokens' columns.
 */
function checkFinite(
  v: { text: EncodedText; output: RtTensor; row: number; start: number; column: number },
  positions: number | undefined,
  what: string,
): void {
  const t = v.output;
  if (t.shape.length !== 4) {
    const C = t.shape[t.shape.length - 1]!;
    const bad = firstNonFinite(t.data, C, t.shape.length === 3 ? v.row * C : 0);
    if (bad >= 0)
      throw nonFiniteError(what, t.data[(t.shape.length === 3 ? v.row * C : 0) + bad]!, `at channel ${bad}`);
    return;
  }
  const [C, S] = [t.shape[1]!, t.shape[3]!];
  const [from, n] = positions === undefined ? [v.start, v.text.ids.length] : [v.column, positions];
  for (let s = from; s < from + n; s++) {
    const bad = firstNonFinite(t.data, C, s, S);
    if (bad >= 0)
      throw nonFiniteError(
        what,
        t.data[s + bad * S]!,
        `at ${positions === undefined ? `token ${s - v.start}` : `[MASK] ${s - v.column + 1}`}, channel ${bad}`,
      );
  }
}

/** The buffer of every embedding of a run (texts x width), refused above MAX_RESULT_BYTES (io/limits.ts). */
export function embeddingStore(width: number, texts: number): Float32Array {
  const bytes = texts * width * 4;
  if (bytes > MAX_RESULT_BYTES) {
    throw new ModernBertError(
      'BAD_INPUT',
      `${texts} texts of ${width} values each would hold ${formatBytes(bytes)} of embeddings, more than the ${formatBytes(MAX_RESULT_BYTES)} one run may: split the input`,
      { texts },
    );
  }
  return new Float32Array(texts * width);
}
