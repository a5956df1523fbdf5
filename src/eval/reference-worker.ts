// The worker thread of reference-thread.ts: opens the checkpoint folder again, runs the fidelity report's
// float32 reference pass on onnxruntime with the threads it is given, and posts the result (its outputs'
// buffers transferred, not copied) or the error. It exits when done.

import { parentPort, workerData } from 'node:worker_threads';
import { ModernBertError } from '../errors.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { chooseExecutor } from '../run/executor-choice.js';
import { setKernelThreads } from '../runtime/kernels/gemm.js';
import { runReference } from './fidelity.js';
import type { ReferenceJob, ReferenceReply } from './reference-thread.js';

const job = workerData as ReferenceJob;
const post = (reply: ReferenceReply, transfer: ArrayBuffer[] = []) => parentPort!.postMessage(reply, transfer);
try {
  setKernelThreads(job.threads);
  const ckpt = loadCheckpoint(job.dir);
  try {
    const { factory } = await chooseExecutor({ runtime: 'ort', precision: 'fp32' });
    const run = await runReference(ckpt, job.seqs, job.form, factory);
    post({ run }, [...new Set(run.outputs.map((o) => o.data.buffer as ArrayBuffer))]);
  } finally {
    ckpt.close();
  }
} catch (e) {
  const err = e instanceof Error ? e : new Error(String(e));
  post({
    error: {
      code: err instanceof ModernBertError ? err.code : 'INTERNAL',
      message: err.message,
      context: err instanceof ModernBertError ? err.context : {},
    },
  });
}
