// Predicted Neural Engine time per chip: a model, not a measurement. One published measurement calibrates it:
// the reference project's ModernBERT-base at 1,024 tokens ran at 3.0 TFLOP/s of matrix products (378 GFLOP,
// about 126 ms). Assumed [G]: that ran on an M1-class Neural Engine (its author's other published benchmarks
// use an M1 Max; the README names no chip). Other chips scale by their rated peak. Each partition of Neural
// Engine work adds a dispatch overhead. Nothing else is modelled: memory traffic, tiling, the work off the
// Neural Engine, the first compile. docs/ANE.md says how well that can hold.

import type { Confidence } from './rules.js';
import type { Placement } from './placement.js';
import { MATRIX_OPS } from './cost.js';

/** A chip's Neural Engine: its rated peak in float16 TFLOP/s, and where the figure comes from. */
export interface Chip {
  name: string;
  peakTflops: number;
  confidence: Confidence;
  source: string;
}

/** Chips with a published rating (the M5's is not disclosed). */
export const CHIPS: readonly Chip[] = [
  {
    name: 'M1',
    peakTflops: 11,
    confidence: 'A',
    source: 'Apple rating, 11 TOPS (hollance/neural-engine supported-devices.md)',
  },
  { name: 'M2', peakTflops: 15.8, confidence: 'A', source: 'Apple rating, 15.8 TOPS' },
  {
    name: 'M3',
    peakTflops: 18,
    confidence: 'A',
    source:
      'Apple: "60% faster than M1" (hollance lists 15.8); measured 15.0 sustained on an M3 Pro via private APIs [P]',
  },
  {
    name: 'M4',
    peakTflops: 19,
    confidence: 'G',
    source: 'Apple rates 38 TOPS on an INT8 basis, halved for float16 [G]; measured 12.6 (M4 Pro) via private APIs [P]',
  },
];

/** The measurement the model is calibrated on. */
export const CALIBRATION = {
  tflops: 3.0,
  seqLen: 1024,
  model: 'ModernBERT-base',
  chip: 'M1',
  source:
    'smpanaro/ModernBERT-AppleNeuralEngine README @ d026894 (3.0 TFLOP/s at 1,024 tokens, chip not stated) [C]; the chip assumed [G]',
} as const;

/** Dispatch overhead per Neural Engine call, ms (measured 0.1-0.2 ms [C], aosama/astronomical#540). */
export const DISPATCH_MS = 0.15;

/** Ops whose FLOPs the calibration counts (the reference project's 378 GFLOP are matrix products). */

export interface ChipEstimate {
  chip: string;
  peakTflops: number;
  confidence: Confidence;
  /** Predicted time of the Neural Engine work, ms. */
  ms: number;
  /** The time at the chip's full rated peak, with no overhead: a bound no run can beat. */
  boundMs: number;
}

export interface TimeEstimate {
  /** Matrix FLOPs on the Neural Engine, which the model times. */
  matrixFlops: number;
  /** Partitions of Neural Engine work (1 + the islands inside the body). */
  partitions: number;
  /** Share of all FLOPs that run elsewhere and are not timed. */
  untimedShare: number;
  chips: ChipEstimate[];
  note: string;
}

/** The effective rate on a chip, TFLOP/s: the calibration's, scaled by the chip's rated peak. */
export function effectiveTflops(chip: Chip): number {
  const ref = CHIPS.find((c) => c.name === CALIBRATION.chip)!;
  return CALIBRATION.tflops * (chip.peakTflops / ref.peakTflops);
}

/** Predicted Neural Engine time of one prediction, per chip. */
export function estimateTime(p: Placement): TimeEstimate {
  const matrixFlops = p.ops.filter((o) => o.device === 'ane' && MATRIX_OPS.has(o.op)).reduce((s, o) => s + o.flops, 0);
  const partitions = matrixFlops > 0 ? 1 + p.islands.filter((i) => i.region === 'body').length : 0;
  const untimed = p.totals.flops - p.totals.aneFlops;
  return {
    matrixFlops,
    partitions,
    untimedShare: p.totals.flops > 0 ? untimed / p.totals.flops : 0,
    chips: CHIPS.map((c) => ({
      chip: c.name,
      peakTflops: c.peakTflops,
      confidence: c.confidence,
      ms: matrixFlops / (effectiveTflops(c) * 1e9) + partitions * DISPATCH_MS,
      boundMs: matrixFlops / (c.peakTflops * 1e9),
    })),
    note: `a model, not a measurement: matrix FLOPs on the Neural Engine at ${CALIBRATION.tflops} TFLOP/s on an ${CALIBRATION.chip} (the reference project's ${CALIBRATION.model} at ${CALIBRATION.seqLen.toLocaleString('en-US')} tokens), scaled by each chip's rated peak, plus ${DISPATCH_MS} ms per partition`,
  };
}
