// How closely a converted model, in a float16 emulation, follows the float32 checkpoint: KL, top-1/top-5
// agreement and max abs difference of the logits over every real token of the calibration inputs. When
// the emulation produces NaN or infinity, the report says so and names the first layer and op where it
// appears, and advises only what addresses that cause (a rotation helps the residual stream, nothing else).

import { Engine } from '../run/engine.js';
import type { ExecutorFactory, Sequence } from '../run/runner.js';
import { DEFAULT_PACK, DEFAULT_WINDOW, packTexts } from '../run/pack-texts.js';
import { defaultHead, type ModelSource, type NormStyle } from '../model/options.js';
import type { Precision } from '../runtime/numerics.js';
import { releaseMemory, shutdownRuntime } from '../runtime/shutdown.js';
import { Interpreter } from '../graph/interpreter.js';
import type { RtTensor } from '../runtime/tensor.js';
import { AgreementMeter } from './compare.js';
import type { ProbeSequence } from './inputs.js';
import { OutlierMeter } from './outliers.js';

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
  /** Per layer of the residual stream (0 = embeddings), over the real tokens: see LayerFidelity. */
  layers?: LayerFidelity[];
  /** Where non-finite values first appear, when they do. */
  non_finite?: {
    tokens: number;
    sequence: string;
    first_layer: number | null;
    /** The first op (in program order) whose output holds NaN or infinity, and what part of the model it is. */
    first_op: { name: string; op: string; part: ModelPart } | null;
  };
}

/**
 * One layer's residual stream. The converted model's stream is folded (and maybe rotated), so it is compared
 * with itself run in float32 on the same weights: the error float16 arithmetic alone adds by that layer.
 */
export interface LayerFidelity {
  layer: number;
  /** ||fp16 - fp32|| / ||fp32|| of the converted model's stream (null when the emulation is not finite there). */
  rel_error: number | null;
  /** Max |activation|: the checkpoint as trained (float32), the converted model in float32 and in the emulation. */
  reference_max: number;
  converted_max: number;
  emulated_max: number;
}

/** The part of the model an op belongs to, which decides what can fix an overflow there. */
export type ModelPart = 'embedding' | 'norm' | 'residual' | 'attention' | 'mlp' | 'head';

/** The part of the model an op of our graph belongs to, from its name (model.ts names ops by role). */
export function partOf(opName: string): ModelPart {
  if (/norm/.test(opName)) return 'norm';
  if (/^embed/.test(opName)) return 'embedding';
  if (/_(attn_out|attn_res|mlp_out|mlp_res|residual)$/.test(opName)) return 'residual';
  if (/_mlp_/.test(opName)) return 'mlp';
  if (/^layers_/.test(opName)) return 'attention';
  return 'head';
}

/** The head output of a forward result, and its (V, P) layout. */
function logitsOf(outputs: Map<string, RtTensor>): { data: Float32Array; V: number; P: number } {
  const t = outputs.get('logits') ?? outputs.get('embedding') ?? outputs.get('hidden_states')!;
  const data = t.data as Float32Array;
  // (1, V, 1, P) per-token outputs; (1, L) or (1, C) pooled outputs are one column.
  return t.shape.length === 4 ? { data, V: t.shape[1]!, P: t.shape[3]! } : { data, V: t.shape[1]!, P: 1 };
}

const positionsOf = (s: ProbeSequence) => s.ids.map((_, i) => i);

/** Texts per pass of the fidelity report: several, packed (model.ts packing), when the head is per token. */
interface Pass {
  seqs: ProbeSequence[];
  seq: Sequence;
  positions: number[];
  pack?: number;
  /** Where each text starts in the pass. */
  starts: number[];
}

/**
 * The passes over the calibration sequences. A per-token head sees each packed text exactly as alone
 * (masked keys add exactly 0, rotary positions restart per text), so unpadded sequences go several to a
 * window: a runtime with a costly run (onnxruntime) then makes one pass, not one per sentence.
 */
function passesOf(source: ModelSource, seqs: ProbeSequence[]): Pass[] {
  const head = defaultHead(source);
  const window = Math.min(DEFAULT_WINDOW, source.config.maxPositions);
  const perToken = head === 'mlm' || head === 'tokcls' || head === 'none';
  const packable = (s: ProbeSequence) => perToken && (!s.attention || Array.from(s.attention).every((a) => a)) && s.ids.length <= window;
  const passes: Pass[] = seqs.filter((s) => !packable(s)).map((s) => ({ seqs: [s], seq: s, positions: positionsOf(s), starts: [0] }));
  const packed = seqs.filter(packable);
  for (const w of packTexts(packed.map((s) => s.ids), window, DEFAULT_PACK, source.config.padTokenId)) {
    const used = w.starts[w.starts.length - 1]! + packed[w.texts[w.texts.length - 1]!]!.ids.length;
    passes.push({ seqs: w.texts.map((t) => packed[t]!), seq: { ids: w.ids, segments: w.segments }, positions: Array.from({ length: used }, (_, i) => i), pack: DEFAULT_PACK, starts: w.starts });
  }
  return passes;
}

/** A pass: outputs and residual taps, the meters fed text by text (the sequence index is the calibration's). */
async function runPass(engine: Engine, p: Pass, taps: string[]): Promise<{ out: { data: Float32Array; V: number; P: number }; residuals: RtTensor[] }> {
  const res = await engine.forward(p.seq, { positions: p.positions, pack: p.pack, taps });
  return { out: logitsOf(res.outputs), residuals: taps.map((t) => res.taps.get(t)!) };
}

/** The real tokens of text k of a pass, in the pass's positions. */
const realOf = (p: Pass, k: number): number[] => realPositions(p.seqs[k]!).map((s) => s + p.starts[k]!);

// In a function of its own, so that nothing of the engine outlives the call (a suspended async frame
// can keep a block's variables alive).
async function runAll(source: ModelSource, precision: Precision, norm: NormStyle, passes: Pass[], index: Map<ProbeSequence, number>, tick: (n: number) => void, outliers: OutlierMeter, executor?: ExecutorFactory): Promise<{ data: Float32Array; V: number; P: number }[]> {
  const engine = new Engine(source, { precision, norm }, executor);
  const taps = residualTaps(source.config.numLayers);
  const out: { data: Float32Array; V: number; P: number }[] = [];
  for (const p of passes) {
    const r = await runPass(engine, p, taps);
    out.push(r.out);
    p.seqs.forEach((s, k) => outliers.add(r.residuals, realOf(p, k), index.get(s)!));
    tick(p.seqs.length);
  }
  await engine.release();
  return out;
}

/** Columns [start, start + n) of a (V, P) array, as a (V, n) one. */
function columns(data: Float32Array, V: number, P: number, start: number, n: number): Float32Array {
  const out = new Float32Array(V * n);
  for (let v = 0; v < V; v++) out.set(data.subarray(v * P + start, v * P + start + n), v * n);
  return out;
}

const residualTaps = (layers: number) => Array.from({ length: layers + 1 }, (_, i) => `residual.${i}`);
const realPositions = (s: ProbeSequence) => s.ids.flatMap((_, k) => (!s.attention || s.attention[k] ? [k] : []));

/** ||a - b||^2 and ||b||^2 of each layer's stream over the real tokens, accumulated across sequences. */
class LayerErrorMeter {
  readonly diff: number[] = [];
  readonly norm: number[] = [];
  readonly finite: boolean[] = [];
  add(a: RtTensor[], b: RtTensor[], real: number[]): void {
    a.forEach((t, l) => {
      const [C, S] = [t.shape[1]!, t.shape[3]!];
      let d = 0;
      let n = 0;
      for (let c = 0; c < C; c++) {
        for (const s of real) {
          const x = t.data[c * S + s]!;
          const y = b[l]!.data[c * S + s]!;
          d += (x - y) ** 2;
          n += y * y;
        }
      }
      this.diff[l] = (this.diff[l] ?? 0) + d;
      this.norm[l] = (this.norm[l] ?? 0) + n;
      this.finite[l] = (this.finite[l] ?? true) && Number.isFinite(d);
    });
  }
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
  executor?: ExecutorFactory,
): Promise<FidelityReport> {
  const total = seqs.length * 2;
  let done = 0;
  const passes = passesOf(converted.source, seqs);
  const index = new Map(seqs.map((s, i) => [s, i]));
  const referenceOutliers = new OutlierMeter();
  const refs = await runAll(reference, 'fp32', 'layernorm', passes, index, (n) => onProgress?.((done += n), total), referenceOutliers, executor);
  // The reference model is unreachable now (runAll's frame is gone): free it before the converted one loads.
  await releaseMemory();
  const engine = new Engine(converted.source, { precision, norm: converted.norm }, executor);
  // The converted weights in float32 arithmetic (they share the weight cache), for the per-layer error.
  const exact = new Engine(converted.source, { precision: 'fp32', norm: converted.norm }, executor);
  const taps = residualTaps(reference.config.numLayers);
  const [emulatedOutliers, convertedOutliers, layerErrors] = [new OutlierMeter(), new OutlierMeter(), new LayerErrorMeter()];
  const meter = new AgreementMeter();
  let firstBad: ProbeSequence | undefined;
  // The emulation first, then the converted weights in float32, a few passes at a time with the emulated
  // residual streams kept in between: on onnxruntime each engine is a session holding its own copy of the
  // weights, so only one of them is alive at once.
  const CHUNK = 8;
  for (let from = 0; from < passes.length; from += CHUNK) {
    const units: { p: Pass; residuals: RtTensor[] }[] = [];
    for (const [i, p] of passes.slice(from, from + CHUNK).entries()) {
      const ref = refs[from + i]!;
      const e = await runPass(engine, p, taps);
      // A NaN or infinity in one packed text reaches the others (0 x inf in attention's weighted sum): such a
      // window is measured again text by text, as each would run alone.
      const alone = p.seqs.length > 1 && !e.out.data.every((v) => Number.isFinite(v));
      const each: { p: Pass; ref: typeof ref; e: typeof e }[] = [];
      if (!alone) each.push({ p, ref, e });
      else {
        for (const [k, s] of p.seqs.entries()) {
          const one: Pass = { seqs: [s], seq: s, positions: positionsOf(s), starts: [0] };
          each.push({ p: one, ref: { ...ref, data: columns(ref.data, ref.V, ref.P, p.starts[k]!, s.ids.length), P: s.ids.length }, e: await runPass(engine, one, taps) });
        }
      }
      for (const u of each) {
        u.p.seqs.forEach((q, k) => emulatedOutliers.add(u.e.residuals, realOf(u.p, k), index.get(q)!));
        const before = meter.result().non_finite;
        meter.add(u.ref.data, u.e.out.data, u.e.out.V, u.e.out.P);
        if (!firstBad && meter.result().non_finite > before) firstBad = u.p.seqs[0];
        units.push({ p: u.p, residuals: u.e.residuals });
      }
      onProgress?.((done += p.seqs.length), total);
    }
    await engine.release();
    for (const u of units) {
      // Only its residual stream is read: the head at one position (the decoder is a quarter of a pass).
      const f = await runPass(exact, { ...u.p, positions: [0] }, taps);
      u.p.seqs.forEach((q, k) => {
        convertedOutliers.add(f.residuals, realOf(u.p, k), index.get(q)!);
        layerErrors.add(u.residuals, f.residuals, realOf(u.p, k));
      });
    }
    await exact.release();
  }
  const r = meter.result();
  const [ref, conv, emu] = [referenceOutliers.result(0), convertedOutliers.result(0), emulatedOutliers.result(0)];
  const layers = ref.map((l, k): LayerFidelity => ({
    layer: k,
    rel_error: layerErrors.finite[k] && layerErrors.norm[k]! > 0 ? Math.sqrt(layerErrors.diff[k]! / layerErrors.norm[k]!) : null,
    reference_max: l.max,
    converted_max: conv[k]!.max,
    emulated_max: emu[k]!.max,
  }));
  const report: FidelityReport = { precision, kl: r.kl, top1: r.top1, top5: r.top5, max_abs_diff: r.max_abs_diff, tokens: r.tokens, sequences: seqs.length, inputs, layers };
  if (firstBad) {
    const layers = reference.config.numLayers;
    const taps = Array.from({ length: layers + 1 }, (_, i) => `residual.${i}`);
    const res = await engine.forward(firstBad, { positions: positionsOf(firstBad), taps });
    const first = taps.findIndex((t) => res.taps.get(t)!.data.some((v) => !Number.isFinite(v)));
    const op = await firstNonFiniteOp(engine, precision, firstBad, first < 0 ? layers + 1 : first);
    report.non_finite = { tokens: r.non_finite, sequence: firstBad.label, first_layer: first < 0 ? null : first, first_op: op && { ...op, part: partOf(op.name) } };
  }
  await engine.release();
  await exact.release();
  await shutdownRuntime();
  return report;
}

/**
 * The first op whose output is not finite, searched only among the ops between the last finite residual
 * tap and the first non-finite one (`firstBadTap`; past the last tap: the head), so that only one layer's
 * values are held at a time.
 */
async function firstNonFiniteOp(engine: Engine, precision: Precision, seq: ProbeSequence, firstBadTap: number): Promise<{ name: string; op: string } | null> {
  const S = seq.ids.length;
  const graph = engine.graph(S, { positions: positionsOf(seq) });
  const producer = new Map(graph.ops.flatMap((op, i) => op.outputs.map((o) => [o.name, i] as const)));
  const tapOp = (k: number) => producer.get(graph.taps.get(`residual.${k}`) ?? '') ?? -1;
  const from = firstBadTap === 0 ? 0 : tapOp(firstBadTap - 1) + 1;
  const to = tapOp(firstBadTap) >= 0 ? tapOp(firstBadTap) : graph.ops.length - 1;
  const window = graph.ops.slice(from, to + 1);
  const keep = window.flatMap((op) => op.outputs.map((o) => o.name));
  const out = await new Interpreter(graph, precision).run(Engine.inputs(seq), { keep });
  for (const op of window) {
    const bad = op.outputs.some((o) => {
      const t = out.get(o.name);
      return t !== undefined && t.data instanceof Float32Array && t.data.some((v) => !Number.isFinite(v));
    });
    if (bad) return { name: op.name, op: op.op };
  }
  return null;
}

/** How the package was made, which decides what advice can help. */
export interface ConversionSettings {
  fold: boolean;
  rotation: string;
  norm: 'l2' | 'rms';
}

/** Advice that addresses where the first non-finite value appears, or says that no conversion option does. */
export function nonFiniteAdvice(part: ModelPart | undefined, s: ConversionSettings): string {
  const none = 'no rotation or other conversion option changes them (the model itself exceeds float16 there)';
  switch (part) {
    case 'norm':
      if (!s.fold) return 'the LayerNorm squares its input, which overflows float16: convert without --no-fold (the folded model\'s l2 norm does not square)';
      if (s.norm === 'rms') return 'the x*x RMSNorm overflows float16: use --norm l2 (the default), which does not square';
      return `the norm's input exceeds float16; ${none}`;
    case 'residual':
    case 'embedding':
      if (!s.fold) return 'the residual stream exceeds float16 (65504): convert without --no-fold, and if it still overflows, with --rotation hadamard, which spreads an outlier channel over all channels';
      if (s.rotation === 'none') return 'the residual stream exceeds float16 (65504): try --rotation hadamard, which spreads an outlier channel over all channels';
      return `the residual stream exceeds float16 (65504) even with the ${s.rotation} rotation; no rotation fixes it`;
    case 'attention':
      return `the attention (queries, keys, scores) exceeds float16; ${none}`;
    case 'mlp':
      return `the MLP's inner activations exceed float16; ${none}`;
    case 'head':
      return `the output head exceeds float16; ${none}`;
    default:
      return 'the op could not be located';
  }
}

/** One line for a terminal, loud when the emulation broke (with advice when `settings` say how it was made). */
export function formatFidelity(f: FidelityReport, settings?: ConversionSettings): string {
  const head = `fidelity (${f.precision} emulation vs float32, ${f.tokens} tokens of ${f.inputs}):`;
  if (f.non_finite) {
    const n = f.non_finite;
    const where = n.first_layer === null ? 'in the head' : n.first_layer === 0 ? 'in the embeddings' : `after layer ${n.first_layer}`;
    const op = n.first_op ? `, at op ${n.first_op.op} "${n.first_op.name}"` : '';
    const advice = settings ? `: ${nonFiniteAdvice(n.first_op?.part, settings)}` : '';
    return `${head}\n  WARNING: NON-FINITE OUTPUTS on ${n.tokens} tokens; the first NaN/inf appears ${where}${op} (in "${n.sequence.slice(0, 60)}"). This package will not work on the Neural Engine${advice}.`;
  }
  return `${head} KL ${f.kl.toExponential(2)}, top-1 ${(100 * f.top1).toFixed(1)}%, top-5 ${(100 * f.top5).toFixed(1)}%, max |diff| ${f.max_abs_diff.toPrecision(3)}`;
}
