// How closely a converted model, in a float16 emulation, follows the float32 checkpoint: KL, top-1/top-5
// agreement and max abs difference of the logits over every real token of the calibration inputs. When
// the emulation produces NaN or infinity, the report says so and names the first layer where it appears.

import { Engine } from '../engine.js';
import type { ModelSource, NormStyle } from '../model.js';
import type { Precision } from '../runtime/numerics.js';
import { releaseMemory, shutdownRuntime } from '../runtime/shutdown.js';
import type { RtTensor } from '../runtime/tensor.js';
import { AgreementMeter } from './compare.js';
import type { ProbeSequence } from './inputs.js';

export interface FidelityReport {
  /** The emulation mode of the converted model (the reference is float32). */
  precision: Precision;
  kl: number;
  top1: number;
  top5: number;
  max_abs_diff: number;
  tokens: number;
  sequences: number;
  /** What the inputs were: 'built-in sentences', 'calibration file', 'random ids', ... */
  inputs: string;
  /** Where non-finite values first appear, when they do. */
  non_finite?: { tokens: number; sequence: string; first_layer: number | null };
}

/** The head output of a forward result, and its (V, P) layout. */
function logitsOf(outputs: Map<string, RtTensor>): { data: Float32Array; V: number; P: number } {
  const t = outputs.get('logits') ?? outputs.get('embedding') ?? outputs.get('hidden_states')!;
  const data = t.data as Float32Array;
  // (1, V, 1, P) per-token outputs; (1, L) or (1, C) pooled outputs are one column.
  return t.shape.length === 4 ? { data, V: t.shape[1]!, P: t.shape[3]! } : { data, V: t.shape[1]!, P: 1 };
}

const positionsOf = (s: ProbeSequence) => s.ids.map((_, i) => i);

// In a function of its own, so that nothing of the engine outlives the call (a suspended async frame
// can keep a block's variables alive).
async function runAll(source: ModelSource, precision: Precision, norm: NormStyle, seqs: ProbeSequence[], tick: () => void): Promise<{ data: Float32Array; V: number; P: number }[]> {
  const engine = new Engine(source, { precision, norm });
  const out: { data: Float32Array; V: number; P: number }[] = [];
  for (const s of seqs) {
    out.push(logitsOf((await engine.forward(s, { positions: positionsOf(s) })).outputs));
    tick();
  }
  return out;
}

/**
 * Measures `converted` (run in `precision`) against `reference` (float32, as trained). The two engines
 * run one after the other, so only one model's weights are held at a time.
 */
export async function measureFidelity(
  reference: ModelSource,
  converted: { source: ModelSource; norm: NormStyle },
  seqs: ProbeSequence[],
  precision: Precision,
  inputs: string,
  onProgress?: (done: number, total: number) => void,
): Promise<FidelityReport> {
  const total = seqs.length * 2;
  let done = 0;
  const refs = await runAll(reference, 'fp32', 'layernorm', seqs, () => onProgress?.(++done, total));
  // The reference model is unreachable now (runAll's frame is gone): free it before the converted one loads.
  await releaseMemory();
  const engine = new Engine(converted.source, { precision, norm: converted.norm });
  const meter = new AgreementMeter();
  let firstBad: ProbeSequence | undefined;
  for (const [i, s] of seqs.entries()) {
    const out = logitsOf((await engine.forward(s, { positions: positionsOf(s) })).outputs);
    const before = meter.result().non_finite;
    meter.add(refs[i]!.data, out.data, out.V, out.P);
    if (!firstBad && meter.result().non_finite > before) firstBad = s;
    onProgress?.(++done, total);
  }
  const r = meter.result();
  const report: FidelityReport = { precision, kl: r.kl, top1: r.top1, top5: r.top5, max_abs_diff: r.max_abs_diff, tokens: r.tokens, sequences: seqs.length, inputs };
  if (firstBad) {
    const layers = reference.config.numLayers;
    const taps = Array.from({ length: layers + 1 }, (_, i) => `residual.${i}`);
    const res = await engine.forward(firstBad, { positions: positionsOf(firstBad), taps });
    const first = taps.findIndex((t) => res.taps.get(t)!.data.some((v) => !Number.isFinite(v)));
    report.non_finite = { tokens: r.non_finite, sequence: firstBad.label, first_layer: first < 0 ? null : first };
  }
  await shutdownRuntime();
  return report;
}

/** One line for a terminal, loud when the emulation broke. */
export function formatFidelity(f: FidelityReport): string {
  const head = `fidelity (${f.precision} emulation vs float32, ${f.tokens} tokens of ${f.inputs}):`;
  if (f.non_finite) {
    const where = f.non_finite.first_layer === null ? 'in the head' : f.non_finite.first_layer === 0 ? 'in the embeddings' : `after layer ${f.non_finite.first_layer}`;
    return `${head}\n  WARNING: NON-FINITE OUTPUTS on ${f.non_finite.tokens} tokens; the first NaN/inf appears ${where} (in "${f.non_finite.sequence.slice(0, 60)}"). This package will not work on the Neural Engine; try --rotation hadamard with the default l2 norm.`;
  }
  return `${head} KL ${f.kl.toExponential(2)}, top-1 ${(100 * f.top1).toFixed(1)}%, top-5 ${(100 * f.top5).toFixed(1)}%, max |diff| ${f.max_abs_diff.toPrecision(3)}`;
}
