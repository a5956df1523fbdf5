// On paper: what ModernBERT-base's body (embeddings to last hidden state, no decoder: the decoder adds
// 2 x 768 x 50368 = 77 MFLOP and 100 KB of float16 logits per token at any length) costs the Neural Engine per
// length, all-pairs attention against the banded graph. Counts, from the float16 package graphs (the default `input_ids` package, and a `--mask-input` one,
// whose local layers score all S x S pairs): matrix FLOPs (2 x output elements x reduction length of every
// conv and einsum), bytes of weights, bytes written by all ops (each intermediate once), the largest
// intermediate tensor, and the time the FLOPs imply at the reference project's measured 3.0 TFLOP/s.
//
//   npm run build && node bench/ane-estimate.mjs [--lengths 512,1024,2048,4096,8192]

import { parseArgs } from 'node:util';
import { parseConfig } from '../dist/model/config.js';
import { buildModel } from '../dist/model/model.js';
import { SYNTH_PRESETS } from '../dist/synth/presets.js';
import { SynthWeights } from '../dist/synth/synth.js';

const { values } = parseArgs({ options: { lengths: { type: 'string', default: '512,1024,2048,4096,8192' } } });
const TFLOPS = 3.0e12;
const config = parseConfig(SYNTH_PRESETS.base);
const source = { config, weights: new SynthWeights(config) };
const numel = (s) => s.reduce((a, b) => a * b, 1);

function cost(graph) {
  const shapes = new Map();
  for (const v of graph.inputs) shapes.set(v.name, v.type.shape);
  for (const [n, c] of graph.consts) shapes.set(n, c.type.shape);
  let flops = 0;
  let written = 0;
  let largest = 0;
  for (const op of graph.ops) {
    for (const o of op.outputs) {
      shapes.set(o.name, o.type.shape);
      written += 2 * numel(o.type.shape);
      largest = Math.max(largest, 2 * numel(o.type.shape));
    }
    const out = op.outputs[0].type.shape;
    if (op.op === 'conv') {
      const w = shapes.get(op.inputs.weight);
      flops += 2 * numel(out) * w[1] * w[2] * w[3];
    } else if (op.op === 'einsum') {
      const [lhs, rhs] = op.inputs.equation.value.split('->');
      const size = new Map();
      lhs.split(',').forEach((term, i) => [...term].forEach((ch, d) => size.set(ch, shapes.get(op.inputs.values[i])[d])));
      let k = 1;
      for (const [ch, n] of size) if (!rhs.includes(ch)) k *= n;
      flops += 2 * numel(out) * k;
    }
  }
  let weights = 0;
  for (const c of graph.consts.values()) weights += 2 * numel(c.type.shape);
  return { flops, written, largest, weights };
}

console.log('ModernBERT-base (synth-base) body, float16 package graphs (--head none); time = FLOPs / 3.0 TFLOP/s\n');
console.log('| tokens | GFLOP all-pairs | GFLOP banded | ratio | MB written all-pairs | MB written banded | largest tensor all-pairs / banded (MB) | weights (MB) | ms at 3.0 TFLOP/s all-pairs / banded |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
const rows = [];
for (const S of values.lengths.split(',').map(Number)) {
  // All pairs: the mask-input graph (local layers score S x S, the window is a mask), global unchunked.
  const full = cost(buildModel(source, { seqLen: S, dtype: 'fp16', maskFrom: 'input', attentionChunk: Math.min(S, 16384), head: 'none' }));
  const band = cost(buildModel(source, { seqLen: S, dtype: 'fp16', maskFrom: 'ids', head: 'none' }));
  rows.push({ S, full, band });
  const f = (x, d = 1) => x.toFixed(d);
  console.log(`| ${S} | ${f(full.flops / 1e9)} | ${f(band.flops / 1e9)} | ${f(full.flops / band.flops, 2)} | ${f(full.written / 1e6, 0)} | ${f(band.written / 1e6, 0)} | ${f(full.largest / 1e6)} / ${f(band.largest / 1e6)} | ${f(band.weights / 1e6, 0)} | ${f((full.flops / TFLOPS) * 1e3)} / ${f((band.flops / TFLOPS) * 1e3)} |`);
}
const first = rows[0];
const last = rows.at(-1);
const second = rows.find((r) => r.S === 1024) ?? first;
console.log(`\nFLOP ratio ${last.S} / ${second.S}: all-pairs ${(last.full.flops / second.full.flops).toFixed(1)}, banded ${(last.band.flops / second.band.flops).toFixed(1)}`);
console.log(`FLOP ratio ${last.S} / ${first.S}: all-pairs ${(last.full.flops / first.full.flops).toFixed(1)}, banded ${(last.band.flops / first.band.flops).toFixed(1)}`);
