// `inspect MODEL`: what a checkpoint is (configuration, parameters, dtypes, layer kinds, head).

import type { Command } from 'commander';
import { openModel } from '../../load.js';
import { printJson, type Io } from '../context.js';

/** Registers the inspect command. */
export function registerInspect(program: Command, io: Io): void {
  program
    .command('inspect')
    .description('show a model: configuration, parameter count, dtypes, layer kinds, head')
    .argument('<model>', 'checkpoint folder or .mlpackage')
    .option('--json', 'machine-readable output')
    .action(async (modelPath: string, o: { json?: boolean }) => {
      const model = await openModel(modelPath);
      try {
        const c = model.config!;
        const w = model.weights!;
        // Tied decoder weights are one tensor stored once.
        const stored = w.names().filter((n) => !(n === 'decoder.weight' && c.tieWordEmbeddings));
        const parameters = stored.reduce((s, n) => s + w.shape(n).reduce((a, b) => a * b, 1), 0);
        const info = {
          path: model.path,
          kind: model.kind,
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
