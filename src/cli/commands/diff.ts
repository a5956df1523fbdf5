// `diff A B [TEXT...]`: two models (checkpoints or packages, each in its own arithmetic) on the same tokens:
// KL(A || B), top-1 / top-5 agreement and the max abs difference of the logits.

import type { Command } from 'commander';
import { diff } from '../../api/diff.js';
import { inputsWork } from '../../eval/inputs.js';
import type { Precision } from '../../runtime/numerics.js';
import { printJson, progress, type Io } from '../context.js';
import { nonNegativeInt, positiveInt, precision } from '../parse.js';
import { addRuntimeOptions, cliExecutorChoice, type RuntimeCliOptions } from '../runtime.js';
import { addRevisionOption, downloadProgress, MODEL_HELP } from '../model-source.js';

interface DiffCliOptions extends RuntimeCliOptions {
  precisionA: Precision;
  precisionB: Precision;
  golden?: string;
  random?: number;
  seed: number;
  tokenizer?: string;
  headPackageA?: string;
  headPackageB?: string;
  revisionA?: string;
  revisionB?: string;
  json?: boolean;
}

/** Registers the diff command. */
export function registerDiff(program: Command, io: Io): void {
  const cmd = program
    .command('diff')
    .description(
      'compare two models on the same inputs: KL(A || B) averaged over tokens, top-1/top-5 agreement, max abs difference of the logits (at [MASK] positions when there are any, else every token)',
    )
    .argument('<a>', `.mlpackage, ${MODEL_HELP}`)
    .argument('<b>', '.mlpackage, checkpoint folder or Hub id, as A')
    .argument('[text...]', 'texts (default: built-in sentences)')
    .option('--precision-a <mode>', 'arithmetic of A: fp32, fp16, fp16-fused, fp16-acc16', precision, 'fp32')
    .option('--precision-b <mode>', 'arithmetic of B', precision, 'fp32')
    .option('--golden <file>', 'use the input ids of a golden file (for models without a tokenizer)')
    .option('--random <n>', 'use n seeded random token ids', positiveInt)
    .option('--seed <n>', 'seed of --random', nonNegativeInt, 0)
    .option('--tokenizer <dir>', 'folder with tokenizer.json, when neither model has one')
    .option('--head-package-a <path>', 'a head package (convert --split) to run on A, a body package')
    .option('--head-package-b <path>', 'a head package to run on B, a body package')
    .option('--json', 'machine-readable output');
  addRuntimeOptions(addRevisionOption(addRevisionOption(cmd, 'a'), 'b')).action(
    async (pathA: string, pathB: string, texts: string[], o: DiffCliOptions) => {
      const said = new Set<string>();
      // Both sides run every input: the work is known from the inputs.
      const work = inputsWork({ texts, golden: o.golden, random: o.random });
      const executors = [
        await cliExecutorChoice(o, o.precisionA, io, said, work, true),
        await cliExecutorChoice(o, o.precisionB, io, said, work, true),
      ] as const;
      const bar = progress(io, 'diff', Boolean(o.json));
      try {
        const r = await diff(pathA, pathB, {
          texts,
          golden: o.golden,
          random: o.random,
          seed: o.seed,
          precisionA: o.precisionA,
          precisionB: o.precisionB,
          tokenizer: o.tokenizer,
          headPackageA: o.headPackageA,
          headPackageB: o.headPackageB,
          revisionA: o.revisionA,
          revisionB: o.revisionB,
          download: downloadProgress(io, Boolean(o.json)),
          executors: [...executors],
          onProgress: (d, t) => bar.update(d, t),
        });
        bar.stop();
        if (o.json)
          return printJson(io, {
            kl: r.kl,
            top1: r.top1,
            top5: r.top5,
            max_abs_diff: r.max_abs_diff,
            tokens: r.tokens,
            precision_a: o.precisionA,
            precision_b: o.precisionB,
          });
        io.stdout(`A: ${pathA} (${o.precisionA})\nB: ${pathB} (${o.precisionB})\n`);
        io.stdout(
          `KL(A || B) ${r.kl.toExponential(3)}  top-1 ${(100 * r.top1).toFixed(2)}%  top-5 ${(100 * r.top5).toFixed(2)}%  max |diff| ${r.max_abs_diff.toPrecision(4)}  over ${r.tokens} tokens of ${r.inputs} inputs\n`,
        );
      } finally {
        bar.stop();
      }
    },
  );
}
