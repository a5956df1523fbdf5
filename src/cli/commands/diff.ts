// `diff A B [TEXT...]`: two models (checkpoints or packages, each in its own arithmetic) on the same tokens:
// KL(A || B), top-1 / top-5 agreement and the max abs difference of the logits.

import type { Command } from 'commander';
import { ModernBertError } from '../../errors.js';
import { assertFinite } from '../../numeric/finite.js';
import { AgreementMeter } from '../../eval/compare.js';
import { resolveInputs } from '../../eval/inputs.js';
import { openModel } from '../../run/load.js';
import type { Precision } from '../../runtime/numerics.js';
import { printJson, progress, type Io } from '../context.js';
import { nonNegativeInt, positiveInt, precision } from '../parse.js';
import { addRuntimeOptions, cliExecutor, type RuntimeCliOptions } from '../runtime.js';
import { addRevisionOption, hubOptions, MODEL_HELP } from '../model-source.js';

interface DiffOptions extends RuntimeCliOptions {
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
    .description('compare two models on the same inputs: KL(A || B) averaged over tokens, top-1/top-5 agreement, max abs difference of the logits (at [MASK] positions when there are any, else every token)')
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
  addRuntimeOptions(addRevisionOption(addRevisionOption(cmd, 'a'), 'b'))
    .action(async (pathA: string, pathB: string, texts: string[], o: DiffOptions) => {
      // --runtime applies to the float32 sides; a float16 emulation side always runs on our engine.
      const said = new Set<string>();
      const a = await openModel(pathA, { precision: o.precisionA, tokenizerDir: o.tokenizer, headPackage: o.headPackageA, executor: await cliExecutor(o, o.precisionA, io, said, true), ...hubOptions(io, { revision: o.revisionA, json: o.json }) });
      const b = await openModel(pathB, { precision: o.precisionB, tokenizerDir: o.tokenizer, headPackage: o.headPackageB, executor: await cliExecutor(o, o.precisionB, io, said, true), ...hubOptions(io, { revision: o.revisionB, json: o.json }) });
      const bar = progress(io, 'diff', Boolean(o.json));
      try {
        const tok = a.tokenizer ?? b.tokenizer;
        const ids = { ...a.ids, maxLen: Math.min(a.maxLen, b.maxLen) };
        const seqs = resolveInputs({ texts, golden: o.golden, random: o.random, seed: o.seed }, ids, tok);
        const meter = new AgreementMeter();
        for (const [i, s] of seqs.entries()) {
          const positions = s.positions ?? s.ids.flatMap((_, k) => (!s.attention || s.attention[k] ? [k] : []));
          const ra = (await a.runner.forward(s, { positions })).outputs;
          const rb = (await b.runner.forward(s, { positions })).outputs;
          const la = ra.get('logits');
          const lb = rb.get('logits');
          if (!la || !lb) throw new ModernBertError('BAD_ARGUMENT', 'diff compares logits; one of the models has no "logits" output');
          if (la.shape[1] !== lb.shape[1]) throw new ModernBertError('SHAPE_MISMATCH', `A has ${la.shape[1]} logits per token, B ${lb.shape[1]}`);
          const P = la.shape.length === 4 ? la.shape[3]! : 1;
          const input = `on input "${s.label.slice(0, 40)}"`;
          assertFinite(la.data, `A (${pathA}, ${o.precisionA}) ${input}: its "logits" output`, la.shape);
          assertFinite(lb.data, `B (${pathB}, ${o.precisionB}) ${input}: its "logits" output`, lb.shape);
          meter.add(la.data, lb.data, la.shape[1]!, P);
          bar.update(i + 1, seqs.length);
        }
        bar.stop();
        const r = meter.result();
        if (r.tokens === 0) throw new ModernBertError('BAD_INPUT', 'the inputs hold no token to compare at: nothing was compared');
        if (o.json) return printJson(io, { kl: r.kl, top1: r.top1, top5: r.top5, max_abs_diff: r.max_abs_diff, tokens: r.tokens, precision_a: o.precisionA, precision_b: o.precisionB });
        io.stdout(`A: ${pathA} (${o.precisionA})\nB: ${pathB} (${o.precisionB})\n`);
        io.stdout(`KL(A || B) ${r.kl.toExponential(3)}  top-1 ${(100 * r.top1).toFixed(2)}%  top-5 ${(100 * r.top5).toFixed(2)}%  max |diff| ${r.max_abs_diff.toPrecision(4)}  over ${r.tokens} tokens of ${seqs.length} inputs\n`);
      } finally {
        bar.stop();
        a.close();
        b.close();
      }
    });
}
