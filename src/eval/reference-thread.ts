// convert's fidelity report compares the converted model with the float32 checkpoint, whose pass needs nothing
// of the conversion. On onnxruntime it runs in a worker thread (reference-worker.ts) while the conversion
// works on the main thread, which uses one core: the worker gets the others (one on a 2-core machine), so
// neither waits long for the other (docs/PERFORMANCE.md, "The report's passes side by side"). onnxruntime
// computes the same floats on one thread as on two (its products split rows and columns among threads, not
// sums).

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ModernBertError, type ErrorCode } from '../errors.js';
import { kernelThreads } from '../runtime/kernels/gemm.js';
import type { FidelityForm, ReferenceRun } from './fidelity.js';
import type { ProbeSequence } from './inputs.js';

/** What the worker runs: the checkpoint folder (opened again there), the calibration and the shipped form. */
export interface ReferenceJob {
  dir: string;
  seqs: ProbeSequence[];
  form: FidelityForm;
  threads: number;
}

/** The worker's one message. */
export type ReferenceReply =
  { run: ReferenceRun } | { error: { code: ErrorCode; message: string; context: Record<string, unknown> } };

/**
 * A reference pass under way: its result (undefined when the thread itself failed, not the pass: then the
 * caller runs the pass itself), and a way to stop it when the conversion fails first.
 */
export interface ReferenceThread {
  run: Promise<ReferenceRun | undefined>;
  stop(): void;
}

/**
 * Starts the float32 reference pass of the checkpoint in `dir` in a worker thread, or returns undefined where
 * no worker can start: run from the TypeScript sources (tests), the worker's module is not there, and the
 * caller runs the pass itself.
 */
export function startReferenceThread(
  dir: string,
  seqs: ProbeSequence[],
  form: FidelityForm,
): ReferenceThread | undefined {
  const url = new URL('./reference-worker.js', import.meta.url);
  if (!existsSync(fileURLToPath(url))) return undefined;
  const job: ReferenceJob = { dir, seqs, form, threads: Math.max(1, kernelThreads() - 1) };
  let worker: Worker;
  try {
    worker = new Worker(url, { workerData: job });
  } catch {
    return undefined; // a thread that cannot start (resource limits): the pass runs in-process
  }
  // A promise settles once: whichever of these comes first decides.
  const run = new Promise<ReferenceRun | undefined>((resolve, reject) => {
    worker.once('message', (reply: ReferenceReply) => {
      // The pass's own error (a checkpoint that overflows float32, say) is the conversion's.
      if ('run' in reply) resolve(reply.run);
      else reject(new ModernBertError(reply.error.code, reply.error.message, reply.error.context));
    });
    // The thread failed (out of memory, terminated) before it answered, not the pass: the caller runs it in-process.
    worker.once('error', () => resolve(undefined));
    worker.once('exit', () => resolve(undefined));
  });
  // A conversion that fails first never awaits it.
  run.catch(() => {});
  return { run, stop: () => void worker.terminate() };
}
