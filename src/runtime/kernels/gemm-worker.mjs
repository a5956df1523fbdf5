// A pool worker: runs GEMM and attention tasks on its own kernel instance, on operands shared through SharedArrayBuffers.
import { parentPort, workerData } from 'node:worker_threads';
import { GemmEngine } from './gemm-core.mjs';

const engine = new GemmEngine(workerData.module);
const port = parentPort;
if (port === null) throw new Error('gemm-worker.mjs must run as a worker thread');

port.on('message', ({ id, task }) => {
  try {
    if (task.kind === 'attend') engine.attend(task);
    else engine.run(task);
    port.postMessage({ id });
  } catch (err) {
    port.postMessage({ id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  }
});
