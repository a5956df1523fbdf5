// Releases what the runtime holds across calls (the kernel worker pool), so a process can exit promptly and
// memory shared with the workers (weights on SharedArrayBuffers) is freed once the model is dropped.

import { shutdownKernels } from './kernels/index.js';

/** Stops background workers; safe to call more than once (the pool restarts on the next product). */
export async function shutdownRuntime(): Promise<void> {
  await shutdownKernels();
}
