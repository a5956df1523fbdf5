// Releases what the runtime holds across calls (the kernel worker pool), so a process can exit promptly and
// memory shared with the workers (weights on SharedArrayBuffers) is freed once the model is dropped.

import v8 from 'node:v8';
import vm from 'node:vm';
import { shutdownKernels } from './kernels/index.js';

/** Stops background workers; safe to call more than once (the pool restarts on the next product). */
export async function shutdownRuntime(): Promise<void> {
  await shutdownKernels();
}

let gc: (() => void) | undefined;

/**
 * Stops the workers and collects garbage now. Between two models (the float32 reference and the converted
 * one) this keeps peak memory at one model: V8 sees a SharedArrayBuffer's memory only as external, and may
 * not collect a dropped 600 MB model before the next one is allocated.
 */
export async function releaseMemory(): Promise<void> {
  await shutdownKernels();
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  // Measured: the first collection after the workers stop leaves the buffers they had seen; a second one,
  // once the event loop has turned, frees them.
  gc();
  await new Promise((resolve) => setImmediate(resolve));
  gc();
}
