// The CPU runtime's numeric kernels: matrix multiply (inline or on a worker pool) and float16 rounding.
export {
  allocF32,
  gemm,
  gemmSync,
  kernelThreads,
  PARALLEL_MIN_MACS,
  setKernelThreads,
  shutdownKernels,
} from './gemm.js';
export type { GemmArgs } from './gemm.js';
export { roundToF16InPlace } from './round-f16.js';
export { SOFTMAX_MAX_SLAB, softmaxSimd } from './softmax.js';
export { geluSimd } from './gelu.js';
