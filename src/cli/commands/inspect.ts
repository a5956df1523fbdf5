// `inspect MODEL`: what a checkpoint is (configuration, parameters, dtypes, layer kinds, head).

import type { Command } from 'commander';
import {
  inspect,
  type CheckpointInspection,
  type FeatureInspection,
  type PackageInspection,
} from '../../api/inspect.js';
import type { FidelityReport } from '../../eval/fidelity.js';
import { formatFidelity } from '../../eval/fidelity-text.js';
import type { PackageRunner } from '../../run/package-runner.js';
import { openModel } from '../../run/load.js';
import { ModernBertError } from '../../errors.js';
import { ANE_AXES, formatAneIssue, lintAneLimits } from '../../graph/ane-limits.js';
import { printJson, type Io } from '../context.js';
import { META } from '../../coreml/package-info.js';
import type { CompressionSummary } from '../../convert/write-package.js';
import { formatCompression } from './convert.js';
import { inspectAne } from './inspect-ane.js';
import { addRevisionOption, downloadProgress, hubOptions, MODEL_HELP } from '../model-source.js';

/** Registers the inspect command; `setExit(1)` when --lint finds a problem. */
export function registerInspect(program: Command, io: Io, setExit: (code: number) => void = () => {}): void {
  const cmd = program
    .command('inspect')
    .description('show a model: configuration, parameter count, dtypes, layer kinds, head')
    .argument('<model>', `.mlpackage, ${MODEL_HELP}`)
    .option('--lint', "list each op of a package whose tensors break the Neural Engine's limits (exit 1 if any)")
    .option(
      '--ane',
      'predict where Core ML runs each op of a package: Neural Engine, CPU or GPU-or-CPU, by published rules (docs/ANE.md)',
    )
    .option('--ane-rules <file>', '--ane: corrections to the placement rules (JSON)')
    .option('--json', 'machine-readable output');
  addRevisionOption(cmd).action(
    async (
      modelPath: string,
      o: { json?: boolean; lint?: boolean; ane?: boolean; aneRules?: string; revision?: string },
    ) => {
      if (o.aneRules !== undefined && !o.ane)
        throw new ModernBertError('BAD_ARGUMENT', '--ane-rules corrects the rules of --ane');
      if (o.ane) return inspectAne(io, modelPath, o);
      if (!o.lint) {
        const info = await inspect(modelPath, {
          ...(o.revision === undefined ? {} : { revision: o.revision }),
          download: downloadProgress(io, Boolean(o.json)),
        });
        if (o.json) return printJson(io, info);
        const lines = info.kind === 'package' ? packageLines(info) : checkpointLines(info);
        const width = info.kind === 'package' ? 18 : 14;
        for (const [k, v] of lines) io.stdout(`${k.padEnd(width)} ${v.replace(/\n\s*/g, ' ')}\n`);
        return;
      }
      const model = await openModel(modelPath, hubOptions(io, o));
      try {
        if (!model.pkg)
          throw new ModernBertError(
            'BAD_ARGUMENT',
            `--lint checks a Core ML package; ${modelPath} is a checkpoint (convert prints the same check)`,
          );
        const issues = lintAneLimits(model.pkg.graph, (model.runner as PackageRunner).maxLen);
        if (issues.length) setExit(1);
        if (o.json) return printJson(io, { path: model.path, ane_issues: issues });
        for (const i of issues) io.stdout(`${formatAneIssue(i)}\n`);
        io.stdout(
          issues.length
            ? `${issues.length} tensors beyond the Neural Engine's limits\n`
            : `every tensor is within the Neural Engine's limits (${ANE_AXES.map(([a, n]) => `${a} <= ${n}`).join(', ')}, rank <= 5)\n`,
        );
      } finally {
        model.close();
      }
    },
  );
}

/** The lines of a checkpoint's inspection. */
function checkpointLines(info: CheckpointInspection): [string, string][] {
  const lines: [string, string][] = [
    ['model', `${info.path} (${info.kind})`],
    ...(info.source
      ? [['source', `${info.source.id} at ${info.source.commit} (${info.source.revision})`] as [string, string]]
      : []),
    ['architecture', `${info.architecture}, head ${info.head}`],
    ['parameters', `${(info.parameters / 1e6).toFixed(2)} M, stored as ${info.dtypes.join(', ')}`],
    [
      'size',
      `hidden ${info.hidden}, intermediate ${info.intermediate}, ${info.layers} layers, ${info.heads} heads of ${info.head_dim}`,
    ],
    ['vocabulary', `${info.vocab} tokens, max ${info.max_positions} positions`],
    [
      'attention',
      `${info.layer_kinds} (G global, L sliding window of ${info.local_window}), RoPE theta ${info.rope_theta.global} / ${info.rope_theta.local}`,
    ],
    [
      'norms',
      `eps ${info.norm_eps}, biases: ${
        Object.entries(info.biases)
          .filter(([, v]) => v)
          .map(([k]) => k)
          .join(', ') || 'none'
      }`,
    ],
    ['activations', `${info.activations.hidden} (MLP), ${info.activations.classifier} (head)`],
  ];
  if (info.labels.length) lines.push(['labels', info.labels.join(', ')]);
  lines.push(['tokenizer', info.tokenizer ? `yes (mask id ${info.special_ids.mask})` : 'none']);
  return lines;
}

/** Metadata that the lines above already show (the head, its labels, the functions). */
const SHOWN: ReadonlySet<string> = new Set([META.head, META.labels, META.functions]);

/** The lines of a package's inspection: its interface, program and metadata, each report in words. */
function packageLines(info: PackageInspection): [string, string][] {
  const shape = (f: FeatureInspection) =>
    f.enumerated_shapes ? f.enumerated_shapes.map((s) => `[${s.join(', ')}]`).join(' | ') : `[${f.shape.join(', ')}]`;
  const lines: [string, string][] = [
    ['package', `${info.path} (spec ${info.specification_version}, ${info.target}, opset ${info.opset})`],
    ['head', `${info.head}${info.labels.length ? ` (${info.labels.join(', ')})` : ''}`],
    ...(info.functions.length
      ? [
          [
            'functions',
            info.functions
              .map((f) => `${f.name}${f.head ? ` (${f.head}${f.seq_len ? `, S = ${f.seq_len}` : ''})` : ''}`)
              .join(', ') + ' (default first; this shows the default one)',
          ] as [string, string],
        ]
      : []),
    ...info.inputs.map((f): [string, string] => [
      'input',
      `${f.name} ${f.dtype} ${shape(f)}${f.description ? ` - ${f.description}` : ''}`,
    ]),
    ...info.outputs.map((f): [string, string] => [
      'output',
      `${f.name} ${f.dtype} ${f.shape.length ? `[${f.shape.join(', ')}]` : ''}${f.description ? ` - ${f.description}` : ''}`,
    ]),
    ['parameters', `${(info.parameters / 1e6).toFixed(2)} M (${info.weight_dtypes.join(', ')})`],
    [
      'ops',
      `${info.op_count} (${info.non_constant_ops.toLocaleString('en-US')} non-constant, budget ${info.op_budget.toLocaleString('en-US')}${info.non_constant_ops > info.op_budget ? ', OVER' : ''}; inspect --ane places them): ${Object.entries(
        info.ops,
      )
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    ],
    ['tokenizer', info.tokenizer ? 'included' : 'none'],
  ];
  for (const [k, v] of Object.entries(info.metadata)) {
    if (v === null || SHOWN.has(k)) continue;
    lines.push([
      k,
      k === META.compression
        ? compressionLine(v)
        : k === META.fidelity
          ? fidelityLine(v)
          : k === META.rotationLearning
            ? learningLine(v)
            : k === META.specialIds
              ? idsLine(v)
              : v,
    ]);
  }
  return lines;
}

/** The fidelity report (metadata "fidelity") in words, as convert prints it; anything else as stored. */
function fidelityLine(stored: string): string {
  try {
    const f = JSON.parse(stored) as FidelityReport;
    if (typeof f.kl === 'number' && typeof f.tokens === 'number' && typeof f.precision === 'string')
      return formatFidelity(f).replace(/^fidelity /, '');
  } catch {
    // not ours: shown as stored
  }
  return stored;
}

/** The special token ids (metadata "special_token_ids") as "pad 0, cls 1, ..."; anything else as stored. */
function idsLine(stored: string): string {
  try {
    const ids = JSON.parse(stored) as Record<string, unknown>;
    if (typeof ids === 'object' && ids !== null)
      return Object.entries(ids)
        .map(([k, v]) => `${k} ${v === null ? 'none' : String(v)}`)
        .join(', ');
  } catch {
    // not ours: shown as stored
  }
  return stored;
}

/** What rotation learning kept (metadata "rotation_learning"), in its own words. */
function learningLine(stored: string): string {
  try {
    const r = JSON.parse(stored) as { note?: unknown };
    if (typeof r.note === 'string') return r.note;
  } catch {
    // not ours: shown as stored
  }
  return stored;
}

/** The compression metadata (convert --compress) as one readable line; anything else as stored. */
function compressionLine(stored: string): string {
  try {
    const c = JSON.parse(stored) as CompressionSummary;
    if (typeof c.mode === 'string' && typeof c.fp16Bytes === 'number' && typeof c.compressedBytes === 'number')
      return formatCompression(c).replace(/^compression: /, '');
  } catch {
    // not ours: shown as stored
  }
  return stored;
}
