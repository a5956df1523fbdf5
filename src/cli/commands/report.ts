// `report PKG --out report.html`: one self-contained HTML page about a package (src/report/html.ts).

import { existsSync, realpathSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';
import type { Command } from 'commander';
import { ModernBertError } from '../../errors.js';
import { checkFileOutput, writeOutput, type CheckedOutput } from '../../io/output.js';
import { readMLPackage } from '../../coreml/mil-read.js';
import { META } from '../../coreml/package-info.js';
import { predictFunction } from '../../ane/predict-package.js';
import { defaultRules, readRulesFile } from '../../ane/rules.js';
import { renderReport } from '../../report/html.js';
import { readStoredFidelity } from '../../report/stored-fidelity.js';
import { tensorRows } from '../../report/tensors.js';
import { VERSION } from '../../version.js';
import { printJson, type Io } from '../context.js';
import { requirePackagePath } from '../model-source.js';

/** Registers the report command. */
export function registerReport(program: Command, io: Io): void {
  program
    .command('report')
    .description(
      'write one self-contained HTML page about a package: predicted Neural Engine placement per op and layer, partitions, op budget, float16 fidelity per layer, outliers, tensor sizes',
    )
    .argument('<package>', 'a .mlpackage')
    .requiredOption('--out <file.html>', 'the page to write')
    .option('--force', 'replace an existing file')
    .option('--ane-rules <file>', 'corrections to the placement rules (JSON; see docs/ANE.md)')
    .option('--json', 'machine-readable output')
    .action((path: string, o: { out: string; force?: boolean; aneRules?: string; json?: boolean }) => {
      requirePackagePath(path, 'report describes a Core ML package');
      if (!existsSync(path)) throw new ModernBertError('FILE_NOT_FOUND', `package ${path} does not exist`, { path });
      const out = checkReportTarget(o.out, Boolean(o.force), path);
      const rules = o.aneRules === undefined ? defaultRules() : readRulesFile(o.aneRules);
      const first = readMLPackage(path);
      const functions = [
        predictFunction(first, rules),
        ...first.functions.slice(1).map((name) => predictFunction(readMLPackage(path, name), rules)),
      ];
      const metadata = first.description.metadata.userDefined ?? {};
      const html = renderReport({
        path,
        placement: { path, functions },
        metadata,
        tensors: tensorRows(first.graph),
        fidelity: readStoredFidelity(metadata[META.fidelity]),
        version: VERSION,
      });
      writeOutput(out, html);
      if (o.json)
        return printJson(io, { out: o.out, bytes: Buffer.byteLength(html), functions: functions.map((f) => f.name) });
      io.stdout(
        `wrote ${o.out} (${(Buffer.byteLength(html) / 1e3).toFixed(0)} kB): ${functions.length} function${functions.length > 1 ? 's' : ''}, ${functions.reduce((s, f) => s + f.placement.opCount, 0)} ops\n`,
      );
    });
}

/** The page goes where io/output.ts lets an output go, and never into the package it describes (not even as a new file). */
function checkReportTarget(out: string, force: boolean, pkg: string): CheckedOutput {
  const real = (p: string) => (existsSync(p) ? realpathSync(p) : resolve(p));
  const inside = relative(real(pkg), real(dirname(resolve(out))) + sep + 'x');
  if (!inside.startsWith('..'))
    throw new ModernBertError('BAD_ARGUMENT', `--out ${out} is inside the package ${pkg}: write the page elsewhere`, {
      path: out,
    });
  return checkFileOutput(out, { what: '--out', force, inputs: [pkg] });
}
