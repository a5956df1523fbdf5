// The op budget: non-constant ops of synth-base (ModernBERT-base's shape) as `convert` builds it by default
// (folded, l2-norm RMSNorm, float16, input_ids, masked-LM head, global attention in chunks of ANE_ATTENTION_CHUNK), per length, with the predicted placement
// (src/ane/): ops by type, ops off the Neural Engine, boundaries inside the body, the FLOP share on it.
// `convert` builds the same graph (checked in docs/ANE.md against `inspect --ane` on a converted package).
//
//   npm run build && node bench/ane-ops.mjs [--lengths 512,1024,8192] [--head mlm] [--pack K] [--chunk N]

import { parseArgs } from 'node:util';
import { parseConfig } from '../dist/model/config.js';
import { buildModel } from '../dist/model/model.js';
import { ANE_ATTENTION_CHUNK } from '../dist/model/options.js';
import { prepareVariant } from '../dist/model/variants.js';
import { SYNTH_PRESETS } from '../dist/synth/presets.js';
import { SynthWeights } from '../dist/synth/synth.js';
import { predictPlacement } from '../dist/ane/placement.js';

const { values } = parseArgs({
  options: {
    chunk: { type: 'string', default: String(ANE_ATTENTION_CHUNK) },
    lengths: { type: 'string', default: '512,1024,8192' },
    head: { type: 'string', default: 'mlm' },
    pack: { type: 'string' },
  },
});
const config = parseConfig(SYNTH_PRESETS.base);
const v = prepareVariant(
  { config, weights: new SynthWeights(config) },
  { fold: true, rotation: 'none', norm: 'l2', seed: 0 },
);
console.log(
  `synth-base, convert's default graph (${v.name}, float16, input_ids, query chunk ${values.chunk}, head ${values.head}${values.pack ? `, --pack ${values.pack}` : ''})\n`,
);
console.log('| tokens | ops | budget | off the Neural Engine | body boundaries | FLOPs on it | ops by type |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | --- |');
for (const S of values.lengths.split(',').map(Number)) {
  const g = buildModel(v.source, {
    seqLen: S,
    dtype: 'fp16',
    norm: v.norm,
    maskFrom: 'ids',
    attentionChunk: Number(values.chunk),
    head: values.head,
    ...(values.pack ? { pack: Number(values.pack) } : {}),
  });
  const p = predictPlacement(g, { sizes: S });
  const types = new Map();
  for (const op of p.ops) types.set(op.op, (types.get(op.op) ?? 0) + 1);
  const by = [...types]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  console.log(
    `| ${S} | ${p.opCount} | ${p.budget} | ${p.opCount - p.devices.ane} | ${p.boundaries.body} | ${((100 * p.totals.aneFlops) / p.totals.flops).toFixed(2)}% | ${by} |`,
  );
}
