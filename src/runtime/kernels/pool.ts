// A pool of kernel worker threads. Each call hands one task to each of the first workers and resolves when
// all are done. Idle workers are unref()'d so that a CLI exits without shutting the pool down, and ref()'d
// while they hold work, so that the process does not exit under an awaited product.
import { Worker } from 'node:worker_threads';
import type { AttendTask, GemmTask, KernelModule } from './gemm-core.mjs';

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
}

interface Reply {
  id: number;
  error?: string;
}

class KernelWorker {
  readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;

  constructor(module: KernelModule, onDeath: () => void) {
    this.worker = new Worker(new URL('./gemm-worker.mjs', import.meta.url), { workerData: { module } });
    this.worker.unref();
    this.worker.on('message', (reply: Reply) => {
      const p = this.pending.get(reply.id);
      if (p === undefined) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.worker.unref();
      if (reply.error === undefined) p.resolve();
      else p.reject(new Error(`GEMM worker failed: ${reply.error}`));
    });
    const fail = (err: Error): void => {
      onDeath();
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`GEMM worker exited with code ${code}`)));
  }

  run(task: GemmTask | AttendTask): Promise<void> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, task });
    });
  }
}

export class WorkerPool {
  private readonly workers: KernelWorker[];
  private dead = false;

  constructor(size: number, module: KernelModule) {
    this.workers = Array.from({ length: size }, () => new KernelWorker(module, () => (this.dead = true)));
  }

  /** Number of worker threads. */
  get size(): number {
    return this.workers.length;
  }

  /** False once a worker has died: the owner then replaces the pool. */
  get healthy(): boolean {
    return !this.dead;
  }

  /** Runs tasks[i] on worker i (at most `size` tasks). */
  async run(tasks: (GemmTask | AttendTask)[]): Promise<void> {
    await Promise.all(tasks.map((task, i) => this.workers[i]!.run(task)));
  }

  /** Terminates every worker. */
  async close(): Promise<void> {
    this.dead = true;
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }
}
