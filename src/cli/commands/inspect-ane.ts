// `inspect --ane PKG`: the predicted Neural Engine placement of every function of a package.

import { existsSync } from 'node:fs';
import { ModernBertError } from '../../errors.js';
import { placementJson, placementLines } from '../../ane/format.js';
import { predictPackage } from '../../ane/predict-package.js';
import { defaultRules, readRulesFile } from '../../ane/rules.js';
import { printJson, type Io } from '../context.js';
import { requirePackagePath } from '../model-source.js';

/** Prints the prediction for the package at `path` (text, or JSON with every op). */
export function inspectAne(io: Io, path: string, o: { json?: boolean; aneRules?: string }): void {
  requirePackagePath(path, '--ane predicts where a Core ML package runs');
  if (!existsSync(path)) throw new ModernBertError('FILE_NOT_FOUND', `package ${path} does not exist`, { path });
  const pp = predictPackage(path, o.aneRules === undefined ? defaultRules() : readRulesFile(o.aneRules));
  if (o.json) return printJson(io, placementJson(pp));
  io.stdout(
    `${'package'.padEnd(14)} ${path}\n${'prediction'.padEnd(14)} from public rules (docs/ANE.md), not a measurement: MLComputePlan on a Mac measures\n`,
  );
  for (const f of pp.functions) {
    for (const [k, v] of placementLines(f, pp.functions.length)) io.stdout(`${k.padEnd(14)} ${v}\n`);
    const off = f.placement.ops.filter((x) => x.device !== 'ane');
    if (off.length > 0 && off.length <= 40)
      for (const x of off)
        io.stdout(
          `${''.padEnd(14)}   #${x.index} ${x.op} "${x.name}": ${x.device}, rule ${x.rule}${x.region ? `, ${x.region}` : ''}\n`,
        );
  }
}
