// The Core ML helper as a child process: one request at a time, each with its own id and time limit. A helper
// that dies, hangs, prints something other than a reply or answers another id is stopped, and every request
// after that fails at once with the same one-line reason.

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { ModernBertError } from '../../errors.js';
import { brief } from '../../io/files.js';
import { checkReply, protocolError } from './protocol.js';

/** The advice every failure of a running helper ends with: the Neural Engine's compiler is the usual cause. */
export const CPU_ONLY_HINT = 'a failed Neural Engine compile can do this: try --compute-units cpu-only';

/**
 * The longest reply line read: a string this long still fits V8's limit (about 512 MiB), and it holds the logits
 * of ModernBERT-base at 1024 tokens (100 MB of float16, 138 MB as base64) several times over.
 */
export const MAX_REPLY_CHARS = 480 * 1024 * 1024;

/** How much of the helper's stderr a failure quotes (its last lines). */
const STDERR_TAIL = 2000;

interface Pending {
  id: number;
  op: string;
  resolve: (r: Record<string, unknown>) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** A running helper process. */
export class HelperProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private nextId = 1;
  private pending?: Pending;
  private queue: Promise<unknown> = Promise.resolve();
  private chunks: Buffer[] = [];
  private buffered = 0;
  private stderrTail = '';
  /** Why the helper cannot answer any more; set once. */
  private failure?: ModernBertError;
  private exited = false;
  private readonly exit: Promise<void>;
  private onExit!: () => void;

  /** Starts `argv` (the built helper, or a stand-in named for testing). */
  constructor(readonly argv: readonly string[]) {
    this.child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exit = new Promise((resolve) => {
      this.onExit = () => {
        this.exited = true;
        resolve();
      };
    });
    this.child.on('exit', (code, signal) => {
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const during = this.pending ? ` during ${this.pending.op}` : '';
      const said = this.stderrTail.trim()
        ? ` (it said: ${brief(this.stderrTail.trim().split('\n').slice(-3).join(' | '), 300)})`
        : '';
      this.fail(
        new ModernBertError('UNSUPPORTED', `the Core ML helper ${how}${during}${said}; ${CPU_ONLY_HINT}`, {
          code,
          signal,
        }),
      );
      this.onExit();
    });
    // A command that cannot be started emits 'error' and no 'exit'.
    this.child.on('error', (e: NodeJS.ErrnoException) => {
      this.fail(
        new ModernBertError(
          'UNSUPPORTED',
          `the Core ML helper could not be started (${argv[0]}: ${e.code ?? e.message})`,
          { command: argv[0] },
        ),
      );
      if (this.child.pid === undefined) this.onExit();
    });
    this.child.stdin.on('error', () => {}); // a helper that died closes the pipe: its exit says why
    this.child.stdout.on('data', (b: Buffer) => this.onData(b));
    this.child.stderr.on('data', (b: Buffer) => {
      this.stderrTail = (this.stderrTail + b.toString('utf8')).slice(-STDERR_TAIL);
    });
    this.idle();
  }

  /** Sends one request (after those before it) and resolves to the checked reply, or rejects with a one-line error. */
  request(op: string, body: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>> {
    const run = () => this.send(op, body, timeoutMs);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }

  /** Closes stdin (the helper exits at end of input) and waits for the exit; kills it after `graceMs`. */
  async close(graceMs = 2000): Promise<void> {
    if (this.exited) return;
    this.failure ??= new ModernBertError('INTERNAL', 'the Core ML helper was closed');
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exit;
    clearTimeout(timer);
  }

  private send(op: string, body: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    this.busy();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(
          new ModernBertError(
            'UNSUPPORTED',
            `the Core ML helper did not answer ${op} within ${Math.round(timeoutMs / 1000)} s (stopped it); ${CPU_ONLY_HINT}`,
            { op, timeoutMs },
          ),
        );
        this.child.kill('SIGKILL');
      }, timeoutMs);
      this.pending = { id, op, resolve, reject, timer };
      this.child.stdin.write(`${JSON.stringify({ id, op, ...body })}\n`);
    });
  }

  private onData(b: Buffer): void {
    let start = 0;
    for (let nl = b.indexOf(10); nl >= 0; nl = b.indexOf(10, start)) {
      this.chunks.push(b.subarray(start, nl));
      const line = Buffer.concat(this.chunks).toString('utf8');
      this.chunks = [];
      this.buffered = 0;
      start = nl + 1;
      this.onLine(line);
    }
    if (start < b.length) {
      this.chunks.push(b.subarray(start));
      this.buffered += b.length - start;
      if (this.buffered > MAX_REPLY_CHARS) {
        this.chunks = [];
        this.fail(protocolError(`a reply is longer than ${MAX_REPLY_CHARS} bytes`));
        this.child.kill('SIGKILL');
      }
    }
  }

  private onLine(line: string): void {
    if (this.failure) return;
    if (line.trim() === '') return;
    let r: unknown;
    try {
      r = JSON.parse(line);
    } catch {
      r = undefined;
    }
    const fail = (message: string) => {
      this.fail(protocolError(message));
      this.child.kill('SIGKILL');
    };
    if (typeof r !== 'object' || r === null || Array.isArray(r))
      return fail(`it printed a line that is not a JSON reply: ${brief(line)}`);
    const reply = r as Record<string, unknown>;
    const p = this.pending;
    if (!p) return fail(`it replied when nothing was asked: ${brief(line)}`);
    if (reply.id !== p.id) return fail(`it answered request ${p.id} (${p.op}) with id ${brief(reply.id)}`);
    if (reply.ok === false) {
      this.settle();
      return p.reject(
        new ModernBertError(
          'UNSUPPORTED',
          `Core ML: ${typeof reply.error === 'string' ? reply.error : brief(reply.error)}`,
          { op: p.op },
        ),
      );
    }
    if (reply.ok !== true) return fail(`its reply to ${p.op} has ok = ${brief(reply.ok)}`);
    try {
      checkReply(p.op, reply);
    } catch (e) {
      this.fail(e as ModernBertError);
      this.child.kill('SIGKILL');
      return;
    }
    this.settle();
    p.resolve(reply);
  }

  /** Clears the answered request; the helper no longer keeps the process alive. */
  private settle(): void {
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = undefined;
    this.idle();
  }

  /** Records why the helper is unusable and rejects the request in flight. */
  private fail(e: ModernBertError): void {
    this.failure ??= e;
    const p = this.pending;
    this.settle();
    p?.reject(this.failure);
  }

  // While a request is out, the helper's pipes keep Node running; between requests they do not, so a caller
  // that forgets close() still exits (the helper then reads end of input and exits too).
  private busy(): void {
    this.child.ref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr])
      (s as unknown as { ref?: () => void }).ref?.();
  }

  private idle(): void {
    this.child.unref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr])
      (s as unknown as { unref?: () => void }).unref?.();
  }
}
