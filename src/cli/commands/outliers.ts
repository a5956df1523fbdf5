// `outliers MODEL [TEXT...]`: the residual stream's max |activation| per layer, and the channel and token
// carrying it, for the model as trained, folded, and rotated; optionally an SVG chart.

import type { Command } from 'commander';
import { Engine } from '../../engine.js';
import { ModernBertError } from '../../errors.js';
import { checkFileTarget, writeTextFile } from '../../fs-errors.js';
import { resolveInputs } from '../../eval/inputs.js';
import { OutlierMeter, type LayerOutliers } from '../../eval/outliers.js';
import { openModel } from '../../load.js';
import { lineChartSvg } from '../../report/plot.js';
import { prepareVariant, type VariantSpec } from '../../variants.js';
import { printJson, progress, type Io } from '../context.js';
import { nonNegativeInt, positiveInt } from '../parse.js';

interface OutliersOptions {
  golden?: string;
  random?: number;
  seed: number;
  plot?: string;
  json?: boolean;
}

const VARIANTS: VariantSpec[] = [
  { fold: false, rotation: 'none', norm: 'l2', seed: 0 },
  { fold: true, rotation: 'none', norm: 'l2', seed: 0 },
  { fold: true, rotation: 'hadamard', norm: 'l2', seed: 0 },
];

/** Registers the outliers command. */
export function registerOutliers(program: Command, io: Io): void {
  program
    .command('outliers')
    .description('per layer, the largest |activation| of the residual stream and the channel and token that carry it, before and after folding and rotation')
    .argument('<model>', 'checkpoint folder')
    .argument('[text...]', 'texts to run (default: built-in sentences)')
    .option('--golden <file>', 'use the input ids of a golden file')
    .option('--random <n>', 'use n seeded random token ids', positiveInt)
    .option('--seed <n>', 'seed of the Hadamard rotation and of --random', nonNegativeInt, 0)
    .option('--plot <file.svg>', 'draw max |activation| per layer (log scale)')
    .option('--json', 'machine-readable output')
    .action(async (modelPath: string, texts: string[], o: OutliersOptions) => {
      if (o.plot !== undefined) checkFileTarget(o.plot, '--plot');
      const model = await openModel(modelPath);
      try {
        if (model.kind !== 'checkpoint' || !model.config || !model.weights) throw new ModernBertError('BAD_ARGUMENT', 'outliers needs a checkpoint folder (a package cannot be refolded)');
        const c = model.config;
        const seqs = resolveInputs({ texts, golden: o.golden, random: o.random, seed: o.seed }, { vocabSize: c.vocabSize, maxLen: c.maxPositions, clsTokenId: c.clsTokenId, sepTokenId: c.sepTokenId, special: [c.padTokenId, model.tokenizer?.maskTokenId ?? -1] }, model.tokenizer);
        const taps = Array.from({ length: c.numLayers + 1 }, (_, i) => `residual.${i}`);
        const bar = progress(io, 'outliers', Boolean(o.json));
        const results: Record<string, LayerOutliers[]> = {};
        let done = 0;
        for (const spec of VARIANTS) {
          const v = prepareVariant({ config: c, weights: model.weights }, { ...spec, seed: o.seed });
          const engine = new Engine(v.source, { norm: v.norm });
          const meter = new OutlierMeter();
          for (const [i, s] of seqs.entries()) {
            // The head is not needed: positions [0] keeps the decoder to one column.
            const res = await engine.forward(s, { taps, positions: model.head === 'mlm' || model.head === 'tokcls' ? [0] : undefined });
            const real = s.ids.flatMap((_, k) => (!s.attention || s.attention[k] ? [k] : []));
            meter.add(taps.map((t) => res.taps.get(t)!), real, i);
            bar.update(++done, VARIANTS.length * seqs.length);
          }
          results[v.name] = meter.result();
        }
        bar.stop();
        if (o.plot) {
          writeTextFile(o.plot, lineChartSvg({
            title: `Residual stream outliers: ${modelPath}`,
            xLabel: 'layer (0 = embeddings)',
            yLabel: 'max |activation|',
            logY: true,
            series: Object.entries(results).map(([name, ls]) => ({ name, points: ls.map((l) => [l.layer, l.max] as [number, number]) })),
          }), '--plot');
        }
        if (o.json) return printJson(io, { sequences: seqs.length, variants: results, plot: o.plot ?? null });
        const names = Object.keys(results);
        io.stdout(`${'layer'.padEnd(6)}${names.map((n) => `${n} max`.padStart(16) + '  chan:tok'.padEnd(12)).join('')}\n`);
        for (let l = 0; l <= c.numLayers; l++) {
          io.stdout(`${String(l).padEnd(6)}${names.map((n) => {
            const r = results[n]![l]!;
            return r.max.toPrecision(4).padStart(16) + `  ${r.channel}:${r.token}`.padEnd(12);
          }).join('')}\n`);
        }
        if (o.plot) io.stdout(`plot written to ${o.plot}\n`);
      } finally {
        model.close();
      }
    });
}
