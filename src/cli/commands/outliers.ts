// `outliers MODEL [TEXT...]`: the residual stream's max |activation| per layer, and the channel and token
// carrying it, for the model as trained, folded, and rotated; optionally an SVG chart.

import { basename, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { F16_MAX } from '../../numeric/fp16.js';
import { checkShapes, COMPRESS_MODES, compressSpec } from '../../compress/spec.js';
import { weightCosts } from '../../eval/weight-costs.js';
import { parseTarget } from '../../ir/target.js';
import { Engine } from '../../run/engine.js';
import { releaseMemory } from '../../runtime/shutdown.js';
import { ModernBertError } from '../../errors.js';
import { checkFileOutput, writeOutput } from '../../io/output.js';
import { nonFiniteError } from '../../numeric/finite.js';
import { resolveInputs } from '../../eval/inputs.js';
import { OutlierMeter, type LayerOutliers } from '../../eval/outliers.js';
import { openModel } from '../../run/load.js';
import { lineChartSvg } from '../../report/plot.js';
import { prepareVariant, type VariantSpec } from '../../model/variants.js';
import type { ModernBertConfig } from '../../model/config.js';
import type { WeightSource } from '../../io/weights.js';
import { printJson, progress, type Io } from '../context.js';
import { nonNegativeInt, positiveInt } from '../parse.js';
import { cliExecutorChoice, type RuntimeCliOptions } from '../runtime.js';
import { addRevisionOption, hubOptions, MODEL_HELP } from '../model-source.js';

interface OutliersOptions extends RuntimeCliOptions {
  weights?: boolean;
  compress: string;
  target: string;
  groupSize?: number;
  blockSize?: number;
  rotation: 'none' | 'hadamard';
  top: number;
  golden?: string;
  random?: number;
  seed: number;
  plot?: string;
  force?: boolean;
  revision?: string;
  json?: boolean;
}

const VARIANTS: VariantSpec[] = [
  { fold: false, rotation: 'none', norm: 'l2', seed: 0 },
  { fold: true, rotation: 'none', norm: 'l2', seed: 0 },
  { fold: true, rotation: 'hadamard', norm: 'l2', seed: 0 },
];

/** Registers the outliers command. */
export function registerOutliers(program: Command, io: Io): void {
  const cmd = program
    .command('outliers')
    .description(
      'per layer, the largest |activation| of the residual stream and the channel and token that carry it, before and after folding and rotation',
    )
    .argument('<model>', MODEL_HELP)
    .argument('[text...]', 'texts to run (default: built-in sentences)')
    .option('--golden <file>', 'use the input ids of a golden file')
    .option('--random <n>', 'use n seeded random token ids', positiveInt)
    .option('--seed <n>', 'seed of the Hadamard rotation and of --random', nonNegativeInt, 0)
    .option('--plot <file.svg>', 'draw max |activation| per layer (log scale)')
    .option('--force', 'replace an existing --plot file')
    .option(
      '--weights',
      'instead: per weight tensor, what --compress costs it (relative error, largest weights), costliest first',
    )
    .option('--compress <mode>', `--weights: the mode to cost (${COMPRESS_MODES.join(', ')})`, 'pal4')
    .option('--target <os>', '--weights: the target whose form is costed (iOS18 takes every mode)', 'iOS18')
    .option('--group-size <n>', '--weights: one table per group of n output channels', positiveInt)
    .option('--block-size <n>', '--weights: int4 inputs per scale', positiveInt)
    .addOption(
      new Option('--rotation <kind>', '--weights: the folded weights, rotated so or not')
        .choices(['none', 'hadamard'])
        .default('none'),
    )
    .option('--top <n>', '--weights: largest weights listed per tensor', positiveInt, 3)
    .addOption(
      new Option(
        '--runtime <name>',
        'engine (ours, the default) or ort (onnxruntime-node: about twice as fast on a base-sized model, but it holds each refolded variant twice, its copy and ours: 1.5x the peak memory)',
      ).choices(['ort', 'engine']),
    )
    .option('--json', 'machine-readable output');
  addRevisionOption(cmd).action(async (modelPath: string, texts: string[], o: OutliersOptions) => {
    const plot =
      o.plot === undefined
        ? undefined
        : checkFileOutput(o.plot, { what: '--plot', force: Boolean(o.force), inputs: [modelPath, o.golden] });
    const model = await openModel(modelPath, hubOptions(io, o));
    try {
      if (model.kind !== 'checkpoint' || !model.config || !model.weights)
        throw new ModernBertError('BAD_ARGUMENT', 'outliers needs a checkpoint folder (a package cannot be refolded)');
      const c = model.config;
      if (o.weights) {
        if (texts.length > 0 || o.golden || o.random || o.plot)
          throw new ModernBertError(
            'BAD_ARGUMENT',
            '--weights reads the weights only: it takes no texts, --golden, --random or --plot',
          );
        return printWeightCosts(io, c, model.weights, o);
      }
      const seqs = resolveInputs(
        { texts, golden: o.golden, random: o.random, seed: o.seed },
        {
          vocabSize: c.vocabSize,
          maxLen: c.maxPositions,
          clsTokenId: c.clsTokenId,
          sepTokenId: c.sepTokenId,
          special: [c.padTokenId, model.tokenizer?.maskTokenId ?? -1],
        },
        model.tokenizer,
      );
      // Each variant is a model of its own that runs every input (on onnxruntime only when asked: see --runtime).
      const { factory } = await cliExecutorChoice({ ...o, runtime: o.runtime ?? 'engine' }, 'fp32', io);
      const taps = Array.from({ length: c.numLayers + 1 }, (_, i) => `residual.${i}`);
      const bar = progress(io, 'outliers', Boolean(o.json));
      const results: Record<string, LayerOutliers[]> = {};
      let done = 0;
      for (const spec of VARIANTS) {
        const v = prepareVariant({ config: c, weights: model.weights }, { ...spec, seed: o.seed });
        const engine = new Engine(v.source, { norm: v.norm }, factory, { runs: seqs.length });
        const meter = new OutlierMeter();
        for (const [i, s] of seqs.entries()) {
          // Only the residual stream is read: no head (the MLM head's decoder weight alone is 50,368 x 768).
          const res = await engine.forward(s, { taps, head: 'none', positions: [0] });
          const real = s.ids.flatMap((_, k) => (!s.attention || s.attention[k] ? [k] : []));
          meter.add(
            taps.map((t) => res.taps.get(t)!),
            real,
            i,
          );
          bar.update(++done, VARIANTS.length * seqs.length);
        }
        await engine.release();
        results[v.name] = meter.result();
        await releaseMemory(); // this variant's weights, before the next one's are made
        const bad = results[v.name]!.find((l) => !Number.isFinite(l.max));
        if (bad)
          throw nonFiniteError(
            `the ${v.name} model's residual stream`,
            bad.max,
            `after layer ${bad.layer} (channel ${bad.channel}, token ${bad.token})`,
            'its weights are not finite or overflow float32; nothing was printed',
          );
      }
      bar.stop();
      if (plot) {
        writeOutput(
          plot,
          lineChartSvg({
            // The model's name, never a path of this machine (the file may be shared).
            title: `Residual stream outliers: ${model.source?.id ?? basename(resolve(model.path))}`,
            references: [{ y: F16_MAX, label: "float16's largest value, 65,504" }],
            xLabel: 'layer (0 = embeddings)',
            yLabel: 'max |activation|',
            logY: true,
            series: Object.entries(results).map(([name, ls]) => ({
              name,
              points: ls.map((l) => [l.layer, l.max] as [number, number]),
            })),
          }),
        );
      }
      if (o.json) return printJson(io, { sequences: seqs.length, variants: results, plot: o.plot ?? null });
      const names = Object.keys(results);
      io.stdout(
        `${'layer'.padEnd(6)}${names.map((n) => `${n} max`.padStart(16) + '  chan:tok'.padEnd(12)).join('')}\n`,
      );
      for (let l = 0; l <= c.numLayers; l++) {
        io.stdout(
          `${String(l).padEnd(6)}${names
            .map((n) => {
              const r = results[n]![l]!;
              return r.max.toPrecision(4).padStart(16) + `  ${r.channel}:${r.token}`.padEnd(12);
            })
            .join('')}\n`,
        );
      }
      if (o.plot) io.stdout(`plot written to ${o.plot}\n`);
    } finally {
      model.close();
    }
  });
}

/** --weights: per weight tensor, the relative error the compression mode gives it, costliest first. */
function printWeightCosts(io: Io, c: ModernBertConfig, weights: WeightSource, o: OutliersOptions): void {
  const spec = compressSpec({
    mode: o.compress,
    target: parseTarget(o.target),
    groupSize: o.groupSize,
    blockSize: o.blockSize,
    weights: 'fp16',
  });
  const v = prepareVariant({ config: c, weights }, { fold: true, rotation: o.rotation, norm: 'l2', seed: o.seed });
  checkShapes(
    spec,
    v.source.weights.names().map((name) => ({ name, shape: v.source.weights.shape(name) })),
  );
  const costs = weightCosts(v.source.weights, spec, o.top);
  if (o.json) {
    printJson(io, { mode: spec.mode, variant: v.name, tensors: costs });
    return;
  }
  io.stdout(`${spec.mode} on the ${v.name} weights: relative error ||W - W'|| / ||W||, costliest first\n`);
  const width = Math.max(6, ...costs.map((t) => t.name.length));
  io.stdout(`${'tensor'.padEnd(width)}  ${'shape'.padEnd(12)}  rel. error  max |w|   largest weights\n`);
  for (const t of costs) {
    const big = t.largest.map((l) => `[${l.index.join(',')}] ${l.value.toPrecision(3)}`).join(', ');
    io.stdout(
      `${t.name.padEnd(width)}  ${t.shape.join('x').padEnd(12)}  ${t.relError.toExponential(2).padStart(10)}  ${t.maxAbs.toPrecision(3).padStart(7)}   ${big}\n`,
    );
  }
}
