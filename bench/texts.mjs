// The benchmarks' text set: `n` texts of 5 to 60 tokens, [CLS] + random ids + [SEP], reproducible from the
// seed (the fixtures' splitmix32 PRNG); special ids never occur inside. bench/embed.mjs and bench/ort.mjs
// embed the same 2,000 of them.

import { splitmix32 } from '../dist/numeric/prng.js';

/** Token ids of `n` texts for a model's ids (model.ids of load.ts: cls, sep, vocabSize, special). */
export function benchTexts(n, seed, { clsTokenId: cls, sepTokenId: sep, vocabSize, special }) {
  const skip = new Set([cls, sep, ...special]);
  const next = splitmix32(seed);
  return Array.from({ length: n }, () => {
    const len = 5 + (next() % 56);
    const ids = [cls];
    while (ids.length < len - 1) {
      const id = next() % vocabSize;
      if (!skip.has(id)) ids.push(id);
    }
    return [...ids, sep];
  });
}
