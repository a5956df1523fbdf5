// The regular expressions that a tokenizer.json brings (Split and Replace patterns of its normalizer,
// pre-tokenizer and decoder) are untrusted input: JavaScript's engine backtracks, and a pattern such as
// `(a+)+$` takes seconds on 24 characters and years on 40. No linear-time engine keeps their results (they
// use lookahead, which RE2 lacks), and a pattern's cost cannot be judged from its text in general, so each
// such pattern runs in a worker thread while this thread waits with a time budget: past it, the worker is
// stopped and the text fails with one line naming the pattern. The patterns we write ourselves (ByteLevel's
// split, tokenizer.ts) and literal String patterns stay on this thread, so ModernBERT's own tokenizer pays
// nothing (docs/PERFORMANCE.md, "Tokenizer patterns", measures both).

import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { ModernBertError } from '../errors.js';

/** Time allowed for one operation of a tokenizer.json pattern: this much, plus PATTERN_BUDGET_MS_PER_CHAR per character. */
export const PATTERN_BUDGET_MS = 2000;
/** Per character of the text: about a thousand times what the slowest real pattern we measured takes. */
const PATTERN_BUDGET_MS_PER_CHAR = 0.01;
/** The worker's start-up, under load: not part of any pattern's budget. */
const START_BUDGET_MS = 30_000;

type Op =
  | { op: 'match' | 'matchAll'; text: string }
  | { op: 'split'; text: string; limit?: number }
  | { op: 'replace'; text: string; replacement: string }
  | { op: 'exec'; text: string; lastIndex: number };

interface Reply {
  id: number;
  value?: unknown;
  error?: string;
}

/** The one worker that runs every guarded pattern (started on first use, stopped when a pattern overruns). */
class PatternWorker {
  private worker: Worker | undefined;
  private port: MessagePort | undefined;
  /** [0]: the id of the last reply posted; [1]: 1 once the worker listens. */
  private readonly flag = new Int32Array(new SharedArrayBuffer(8));
  private nextId = 0;

  run(source: string, flags: string, op: Op, budgetMs: number, onTimeout: () => ModernBertError): unknown {
    const port = this.start();
    const id = (this.nextId = (this.nextId % 0x7fffffff) + 1);
    port.postMessage({ id, source, flags, ...op });
    const deadline = performance.now() + budgetMs;
    for (;;) {
      const seen = Atomics.load(this.flag, 0);
      if (seen === id) {
        const reply = this.receive(port, id);
        if (reply.error !== undefined)
          throw new ModernBertError('CORRUPT_FILE', `a tokenizer pattern failed: ${reply.error}`);
        return reply.value;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        this.stop();
        throw onTimeout();
      }
      Atomics.wait(this.flag, 0, seen, left);
    }
  }

  /** The reply `id`, posted before its id was stored (a moment may pass before the port holds it). */
  private receive(port: MessagePort, id: number): Reply {
    for (let tries = 0; tries < 1000; tries++) {
      const reply = receiveMessageOnPort(port)?.message as Reply | undefined;
      if (reply?.id === id) return reply;
      if (reply === undefined) Atomics.wait(this.flag, 1, 1, 1);
    }
    throw new ModernBertError(
      'INTERNAL',
      "the tokenizer pattern worker stored a reply's id but the reply did not arrive",
    );
  }

  private start(): MessagePort {
    if (this.port) return this.port;
    const { port1, port2 } = new MessageChannel();
    Atomics.store(this.flag, 1, 0);
    this.worker = new Worker(new URL('./tokenizer-patterns-worker.mjs', import.meta.url), {
      workerData: { port: port2, flag: this.flag },
      transferList: [port2],
    });
    // The CLI exits without stopping it; a pattern that overran is stopped below.
    this.worker.unref();
    this.worker.on('error', () => this.stop());
    if (Atomics.wait(this.flag, 1, 0, START_BUDGET_MS) === 'timed-out') {
      this.stop();
      throw new ModernBertError(
        'INTERNAL',
        `the tokenizer pattern worker did not start within ${START_BUDGET_MS / 1000} s`,
      );
    }
    this.port = port1;
    return port1;
  }

  private stop(): void {
    void this.worker?.terminate();
    this.port?.close();
    this.worker = undefined;
    this.port = undefined;
  }
}

let shared: PatternWorker | undefined;

/** A pattern of a tokenizer file whose every use runs in the worker under a time budget (see the module comment). */
export class GuardedRegExp extends RegExp {
  /** `written`: the pattern as the file spells it, for messages (the library rewrites Oniguruma's syntax). */
  constructor(
    pattern: RegExp,
    private readonly file: string,
    private readonly written = pattern.source,
  ) {
    super(pattern.source, pattern.flags);
  }

  private call<T>(op: Op): T {
    shared ??= new PatternWorker();
    const budget = PATTERN_BUDGET_MS + PATTERN_BUDGET_MS_PER_CHAR * op.text.length;
    return shared.run(
      this.source,
      this.flags,
      op,
      budget,
      () =>
        new ModernBertError(
          'BAD_INPUT',
          `${this.file}: its pattern ${JSON.stringify(this.written.slice(0, 200))} took more than ${(budget / 1000).toFixed(1)} s on a text of ${op.text.length} characters (it backtracks without bound); a tokenizer with this pattern cannot be used`,
          { file: this.file, pattern: this.source },
        ),
    ) as T;
  }

  override [Symbol.match](text: string): RegExpMatchArray | null {
    return this.call<RegExpMatchArray | null>({ op: 'match', text: String(text) });
  }

  override [Symbol.split](text: string, limit?: number): string[] {
    return this.call<string[]>({ op: 'split', text: String(text), ...(limit === undefined ? {} : { limit }) });
  }

  override [Symbol.matchAll](text: string): IterableIterator<RegExpMatchArray> {
    const input = String(text);
    const all = this.call<{ m: string[]; index: number }[]>({ op: 'matchAll', text: input });
    return all.map((x) => Object.assign(x.m, { index: x.index, input }) as RegExpMatchArray)[Symbol.iterator]();
  }

  override [Symbol.replace](
    text: string,
    replacement: string | ((substring: string, ...args: unknown[]) => string),
  ): string {
    if (typeof replacement !== 'string')
      throw new ModernBertError('INTERNAL', 'a guarded tokenizer pattern was given a replacement function');
    return this.call<string>({ op: 'replace', text: String(text), replacement });
  }

  override exec(text: string): RegExpExecArray | null {
    const input = String(text);
    const x = this.call<{ m: string[]; index: number; lastIndex: number } | null>({
      op: 'exec',
      text: input,
      lastIndex: this.global || this.sticky ? this.lastIndex : 0,
    });
    if (this.global || this.sticky) this.lastIndex = x ? x.lastIndex : 0;
    return x && (Object.assign(x.m, { index: x.index, input }) as RegExpExecArray);
  }
}

/**
 * Replaces every pattern that `components` (the library's normalizer, pre-tokenizer and decoder objects)
 * compiled from a tokenizer file's `{"Regex": ...}` with a GuardedRegExp; returns how many it guarded.
 */
export function guardFilePatterns(components: readonly unknown[], file: string): number {
  let guarded = 0;
  const seen = new Set<unknown>();
  const visit = (x: unknown, depth: number): void => {
    // The library's components are callable objects (functions).
    if ((typeof x !== 'object' && typeof x !== 'function') || x === null || seen.has(x) || depth > 64) return;
    seen.add(x);
    const o = x as { config?: { pattern?: { Regex?: string } }; pattern?: unknown };
    if (
      typeof o.config?.pattern?.Regex === 'string' &&
      o.pattern instanceof RegExp &&
      !(o.pattern instanceof GuardedRegExp)
    ) {
      o.pattern = new GuardedRegExp(o.pattern, file, o.config.pattern.Regex);
      guarded++;
    }
    for (const v of Array.isArray(x) ? x : Object.values(x)) visit(v, depth + 1);
  };
  for (const c of components) visit(c, 0);
  return guarded;
}
