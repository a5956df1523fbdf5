// diff(a, b): two models (checkpoints or packages, each in its own arithmetic) on the same tokens: KL(A || B),
// top-1 / top-5 agreement and the max abs difference of the logits, at [MASK] positions when there are any.

import { ModernBertError } from '../errors.js';
import { assertFinite } from '../numeric/finite.js';
import { AgreementMeter, type Agreement } from '../eval/compare.js';
import { inputsWork, resolveInputs } from '../eval/inputs.js';
import { Interpreter } from '../graph/interpreter.js';
import type { DownloadProgress } from '../hub/resolve.js';
import type { ComputeUnits } from '../run/coreml/session.js';
import { chooseExecutor, type AnyRuntime, type ExecutorChoice } from '../run/executor-choice.js';
import { openModel, type LoadedModel } from '../run/load.js';
import type { Precision } from '../runtime/numerics.js';

/** What diff compares on and how it runs the two models; every option may be left out. */
export interface DiffOptions {
  /** Texts (default: built-in sentences). */
  texts?: string[];
  /** The input ids of a golden file instead (for models without a tokenizer). */
  golden?: string;
  /** This many seeded random token ids instead. */
  random?: number;
  /** Seed of `random` (default 0). */
  seed?: number;
  /** Arithmetic of A and of B (default 'fp32' each). */
  precisionA?: Precision;
  precisionB?: Precision;
  /** What runs each side (default: what suits the work; under 'coreml' a float16 side runs on our engine). */
  runtime?: AnyRuntime;
  computeUnits?: ComputeUnits;
  /** A tokenizer.json (or its folder) when neither model has one. */
  tokenizer?: string;
  headPackageA?: string;
  headPackageB?: string;
  revisionA?: string;
  revisionB?: string;
  /** Told the bytes downloaded so far while a Hub model downloads. */
  download?: DownloadProgress;
  /** Told the inputs done. */
  onProgress?: (done: number, total: number) => void;
  /** What runs each side, chosen beforehand (the commands choose to print the notes). */
  executors?: [ExecutorChoice, ExecutorChoice];
}

/** The agreement of B with A, and how it was measured. */
export interface DiffReport extends Agreement {
  precision_a: Precision;
  precision_b: Precision;
  /** Texts or sequences compared. */
  inputs: number;
}

/** Compares two models (checkpoint folders, packages or Hub ids) on the same inputs. */
export async function diff(a: string, b: string, options: DiffOptions = {}): Promise<DiffReport> {
  const [pa, pb] = [options.precisionA ?? 'fp32', options.precisionB ?? 'fp32'];
  const work = inputsWork(options);
  const choose = (precision: Precision) =>
    chooseExecutor({
      runtime: options.runtime,
      precision,
      computeUnits: options.computeUnits,
      fp16OnEngine: true,
      fallback: (g, p) => new Interpreter(g, p),
      ...(work ? { work } : {}),
    });
  const choices = options.executors ?? [await choose(pa), await choose(pb)];
  const open = (name: string, precision: Precision, choice: ExecutorChoice, headPackage?: string, revision?: string) =>
    openModel(name, {
      precision,
      ...(options.tokenizer === undefined ? {} : { tokenizer: options.tokenizer }),
      ...(headPackage === undefined ? {} : { headPackage }),
      ...(revision === undefined ? {} : { revision }),
      ...(options.download ? { progress: options.download } : {}),
      ...(choice.factory ? { executor: choice.factory } : {}),
    });
  const opened: LoadedModel[] = [];
  try {
    const ma = await open(a, pa, choices[0], options.headPackageA, options.revisionA);
    opened.push(ma);
    const mb = await open(b, pb, choices[1], options.headPackageB, options.revisionB);
    opened.push(mb);
    return { ...(await compare(ma, mb, options)), precision_a: pa, precision_b: pb };
  } finally {
    for (const m of opened) m.close();
    if (!options.executors) for (const c of choices) await c.session?.close();
  }
}

async function compare(a: LoadedModel, b: LoadedModel, o: DiffOptions): Promise<Agreement & { inputs: number }> {
  const tok = a.tokenizer ?? b.tokenizer;
  const ids = { ...a.ids, maxLen: Math.min(a.maxLen, b.maxLen) };
  const seqs = resolveInputs(
    {
      ...(o.texts?.length ? { texts: o.texts } : {}),
      ...(o.golden ? { golden: o.golden } : {}),
      ...(o.random ? { random: o.random } : {}),
      seed: o.seed ?? 0,
    },
    ids,
    tok,
  );
  const meter = new AgreementMeter();
  for (const [i, s] of seqs.entries()) {
    const positions = s.positions ?? s.ids.flatMap((_, k) => (!s.attention || s.attention[k] ? [k] : []));
    const la = (await a.runner.forward(s, { positions })).outputs.get('logits');
    const lb = (await b.runner.forward(s, { positions })).outputs.get('logits');
    if (!la || !lb)
      throw new ModernBertError('BAD_ARGUMENT', 'diff compares logits; one of the models has no "logits" output');
    if (la.shape[1] !== lb.shape[1])
      throw new ModernBertError('SHAPE_MISMATCH', `A has ${la.shape[1]} logits per token, B ${lb.shape[1]}`);
    // NaN or infinity is not a difference to average: the comparison fails, naming the model and the input.
    const input = `on input "${s.label.slice(0, 40)}"`;
    assertFinite(la.data, `A (${a.path}) ${input}: its "logits" output`, la.shape);
    assertFinite(lb.data, `B (${b.path}) ${input}: its "logits" output`, lb.shape);
    meter.add(la.data, lb.data, la.shape[1]!, la.shape.length === 4 ? la.shape[3]! : 1);
    o.onProgress?.(i + 1, seqs.length);
  }
  const r = meter.result();
  if (r.tokens === 0)
    throw new ModernBertError('BAD_INPUT', 'the inputs hold no token to compare at: nothing was compared');
  return { ...r, inputs: seqs.length };
}
