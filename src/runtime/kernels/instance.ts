// The compiled kernel module and the calling thread's own instance, both made on first use.
import { GemmEngine, loadKernelModule, type KernelModule } from './gemm-core.mjs';

let module: KernelModule | undefined;
let engine: GemmEngine | undefined;

/** The compiled kernels; workers receive this module, so V8 compiles and tiers it up once per process. */
export function kernelModule(): KernelModule {
  module ??= loadKernelModule();
  return module;
}

/** The calling thread's kernel instance. */
export function mainEngine(): GemmEngine {
  engine ??= new GemmEngine(kernelModule());
  return engine;
}
