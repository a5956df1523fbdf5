// How closely a converted model, in a float16 emulation, follows the float32 checkpoint: KL, top-1/top-5
// agreement and max abs difference of the logits over every real token of the calibration inputs. When
// the emulation produces NaN or infinity, the report says so and names the first layer and op where it
// appears (fidelity-text.ts words it, with the advice that addresses that cause).

import { Engine } from '../run/engine.js';
import type { ExecutorFactory, ForwardOptions, Sequence } from '../run/runner.js';
import { defaultHead, type ModelSource, type NormStyle, type OutputHead } from '../model/options.js';
import { assertFinite } from '../numeric/finite.js';
import { DEFAULT_PACK, DEFAULT_WINDOW, packTexts } from '../model/pack-texts.js';
import type { Precision } from '../runtime/numerics.js';
import { releaseMemory, shutdownRuntime } from '../runtime/shutdown.js';
import { Interpreter } from '../graph/interpreter.js';
import { floats, type RtTensor } from '../runtime/tensor.js';
import { ModernBertError } from '../errors.js';
import { AgreementMeter } from './compare.js';
import { compareInto, comparedOf, firstNonFiniteVector, vectorOf, type Compared } from './compared.js';
import type { ProbeSequence } from './inputs.js';
import { OutlierMeter } from './outliers.js';

export interface FidelityReport {
  /** The emulation mode of the converted model (the reference is float32). */
  precision: Precision;
  /** The head whose output was compared: the one the package ships. */
  head: OutputHead;
  /** Texts per window, when the package is packed (convert --pack) and was measured packed. */
  pack?: number;
  /** KL, top-1 and top-5 of the softmax of each compared vector (logits; for an embedding, of its values). */
  kl: number;
  top1: number;
  top5: number;
  max_abs_diff: number;
  tokens: number;
  sequences: number;
  /** What the inputs were: 'built-in sentences', 'calibration file', 'random ids', ... */
  inputs: string;
  /** For an embedding or hidden state: cosine similarity of each compared vector to the float32 one. */
  cosine?: { mean: number; min: number };
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

/** The form of the package whose fidelity is measured: the head it ships, and packing (convert --pack). */
export interface FidelityForm {
  /** The head the package outputs (default: the model's own). */
  head?: OutputHead;
  /** Texts per window; the calibration texts are then packed into windows of `window` tokens, as the package runs them. */
  pack?: number;
  window?: number;
}

/** One forward pass of the measurement, and how its output splits into the vectors that are compared. */
interface Probe {
  seq: Sequence;
  options: ForwardOptions;
  /** The calibration sequence it stands for (the first, when packed), for messages. */
  first: ProbeSequence;
  /** Rows of a packed pooled output (1, K, C) that hold texts. */
  rows?: number;
  /** The positions of real tokens (not padding), for the per-layer measures. */
  real: number[];
  /** Texts packed only to save passes: each alone, and its vectors' span in this probe's. */
  alone?: { probe: Probe; from: number; count: number }[];
}

/**
 * The passes that run the calibration sequences in `form`: one per packed window of the package's, else one
 * per sequence, except that a per-token head sees each packed text exactly as alone (masked keys add
 * exactly 0, rotary positions restart per text), so unpadded sequences then go several to a window: a
 * runtime with a costly run (onnxruntime) makes one pass, not one per sentence.
 */
function probesOf(seqs: ProbeSequence[], form: FidelityForm, reference: ModelSource): Probe[] {
  const head = form.head;
  const pad = reference.config.padTokenId;
  const single = (s: ProbeSequence): Probe => ({
    seq: s,
    options: { positions: positionsOf(s), ...(head ? { head } : {}) },
    first: s,
    real: realPositions(s),
  });
  if (form.pack === undefined) {
    const window = Math.min(DEFAULT_WINDOW, reference.config.maxPositions);
    const perToken = ['mlm', 'tokcls', 'none'].includes(head ?? defaultHead(reference));
    const packable = (s: ProbeSequence) =>
      perToken && (!s.attention || Array.from(s.attention).every((a) => a)) && s.ids.length <= window;
    const probes = seqs.filter((s) => !packable(s)).map(single);
    const packed = seqs.filter(packable);
    for (const w of packTexts(
      packed.map((s) => s.ids),
      window,
      DEFAULT_PACK,
      pad,
    )) {
      const texts = w.texts.map((t) => packed[t]!);
      const positions = Array.from(
        { length: w.starts[w.starts.length - 1]! + texts[texts.length - 1]!.ids.length },
        (_, i) => i,
      );
      // The window's padding past its last text is left out: it changes no real token (a text attends only
      // to its own segment), and every pass would compute it (synth-base's sentences: 470 of 512 tokens). A
      // window shorter than DEFAULT_PACK tokens holds at most a text per token.
      const used = positions.length;
      probes.push({
        seq: { ids: w.ids.slice(0, used), segments: w.segments.slice(0, used) },
        options: { positions, pack: Math.min(DEFAULT_PACK, used), ...(head ? { head } : {}) },
        first: texts[0]!,
        real: positions,
        alone: texts.map((s, k) => ({ probe: single(s), from: w.starts[k]!, count: s.ids.length })),
      });
    }
    return probes;
  }
  const window = form.window ?? Math.max(...seqs.map((s) => s.ids.length));
  // A text longer than the package's window is cut to it, as the package takes it (keeping the closing token).
  const texts = seqs.map((s) =>
    s.ids.length <= window ? s.ids : [...s.ids.slice(0, window - 1), s.ids[s.ids.length - 1]!],
  );
  const windows = packTexts(texts, window, form.pack, pad);
  return windows.map((w) => {
    const real = w.segments.flatMap((g, i) => (g > 0 ? [i] : []));
    return {
      seq: { ids: w.ids, segments: w.segments },
      options: { positions: real, pack: form.pack, ...(head ? { head } : {}) },
      first: seqs[w.texts[0]!]!,
      rows: w.texts.length,
      real,
    };
  });
}

const positionsOf = (s: ProbeSequence) => s.ids.map((_, i) => i);

/** A probe's compared vectors and residual taps. */
async function runProbe(engine: Engine, p: Probe, taps: string[]): Promise<{ out: Compared; residuals: RtTensor[] }> {
  const res = await engine.forward(p.seq, { ...p.options, taps });
  return { out: comparedOf(res.outputs, p.rows), residuals: taps.map((t) => res.taps.get(t)!) };
}

/** The float32 checkpoint's side of a measurement: each probe's compared output, and each layer's max |activation|. */
export interface ReferenceRun {
  outputs: Compared[];
  maxima: number[];
}

/**
 * Runs the float32 checkpoint over the calibration sequences in `form`: what measureFidelity compares the
 * converted model with. It needs nothing of the conversion, so it can run while the conversion works
 * (reference-thread.ts). `tick` is called after each pass.
 */
export async function runReference(
  reference: ModelSource,
  seqs: ProbeSequence[],
  form: FidelityForm,
  executor?: ExecutorFactory,
  tick?: () => void,
): Promise<ReferenceRun> {
  const probes = probesOf(seqs, form, reference);
  const outliers = new OutlierMeter();
  const outputs = await runAll(reference, probes, outliers, executor, tick);
  return { outputs, maxima: outliers.result(0).map((l) => l.max) };
}

// In a function of its own, so that nothing of the engine outlives the call (a suspended async frame
// can keep a block's variables alive).
async function runAll(
  source: ModelSource,
  probes: Probe[],
  outliers: OutlierMeter,
  executor?: ExecutorFactory,
  tick?: () => void,
): Promise<Compared[]> {
  const engine = new Engine(source, { precision: 'fp32', norm: 'layernorm' }, executor, { runs: probes.length });
  const taps = residualTaps(source.config.numLayers);
  const outputs: Compared[] = [];
  for (const [i, p] of probes.entries()) {
    const { out, residuals } = await runProbe(engine, p, taps);
    // The float32 checkpoint itself must give finite results, or there is nothing to compare with.
    const j = firstNonFiniteVector(out);
    if (j >= 0)
      assertFinite(
        vectorOf(out, j),
        `the float32 checkpoint's "${out.name}" output on "${p.first.label.slice(0, 40)}" (vector ${j})`,
        [out.size],
        'its weights are not finite or overflow float32; nothing was written',
      );
    outputs.push(out);
    outliers.add(residuals, p.real, i);
    tick?.();
  }
  await engine.release();
  return outputs;
}

/** Probes per engine session in measureFidelity: the emulated residual streams of a chunk are held at once. */
const CHUNK = 8;

const residualTaps = (layers: number) => Array.from({ length: layers + 1 }, (_, i) => `residual.${i}`);
const realPositions = (s: ProbeSequence) => s.ids.flatMap((_, k) => (!s.attention || s.attention[k] ? [k] : []));

/** ||a - b||^2 and ||b||^2 of each layer's stream over the real tokens, accumulated across sequences. */
class LayerErrorMeter {
  readonly diff: number[] = [];
  readonly norm: number[] = [];
  readonly finite: boolean[] = [];
  add(a: RtTensor[], b: RtTensor[], real: number[]): void {
    const at = Int32Array.from(real);
    a.forEach((t, l) => {
      const [C, S] = [t.shape[1]!, t.shape[3]!];
      const [x, y] = [floats(t, 'a residual stream'), floats(b[l]!, 'a residual stream')];
      let d = 0;
      let n = 0;
      for (let c = 0; c < C; c++) {
        const row = c * S;
        for (let k = 0; k < at.length; k++) {
          const i = row + at[k]!;
          d += (x[i]! - y[i]!) ** 2;
          n += y[i]! * y[i]!;
        }
      }
      this.diff[l] = (this.diff[l] ?? 0) + d;
      this.norm[l] = (this.norm[l] ?? 0) + n;
      this.finite[l] = (this.finite[l] ?? true) && Number.isFinite(d);
    });
  }
}

/**
 * Measures `converted` (run in `precision`) against `reference` (float32, as trained), in the form the
 * package ships (`form`: its head, packed or not). The two engines run one after the other, so only one
 * model's weights are held at a time, unless `referenceRun` (runReference's result for the same arguments)
 * was started beforehand (when it gives undefined, the reference runs here). An embedding (or hidden state)
 * is also compared by cosine similarity.
 */
export async function measureFidelity(
  reference: ModelSource,
  converted: { source: ModelSource; norm: NormStyle },
  seqs: ProbeSequence[],
  precision: Precision,
  inputs: string,
  onProgress?: (done: number, total: number) => void,
  form: FidelityForm = {},
  executor?: ExecutorFactory,
  referenceRun?: Promise<ReferenceRun | undefined>,
): Promise<FidelityReport> {
  const probes = probesOf(seqs, form, reference);
  const total = probes.length * 2;
  let done = 0;
  const given = await referenceRun;
  const ref = given ?? (await runReference(reference, seqs, form, executor, () => onProgress?.(++done, total)));
  if (ref.outputs.length !== probes.length)
    throw new ModernBertError(
      'INTERNAL',
      `the reference run has ${ref.outputs.length} passes where the measurement has ${probes.length}`,
    );
  const refs = ref.outputs;
  if (given) onProgress?.((done = probes.length), total);
  // The reference model, when it ran here, is unreachable now (runReference's frame is gone): free it before the
  // converted one loads (two full collections, 50 ms after a conversion; nothing to free when it ran elsewhere).
  if (!given) await releaseMemory();
  // Each engine runs a chunk of probes (below), then is released.
  const use = { runs: Math.min(CHUNK, probes.length) };
  const engine = new Engine(converted.source, { precision, norm: converted.norm }, executor, use);
  // The converted weights in float32 arithmetic (they share the weight cache), for the per-layer error.
  const exact = new Engine(converted.source, { precision: 'fp32', norm: converted.norm }, executor, use);
  const taps = residualTaps(reference.config.numLayers);
  const [emulatedOutliers, convertedOutliers, layerErrors] = [
    new OutlierMeter(),
    new OutlierMeter(),
    new LayerErrorMeter(),
  ];
  const meter = new AgreementMeter();
  const head = form.head ?? defaultHead(reference);
  // Cosine similarity is reported for vectors that are not logits.
  const byCosine = head === 'embedding' || head === 'none';
  const cosines: number[] = [];
  let firstBad: ProbeSequence | undefined;
  // The emulation first, then the converted weights in float32, a few probes at a time with the emulated
  // residual streams kept in between: on onnxruntime each engine is a session holding its own copy of the
  // weights, so only one of them is alive at once.
  for (let from = 0; from < probes.length; from += CHUNK) {
    const units: { p: Probe; i: number; residuals: RtTensor[] }[] = [];
    for (const [k, p] of probes.slice(from, from + CHUNK).entries()) {
      const i = from + k;
      const e = await runProbe(engine, p, taps);
      // A NaN or infinity in one text packed to save passes reaches the others (0 x inf in attention's
      // weighted sum): such a window is measured again text by text, as each would run alone.
      const again = p.alone && firstNonFiniteVector(e.out) >= 0;
      const each = [{ p, e, from: 0 }];
      if (again) {
        each.length = 0;
        for (const a of p.alone!) each.push({ p: a.probe, e: await runProbe(engine, a.probe, taps), from: a.from });
      }
      for (const u of each) {
        emulatedOutliers.add(u.e.residuals, u.p.real, i);
        const before = meter.result().non_finite;
        compareInto(meter, refs[i]!, u.from, u.e.out);
        if (byCosine)
          for (let j = 0; j < u.e.out.count; j++)
            cosines.push(cosine(vectorOf(refs[i]!, u.from + j), vectorOf(u.e.out, j)));
        if (!firstBad && meter.result().non_finite > before) firstBad = u.p.first;
        units.push({ p: u.p, i, residuals: u.e.residuals });
      }
      onProgress?.(++done, total);
    }
    await engine.release();
    for (const u of units) {
      // Only its residual stream is read: no head, the hidden state at one position (the MLM head's decoder,
      // even at one position, cast its whole 50,368 x 768 weight to float32 on onnxruntime).
      const options = { ...u.p.options, head: 'none' as const, positions: [0] };
      const f = await runProbe(exact, { ...u.p, options, rows: 1 }, taps);
      convertedOutliers.add(f.residuals, u.p.real, u.i);
      layerErrors.add(u.residuals, f.residuals, u.p.real);
    }
    await exact.release();
  }
  const r = meter.result();
  const [conv, emu] = [convertedOutliers.result(0), emulatedOutliers.result(0)];
  const layers = ref.maxima.map((max, k): LayerFidelity => ({
    layer: k,
    rel_error:
      layerErrors.finite[k] && layerErrors.norm[k]! > 0 ? Math.sqrt(layerErrors.diff[k]! / layerErrors.norm[k]!) : null,
    reference_max: max,
    converted_max: conv[k]!.max,
    emulated_max: emu[k]!.max,
  }));
  const report: FidelityReport = {
    precision,
    head,
    ...(form.pack === undefined ? {} : { pack: form.pack }),
    kl: r.kl,
    top1: r.top1,
    top5: r.top5,
    max_abs_diff: r.max_abs_diff,
    tokens: r.tokens,
    sequences: seqs.length,
    inputs,
    layers,
  };
  if (byCosine) {
    const finite = cosines.filter((c) => Number.isFinite(c));
    report.cosine = {
      mean: finite.reduce((a, b) => a + b, 0) / Math.max(1, finite.length),
      min: finite.length === cosines.length ? Math.min(...finite) : -Infinity,
    };
  }
  if (firstBad) {
    const layers = reference.config.numLayers;
    const taps = Array.from({ length: layers + 1 }, (_, i) => `residual.${i}`);
    const res = await engine.forward(firstBad, { positions: positionsOf(firstBad), taps });
    const first = taps.findIndex((t) => res.taps.get(t)!.data.some((v) => !Number.isFinite(v)));
    const op = await firstNonFiniteOp(engine, precision, firstBad, first < 0 ? layers + 1 : first);
    report.non_finite = {
      tokens: r.non_finite,
      sequence: firstBad.label,
      first_layer: first < 0 ? null : first,
      first_op: op && { ...op, part: partOf(op.name) },
    };
  }
  await engine.release();
  await exact.release();
  await shutdownRuntime();
  return report;
}

/** Cosine similarity of two vectors (NaN when either is not finite). */
function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb);
}

/**
 * The first op whose output is not finite, searched only among the ops between the last finite residual
 * tap and the first non-finite one (`firstBadTap`; past the last tap: the head), so that only one layer's
 * values are held at a time.
 */
async function firstNonFiniteOp(
  engine: Engine,
  precision: Precision,
  seq: ProbeSequence,
  firstBadTap: number,
): Promise<{ name: string; op: string } | null> {
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
