// `inspect MODEL`: what a checkpoint is (configuration, parameters, dtypes, layer kinds, head).

import type { Command } from 'commander';
import type { FeatureInfo } from '../../coreml/description.js';
import type { PackageRunner } from '../../run/package-runner.js';
import { openModel, type LoadedModel } from '../../run/load.js';
import { ModernBertError } from '../../errors.js';
import { ANE_AXES, formatAneIssue, lintAneLimits } from '../../graph/ane-limits.js';
import { printJson, type Io } from '../context.js';
import { META } from '../../coreml/package-info.js';
import type { CompressionSummary } from '../../convert/convert.js';
import { formatCompression } from './convert.js';
import { inspectAne } from './inspect-ane.js';
import { isConstexpr } from '../../ops/index.js';
import { addRevisionOption, hubOptions, MODEL_HELP } from '../model-source.js';

/** Registers the inspect command; `setExit(1)` when --lint finds a problem. */
export function registerInspect(program: Command, io: Io, setExit: (code: number) => void = () => {}): void {
  const cmd = program
    .command('inspect')
    .description('show a model: configuration, parameter count, dtypes, layer kinds, head')
    .argument('<model>', `.mlpackage, ${MODEL_HELP}`)
    .option('--lint', "list each op of a package whose tensors break the Neural Engine's limits (exit 1 if any)")
    .option('--ane', 'predict where Core ML runs each op of a package: Neural Engine, CPU or GPU-or-CPU, by published rules (docs/ANE.md)')
    .option('--ane-rules <file>', '--ane: corrections to the placement rules (JSON)')
    .option('--json', 'machine-readable output');
  addRevisionOption(cmd)
    .action(async (modelPath: string, o: { json?: boolean; lint?: boolean; ane?: boolean; aneRules?: string; revision?: string }) => {
      if (o.aneRules !== undefined && !o.ane) throw new ModernBertError('BAD_ARGUMENT', '--ane-rules corrects the rules of --ane');
      if (o.ane) return inspectAne(io, modelPath, o);
      const model = await openModel(modelPath, hubOptions(io, o));
      try {
        if (o.lint) {
          if (!model.pkg) throw new ModernBertError('BAD_ARGUMENT', `--lint checks a Core ML package; ${modelPath} is a checkpoint (convert prints the same check)`);
          const issues = lintAneLimits(model.pkg.graph, (model.runner as PackageRunner).maxLen);
          if (issues.length) setExit(1);
          if (o.json) return printJson(io, { path: model.path, ane_issues: issues });
          for (const i of issues) io.stdout(`${formatAneIssue(i)}\n`);
          io.stdout(issues.length ? `${issues.length} tensors beyond the Neural Engine's limits\n` : `every tensor is within the Neural Engine's limits (${ANE_AXES.map(([a, n]) => `${a} <= ${n}`).join(', ')}, rank <= 5)\n`);
          return;
        }
        if (model.pkg) return inspectPackage(io, model, Boolean(o.json));
        const c = model.config!;
        const w = model.weights!;
        // Tied decoder weights are one tensor stored once.
        const stored = w.names().filter((n) => !(n === 'decoder.weight' && c.tieWordEmbeddings));
        const parameters = stored.reduce((s, n) => s + w.shape(n).reduce((a, b) => a * b, 1), 0);
        const info = {
          path: model.path,
          kind: model.kind,
          source: model.source ?? null,
          architecture: c.architecture,
          head: model.head,
          parameters,
          dtypes: model.dtypes,
          hidden: c.hidden,
          intermediate: c.intermediate,
          layers: c.numLayers,
          heads: c.numHeads,
          head_dim: c.headDim,
          vocab: c.vocabSize,
          max_positions: c.maxPositions,
          local_window: c.localWindow,
          layer_kinds: c.layerTypes.map((t) => (t === 'global' ? 'G' : 'L')).join(''),
          rope_theta: { global: c.globalRopeTheta, local: c.localRopeTheta },
          norm_eps: c.normEps,
          biases: { norm: c.normBias, attention: c.attentionBias, mlp: c.mlpBias, decoder: c.decoderBias, classifier: c.classifierBias },
          activations: { hidden: c.hiddenActivation, classifier: c.classifierActivation },
          classifier_pooling: c.classifierPooling,
          labels: c.labels,
          special_ids: { pad: c.padTokenId, cls: c.clsTokenId, sep: c.sepTokenId, mask: model.tokenizer?.maskTokenId ?? null },
          tokenizer: Boolean(model.tokenizer),
        };
        if (o.json) return printJson(io, info);
        const lines: [string, string][] = [
          ['model', `${info.path} (${info.kind})`],
          ...(model.source ? [['source', `${model.source.id} at ${model.source.commit} (${model.source.revision})`] as [string, string]] : []),
          ['architecture', `${info.architecture}, head ${info.head}`],
          ['parameters', `${(parameters / 1e6).toFixed(2)} M, stored as ${info.dtypes.join(', ')}`],
          ['size', `hidden ${c.hidden}, intermediate ${c.intermediate}, ${c.numLayers} layers, ${c.numHeads} heads of ${c.headDim}`],
          ['vocabulary', `${c.vocabSize} tokens, max ${c.maxPositions} positions`],
          ['attention', `${info.layer_kinds} (G global, L sliding window of ${c.localWindow}), RoPE theta ${c.globalRopeTheta} / ${c.localRopeTheta}`],
          ['norms', `eps ${c.normEps}, biases: ${Object.entries(info.biases).filter(([, v]) => v).map(([k]) => k).join(', ') || 'none'}`],
          ['activations', `${c.hiddenActivation} (MLP), ${c.classifierActivation} (head)`],
        ];
        if (c.labels.length) lines.push(['labels', c.labels.join(', ')]);
        lines.push(['tokenizer', model.tokenizer ? `yes (mask id ${info.special_ids.mask})` : 'none']);
        for (const [k, v] of lines) io.stdout(`${k.padEnd(14)} ${v}\n`);
      } finally {
        model.close();
      }
    });
}

function inspectPackage(io: Io, model: LoadedModel, json: boolean): void {
  const pkg = model.pkg!;
  const meta = pkg.description.metadata;
  const ops = new Map<string, number>();
  for (const op of pkg.graph.ops) ops.set(op.op, (ops.get(op.op) ?? 0) + 1);
  let parameters = 0;
  // Compressed weights count as the tensors their constexpr ops produce, not as their tables and scales.
  const size = (shape: readonly (number | string)[]) => (shape as number[]).reduce((a, b) => a * b, 1);
  const constexprInputs = new Set(pkg.graph.ops.filter((op) => isConstexpr(op.op)).flatMap((op) => Object.values(op.inputs).filter((a): a is string => typeof a === 'string')));
  for (const c of pkg.graph.consts.values()) if ((c.type.dtype === 'fp16' || c.type.dtype === 'fp32') && !constexprInputs.has(c.name)) parameters += size(c.type.shape);
  for (const op of pkg.graph.ops) if (isConstexpr(op.op)) parameters += size(op.outputs[0]!.type.shape);
  const feature = (f: FeatureInfo) => ({ name: f.name, dtype: f.dtype, shape: f.shape, ...(f.enumeratedShapes ? { enumerated_shapes: f.enumeratedShapes } : {}), ...(f.description ? { description: f.description } : {}) });
  const info = {
    path: model.path,
    kind: model.kind,
    specification_version: pkg.specificationVersion,
    target: pkg.target,
    opset: pkg.opset,
    head: model.head,
    labels: model.labels,
    sequence_lengths: (model.runner as PackageRunner).info.seqLens,
    // A multifunction package's functions (the default first), each with its head and bucket length.
    functions: pkg.functions.length > 1 ? pkg.functions.map((name) => ({ name, ...((model.runner as PackageRunner).info.functions[name] ?? {}) })) : [],
    inputs: pkg.description.inputs.map(feature),
    outputs: pkg.description.outputs.map(feature),
    parameters,
    weight_dtypes: model.dtypes,
    ops: Object.fromEntries([...ops].sort((a, b) => b[1] - a[1])),
    op_count: pkg.graph.ops.length,
    taps: [...pkg.graph.taps.keys()],
    tokenizer: Boolean(model.tokenizer),
    metadata: { short_description: meta.shortDescription ?? null, author: meta.author ?? null, version: meta.versionString ?? null, ...(meta.userDefined ?? {}) },
  };
  if (json) return printJson(io, info);
  const shape = (f: FeatureInfo) => (f.enumeratedShapes ? f.enumeratedShapes.map((s) => `[${s.join(', ')}]`).join(' | ') : `[${f.shape.join(', ')}]`);
  const lines: [string, string][] = [
    ['package', `${info.path} (spec ${info.specification_version}, ${info.target}, opset ${info.opset})`],
    ['head', `${info.head}${info.labels.length ? ` (${info.labels.join(', ')})` : ''}`],
    ...(info.functions.length ? [['functions', info.functions.map((f) => `${f.name}${'head' in f ? ` (${f.head}${f.seq_len ? `, S = ${f.seq_len}` : ''})` : ''}`).join(', ') + ' (default first; this shows the default one)'] as [string, string]] : []),
    ...pkg.description.inputs.map((f): [string, string] => ['input', `${f.name} ${f.dtype} ${shape(f)}${f.description ? ` - ${f.description}` : ''}`]),
    ...pkg.description.outputs.map((f): [string, string] => ['output', `${f.name} ${f.dtype} ${f.shape.length ? `[${f.shape.join(', ')}]` : ''}${f.description ? ` - ${f.description}` : ''}`]),
    ['parameters', `${(parameters / 1e6).toFixed(2)} M (${info.weight_dtypes.join(', ')})`],
    ['ops', `${info.op_count}: ${[...ops].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`],
    ['tokenizer', info.tokenizer ? 'included' : 'none'],
  ];
  for (const [k, v] of Object.entries(meta.userDefined ?? {})) lines.push([k, k === META.compression ? compressionLine(v) : v]);
  for (const [k, v] of lines) io.stdout(`${k.padEnd(18)} ${v}\n`);
}

/** The compression metadata (convert --compress) as one readable line; anything else as stored. */
function compressionLine(stored: string): string {
  try {
    const c = JSON.parse(stored) as CompressionSummary;
    if (typeof c.mode === 'string' && typeof c.fp16Bytes === 'number' && typeof c.compressedBytes === 'number') return formatCompression(c).replace(/^compression: /, '');
  } catch {
    // not ours: shown as stored
  }
  return stored;
}
