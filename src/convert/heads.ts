// The packages of one body and several heads, from the one graph of model.ts:
// - split: a body package (input_ids -> hidden_states, the whole model with head 'none') and a package per
//   head (hidden_states -> the head's output), each head recording the hash of its body's program and weights;
// - multifunction (iOS 18+): one package, one function per head (and per length with buckets), each holding
//   the whole body, whose constants the writer stores once (coremltools' save_multifunction).
// Heads may come from other checkpoints whose body weights are bit-identical (--add-head).

import { existsSync, rmSync } from 'node:fs';
import { bodyHash } from '../coreml/body-hash.js';
import type { DescriptionOptions } from '../coreml/description.js';
import { writeMLPackage, type FunctionToWrite, type WriteStats } from '../coreml/mil-write.js';
import { checkPackageOutput, type ExtraItem } from '../coreml/package.js';
import { META, type FunctionInfo } from '../coreml/package-info.js';
import { ModernBertError } from '../errors.js';
import type { Checkpoint } from '../model/checkpoint.js';
import { buildHead, buildModel } from '../model/model.js';
import { defaultHead, type BuildOptions, type ModelSource, type OutputHead } from '../model/options.js';
import { atLeast, type Target } from '../ir/target.js';
import type { ModernBertConfig } from '../model/config.js';
import type { Graph } from '../ir/graph.js';

/** A head taken from another checkpoint with the same body (`--add-head [NAME=]DIR`). */
export interface AddedHead {
  /** Function (or head package) name; default: the checkpoint's head kind. */
  name?: string;
  ckpt: Checkpoint;
}

/** How `convert` lays out body and heads. */
export interface HeadsOptions {
  /** Body and head packages apart (else one multifunction package). */
  split: boolean;
  /** The converted checkpoint's own heads, one function (or head package) each; default its head. */
  heads?: OutputHead[];
  added: AddedHead[];
  /** One function per length of --seq-len (static shapes each) instead of enumerated shapes. */
  buckets: boolean;
}

/** One head to write: its name, its weights (the converted checkpoint's or an added one's) and its labels. */
interface HeadPlan {
  name: string;
  head: OutputHead;
  source: ModelSource;
  ckpt: Checkpoint;
}

/** What convert.ts has prepared: the converted weights, the build options and a describer. */
export interface HeadsContext {
  ckpt: Checkpoint;
  out: string;
  force: boolean;
  source: ModelSource;
  /** The converted weights of another checkpoint, prepared exactly as `source` was. */
  prepare: (ckpt: Checkpoint) => ModelSource;
  build: Omit<BuildOptions, 'seqLen' | 'head'>;
  lens: number[];
  target: Target;
  describe: (ckpt: Checkpoint, head: OutputHead, seqLens: number[]) => DescriptionOptions;
  extras: ExtraItem[];
  onProgress?: (done: number, total: number) => void;
}

/** Config fields that the body's computation depends on: an added head's checkpoint must agree on each. */
const BODY_FIELDS: readonly (keyof ModernBertConfig)[] = [
  'vocabSize',
  'hidden',
  'intermediate',
  'numLayers',
  'numHeads',
  'headDim',
  'maxPositions',
  'localWindow',
  'layerTypes',
  'globalRopeTheta',
  'localRopeTheta',
  'normEps',
  'normBias',
  'attentionBias',
  'mlpBias',
  'hiddenActivation',
  'padTokenId',
];

/** Refuses an added checkpoint unless its body (config and every `model.` tensor) is bit-identical to `base`'s. */
export function checkSameBody(base: Checkpoint, other: Checkpoint): void {
  const where = `\`addHeads\` ${other.dir}`;
  for (const f of BODY_FIELDS) {
    if (JSON.stringify(base.config[f]) !== JSON.stringify(other.config[f])) {
      throw new ModernBertError(
        'BAD_INPUT',
        `${where}: its body differs: config ${f} is ${JSON.stringify(other.config[f])}, not ${JSON.stringify(base.config[f])}`,
        { field: f },
      );
    }
  }
  const body = (c: Checkpoint) =>
    c.weights
      .names()
      .filter((n) => n.startsWith('model.'))
      .sort();
  const [a, b] = [body(base), body(other)];
  const missing = a.find((n) => !b.includes(n)) ?? b.find((n) => !a.includes(n));
  if (missing)
    throw new ModernBertError(
      'BAD_INPUT',
      `${where}: its body differs: tensor ${missing} is in only one of the checkpoints`,
      { tensor: missing },
    );
  for (const n of a) {
    const [x, y] = [base.weights.get(n), other.weights.get(n)];
    const same =
      x.shape.join() === y.shape.join() &&
      Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength).equals(
        Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength),
      );
    if (!same)
      throw new ModernBertError(
        'BAD_INPUT',
        `${where}: its body differs: tensor ${n} is not bit-identical (a head needs the very body it was trained on)`,
        { tensor: n },
      );
  }
}

/** Where `convert --split --out BODY.mlpackage` writes the head package `name`: BODY-name.mlpackage beside it. */
export function headPackagePath(out: string, name: string): string {
  return `${out.replace(/\.mlpackage\/?$/, '')}-${name}.mlpackage`;
}

/** The weights a head reads beyond the body (embedding and none read none). */
const HEAD_WEIGHT: Partial<Record<OutputHead, string>> = {
  mlm: 'decoder.weight',
  seqcls: 'classifier.weight',
  tokcls: 'classifier.weight',
};

function plan(ctx: HeadsContext, o: HeadsOptions): HeadPlan[] {
  for (const h of o.heads ?? []) {
    const w = HEAD_WEIGHT[h];
    if (w && !ctx.ckpt.weights.has(w)) {
      throw new ModernBertError(
        'BAD_ARGUMENT',
        `${ctx.ckpt.dir} has no ${h} head (no ${w}; its head is ${defaultHead(ctx.ckpt)}): list its own head, embedding or none, and take other heads from their checkpoints with \`addHeads\``,
        { head: h, option: 'addHeads' },
      );
    }
  }
  const own = (o.heads ?? [defaultHead(ctx.ckpt)]).map((head) => ({
    name: head,
    head,
    source: ctx.source,
    ckpt: ctx.ckpt,
  }));
  const added = o.added.map((a) => {
    checkSameBody(ctx.ckpt, a.ckpt);
    const head = defaultHead(a.ckpt);
    return { name: a.name ?? head, head, source: ctx.prepare(a.ckpt), ckpt: a.ckpt };
  });
  const all = [...own, ...added];
  const names = all.map((p) => p.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `two heads are named "${twice}": name an added one (\`addHeads\`: NAME=DIR)`,
      { name: twice, option: 'addHeads' },
    );
  for (const n of names) checkHeadName(n);
  return all;
}

/** Labels of a head, for the metadata. */
function labelsOf(p: HeadPlan): string[] | undefined {
  return p.head === 'seqcls' || p.head === 'tokcls' ? p.ckpt.config.labels : undefined;
}

/** Refuses what cannot be written, before any work: called first by convert. */
export function checkHeadsOptions(o: HeadsOptions, target: Target, lens: number[]): void {
  if (!o.split && !atLeast(target, 'iOS18')) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `\`functions\`, \`addHeads\` and \`buckets\` write a multifunction package, which needs specification version 9: give \`target: iOS18\` or macOS15 (not ${target}), or \`split\``,
      { target, option: 'target' },
    );
  }
  if (o.split && o.buckets)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      '`buckets` makes one package of several functions; it cannot be combined with `split`',
      { option: 'buckets' },
    );
  if (o.buckets && new Set(lens).size < 2)
    throw new ModernBertError('BAD_ARGUMENT', '`buckets` needs several lengths: `seqLens: 512,2048,8192`', {
      option: 'buckets',
    });
}

/** Writes the body and head packages (split) or the one multifunction package; returns the stats of the body or the package. */
export async function writeHeads(
  ctx: HeadsContext,
  o: HeadsOptions,
): Promise<{ stats: WriteStats; written: string[]; functions: string[] }> {
  checkHeadsOptions(o, ctx.target, ctx.lens);
  const heads = plan(ctx, o);
  return o.split ? writeSplit(ctx, heads) : writeMultifunction(ctx, heads, o.buckets);
}

async function writeSplit(
  ctx: HeadsContext,
  heads: HeadPlan[],
): Promise<{ stats: WriteStats; written: string[]; functions: string[] }> {
  const seqLen = ctx.lens.length === 1 ? ctx.lens[0]! : ctx.lens;
  for (const p of heads)
    if (p.head === 'none')
      throw new ModernBertError('BAD_ARGUMENT', '`split`: head "none" is the body package itself', { option: 'split' });
  const paths = heads.map((p) => headPackagePath(ctx.out, p.name));
  for (const path of paths) checkPackageOutput(path, ctx.force, [ctx.ckpt.dir]);
  // Every graph is built (and so checked) before anything is written.
  const bodyGraph = buildModel(ctx.source, { ...ctx.build, seqLen, head: 'none' });
  const headGraphs = heads.map((p) => buildHead(p.source, { ...ctx.build, seqLen, head: p.head }));
  const bodyDesc = ctx.describe(ctx.ckpt, 'none', ctx.lens);
  bodyDesc.metadata!.userDefined![META.part] = 'body';
  const stats = await writeMLPackage(ctx.out, {
    graph: bodyGraph,
    description: bodyDesc,
    target: ctx.target,
    force: ctx.force,
    protect: [ctx.ckpt.dir],
    extraItems: ctx.extras,
    onProgress: (p) => ctx.onProgress?.(p.constsWritten, p.constsTotal),
  });
  const written = [ctx.out];
  try {
    await writeHeadPackages(ctx, heads, headGraphs, paths, written);
  } catch (e) {
    // A body without its heads is half the output: what this run wrote goes.
    for (const path of written) rmSync(path, { recursive: true, force: true });
    throw e;
  }
  return { stats, written, functions: [] };
}

async function writeHeadPackages(
  ctx: HeadsContext,
  heads: HeadPlan[],
  headGraphs: Graph[],
  paths: string[],
  written: string[],
): Promise<void> {
  const hash = bodyHash(ctx.out);
  for (const [i, p] of heads.entries()) {
    const d = ctx.describe(p.ckpt, p.head, ctx.lens);
    const C = ctx.source.config.hidden;
    const enumerated = ctx.lens.length > 1;
    d.inputs = {
      hidden_states: {
        description: `The body's last hidden state, (1, ${C}, 1, S)`,
        ...(enumerated ? { enumeratedShapes: ctx.lens.map((s) => [1, C, 1, s]) } : {}),
      },
      ...Object.fromEntries(
        Object.entries(d.inputs ?? {}).filter(([n]) => headGraphs[i]!.inputs.some((v) => v.name === n)),
      ),
    };
    const meta = d.metadata!.userDefined!;
    meta[META.part] = 'head';
    meta[META.bodyHash] = hash;
    meta[META.source] = `${meta[META.source]} (head ${p.name})`;
    await writeMLPackage(paths[i]!, {
      graph: headGraphs[i]!,
      description: d,
      target: ctx.target,
      force: ctx.force,
      protect: [ctx.ckpt.dir],
    });
    written.push(paths[i]!);
  }
}

async function writeMultifunction(
  ctx: HeadsContext,
  heads: HeadPlan[],
  buckets: boolean,
): Promise<{ stats: WriteStats; written: string[]; functions: string[] }> {
  const groups = buckets ? ctx.lens.map((s) => [s]) : [ctx.lens];
  const functions: FunctionToWrite[] = [];
  // No prototype: a function's name is a key like any other (names are checked too: checkHeadName).
  const info = Object.create(null) as Record<string, FunctionInfo>;
  for (const p of heads) {
    for (const lens of groups) {
      // With buckets, a function per length: "mlm_s512" (or "s512" for the checkpoint's one head).
      const name = !buckets ? p.name : heads.length === 1 ? `s${lens[0]}` : `${p.name}_s${lens[0]}`;
      const graph = buildModel(p.source, { ...ctx.build, seqLen: lens.length === 1 ? lens[0]! : lens, head: p.head });
      const d = ctx.describe(p.ckpt, p.head, lens);
      functions.push({ name, graph, description: { inputs: d.inputs, outputs: d.outputs } });
      const labels = labelsOf(p);
      info[name] = { head: p.head, ...(labels ? { labels } : {}), ...(buckets ? { seq_len: lens[0]! } : {}) };
    }
  }
  const description = ctx.describe(ctx.ckpt, heads[0]!.head, ctx.lens);
  description.metadata!.userDefined![META.functions] = JSON.stringify(info);
  const stats = await writeMLPackage(ctx.out, {
    graph: functions[0]!.graph,
    functions,
    defaultFunction: functions[0]!.name,
    description: { metadata: description.metadata },
    target: ctx.target,
    force: ctx.force,
    protect: [ctx.ckpt.dir],
    extraItems: ctx.extras,
    onProgress: (p) => ctx.onProgress?.(p.constsWritten, p.constsTotal),
  });
  return { stats, written: [ctx.out], functions: functions.map((f) => f.name) };
}

/** The longest head name: it becomes a function name, a package name suffix and a metadata key. */
const MAX_HEAD_NAME = 64;

/**
 * Checks a head name before it reaches a package (a function name, `OUT-NAME.mlpackage`, a key of the
 * functions metadata): an identifier, and not a property every object has (`__proto__`, `constructor`,
 * `toString`...), which would vanish from or corrupt the metadata. Returns the name.
 */
export function checkHeadName(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || name.length > MAX_HEAD_NAME) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `head name ${JSON.stringify(name.slice(0, 80))} must be an identifier of at most ${MAX_HEAD_NAME} characters ([A-Za-z_][A-Za-z0-9_]*)`,
      { name },
    );
  }
  if (name in Object.prototype)
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `head name "${name}" is reserved (every object has a property of that name): choose another`,
      { name },
    );
  return name;
}

/** Parses `--add-head [NAME=]DIR`, checking NAME (checkHeadName); a DIR that itself holds "=" may be given as ./DIR. */
export function parseAddHead(spec: string): { name?: string; dir: string } {
  const eq = spec.indexOf('=');
  const name = eq > 0 ? spec.slice(0, eq) : undefined;
  if (name === undefined || /[\\/]/.test(name) || existsSync(spec)) return { dir: spec };
  return { name: checkHeadName(name), dir: spec.slice(eq + 1) };
}
