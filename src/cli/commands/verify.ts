// `verify MODEL --golden FILE`: max abs difference against golden outputs, per case; exit 1 above tolerance.

import type { Command } from 'commander';
import { verify } from '../../api/verify.js';
import type { Precision } from '../../runtime/numerics.js';
import { printJson, progress, type Io } from '../context.js';
import { positiveNumber, precision } from '../parse.js';
import { addRuntimeOptions, cliExecutorChoice, type RuntimeCliOptions } from '../runtime.js';
import { lengthsWork } from '../../run/runtime-cost.js';
import { readGolden } from '../../eval/golden.js';
import { addRevisionOption, downloadProgress, MODEL_HELP } from '../model-source.js';

interface VerifyOptions extends RuntimeCliOptions {
  golden: string;
  atol: number;
  precision?: Precision;
  headPackage?: string;
  revision?: string;
  json?: boolean;
}

const fmt = (v: number | null) => (v === null ? '-' : v.toExponential(2));

/** Registers the verify command; sets the exit code to 1 when a case exceeds the tolerance. */
export function registerVerify(program: Command, io: Io, setExit: (code: number) => void): void {
  const cmd = program
    .command('verify')
    .description('run every case of a golden file and compare logits and hidden states (max abs difference)')
    .argument('<model>', `.mlpackage, ${MODEL_HELP}`)
    .requiredOption('--golden <file>', 'golden outputs (.safetensors, see the README for how to export them)')
    .option('--atol <x>', 'tolerance on the max abs difference', positiveNumber, 1e-4)
    .option('--precision <mode>', 'arithmetic: fp32, fp16, fp16-fused, fp16-acc16', precision)
    .option('--head-package <path>', 'a head package (convert --split) to run on MODEL, its body package')
    .option('--json', 'machine-readable output');
  addRuntimeOptions(addRevisionOption(cmd)).action(async (modelPath: string, o: VerifyOptions) => {
    const bar = progress(io, 'verify', Boolean(o.json));
    try {
      const report = await verify(modelPath, o.golden, {
        atol: o.atol,
        precision: o.precision,
        headPackage: o.headPackage,
        revision: o.revision,
        download: downloadProgress(io, Boolean(o.json)),
        executor: await cliExecutorChoice(
          o,
          o.precision,
          io,
          undefined,
          lengthsWork(
            readGolden(o.golden).flatMap((c) => new Array<number>(c.inputIds.shape[0]).fill(c.inputIds.shape[1])),
          ),
        ),
        onProgress: (d, t) => bar.update(d, t),
      });
      bar.stop();
      if (o.json) printJson(io, { passed: report.passed, max_abs_diff: report.max_abs_diff, cases: report.cases });
      else {
        io.stdout(`${'case'.padEnd(24)} ${'logits'.padStart(10)} ${'hidden'.padStart(10)}\n`);
        for (const c of report.cases)
          io.stdout(`${c.name.padEnd(24)} ${fmt(c.logits).padStart(10)} ${fmt(c.hidden_states).padStart(10)}\n`);
        io.stdout(
          `${report.passed ? 'PASS' : 'FAIL'}: max abs difference ${report.max_abs_diff.toExponential(2)} (tolerance ${o.atol})\n`,
        );
      }
      if (!report.passed) setExit(1);
    } finally {
      bar.stop();
    }
  });
}
