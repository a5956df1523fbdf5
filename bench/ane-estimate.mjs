// On paper: what ModernBERT-base's body (embeddings to last hidden state, no decoder: the decoder adds
// 2 x 768 x 50368 = 77 MFLOP and 100 KB of float16 logits per token at any length) costs the Neural Engine per
// length, all-pairs attention against the banded graph, by src/ane/ (cost.ts counts, estimate.ts times). Graphs:
// the default `input_ids` package as convert builds it (banded local layers, global queries in chunks of
// ANE_ATTENTION_CHUNK) and a `--mask-input` one with unchunked attention (every layer scores all S x S
// pairs, the reference project's form). Per graph: non-constant ops, matrix FLOPs, bytes
// moved by all ops, the largest intermediate tensor, and the predicted time on each chip: a model calibrated on
// the reference project's 3.0 TFLOP/s at 1,024 tokens, not a measurement.
//
//   npm run build && node bench/ane-estimate.mjs [--lengths 512,1024,2048,4096,8192]

import { parseArgs } from 'node:util';
import { parseConfig } from '../dist/model/config.js';
import { buildModel } from '../dist/model/model.js';
import { ANE_ATTENTION_CHUNK } from '../dist/model/options.js';
import { SYNTH_PRESETS } from '../dist/synth/presets.js';
import { SynthWeights } from '../dist/synth/synth.js';
import { predictPlacement } from '../dist/ane/placement.js';
import { CHIPS, estimateTime } from '../dist/ane/estimate.js';

const { values } = parseArgs({ options: { lengths: { type: 'string', default: '512,1024,2048,4096,8192' } } });
const config = parseConfig(SYNTH_PRESETS.base);
const source = { config, weights: new SynthWeights(config) };

function cost(graph) {
  const p = predictPlacement(graph);
  const t = estimateTime(p);
  const largest = Math.max(
    ...graph.ops.flatMap((op) => op.outputs.map((o) => 2 * o.type.shape.reduce((a, b) => a * b, 1))),
  );
  return {
    ops: p.opCount,
    flops: t.matrixFlops,
    bytes: p.totals.bytes,
    largest,
    weights: p.totals.weightBytes,
    boundaries: p.boundaries.body,
    ms: t.chips.map((c) => c.ms),
  };
}

const f = (x, d = 1) => x.toFixed(d);
console.log(
  'ModernBERT-base (synth-base) body, float16 package graphs (--head none); predicted ms: a model, not a measurement (docs/ANE.md)\n',
);
console.log(
  `| tokens | ops all-pairs / banded | GFLOP all-pairs | GFLOP banded | MB moved all-pairs / banded | largest tensor all-pairs / banded (MB) | weights (MB) | body boundaries | ${CHIPS.map((c) => `${c.name} ms all-pairs / banded`).join(' | ')} |`,
);
console.log(`| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ${CHIPS.map(() => '---:').join(' | ')} |`);
const rows = [];
for (const S of values.lengths.split(',').map(Number)) {
  const full = cost(
    buildModel(source, {
      seqLen: S,
      dtype: 'fp16',
      maskFrom: 'input',
      attentionChunk: Math.min(S, 16384),
      head: 'none',
    }),
  );
  const band = cost(
    buildModel(source, {
      seqLen: S,
      dtype: 'fp16',
      maskFrom: 'ids',
      attentionChunk: ANE_ATTENTION_CHUNK,
      head: 'none',
    }),
  );
  rows.push({ S, full, band });
  console.log(
    `| ${S} | ${full.ops} / ${band.ops} | ${f(full.flops / 1e9)} | ${f(band.flops / 1e9)} | ${f(full.bytes / 1e6, 0)} / ${f(band.bytes / 1e6, 0)} | ${f(full.largest / 1e6)} / ${f(band.largest / 1e6)} | ${f(band.weights / 1e6, 0)} | ${full.boundaries} / ${band.boundaries} | ${CHIPS.map((_, i) => `${f(full.ms[i])} / ${f(band.ms[i])}`).join(' | ')} |`,
  );
}
const first = rows[0];
const last = rows.at(-1);
const second = rows.find((r) => r.S === 1024) ?? first;
console.log(
  `\nFLOP ratio ${last.S} / ${second.S}: all-pairs ${(last.full.flops / second.full.flops).toFixed(1)}, banded ${(last.band.flops / second.band.flops).toFixed(1)}`,
);
console.log(
  `FLOP ratio ${last.S} / ${first.S}: all-pairs ${(last.full.flops / first.full.flops).toFixed(1)}, banded ${(last.band.flops / first.band.flops).toFixed(1)}`,
);
