// Tokenizer throughput: ModernBERT's tokenizer (its only pattern is our own ByteLevel split, run on this
// thread), and the same tokenizer behind a Llama-3-style Split pattern from the file, which runs in the
// pattern worker under a time budget (src/tokenizer/tokenizer-patterns.ts) and, for comparison, on this thread
// unguarded. Texts: the tokenizer fixture's golden texts and the built-in sentences, repeated. Run after a build:
//
//   npm run build && node bench/tokenizer.mjs [--texts 20000] [--repeat 3]
//
// Prints a table for docs/PERFORMANCE.md ("Tokenizer patterns").

import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { texts: { type: 'string', default: '20000' }, repeat: { type: 'string', default: '3' } },
});
const root = fileURLToPath(new URL('..', import.meta.url));
const dist = (p) => import(pathToFileURL(join(root, 'dist', p)).href);
const { Tokenizer } = await dist('tokenizer/tokenizer.js');
const { GuardedRegExp } = await dist('tokenizer/tokenizer-patterns.js');
const { BUILTIN_SENTENCES } = await dist('eval/sentences.js');

const dir = join(root, 'test', 'fixtures', 'tokenizer');
const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
const golden = JSON.parse(readFileSync(join(dir, 'golden_encodings.json'), 'utf8'))
  .cases.map((c) => c.text)
  .filter((t) => typeof t === 'string');
const base = [...golden, ...BUILTIN_SENTENCES];
const texts = Array.from({ length: Number(values.texts) }, (_, i) => base[i % base.length]);
const chars = texts.reduce((s, t) => s + t.length, 0);

// The pre-tokenizer pattern of Llama 3's tokenizer.json (lookahead included), ahead of ModernBERT's ByteLevel step.
const LLAMA3 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const withSplit = {
  ...json,
  pre_tokenizer: {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: LLAMA3 }, behavior: 'Isolated', invert: false },
      { ...json.pre_tokenizer, use_regex: false },
    ],
  },
};

/** Puts every guarded pattern back on this thread (the comparison, not something the tool does). */
function unguard(tok) {
  const seen = new Set();
  const visit = (x) => {
    if ((typeof x !== 'object' && typeof x !== 'function') || x === null || seen.has(x)) return;
    seen.add(x);
    if (x.pattern instanceof GuardedRegExp) x.pattern = new RegExp(x.pattern.source, x.pattern.flags);
    for (const v of Array.isArray(x) ? x : Object.values(x)) visit(v);
  };
  visit(tok.lib.pre_tokenizer);
  return tok;
}

function measure(name, tok) {
  let best = Infinity;
  for (let r = 0; r < Number(values.repeat); r++) {
    const t0 = performance.now();
    for (const t of texts) tok.encode(t);
    best = Math.min(best, performance.now() - t0);
  }
  return { name, ms: best };
}

const guarded = Tokenizer.fromJSON(withSplit, config, 'tokenizer.json');
const plain = unguard(Tokenizer.fromJSON(withSplit, config, 'tokenizer.json'));
for (const t of texts.slice(0, 200)) {
  const a = guarded.encode(t).ids.join(' ');
  if (a !== plain.encode(t).ids.join(' '))
    throw new Error(`guarded and unguarded encodings differ on ${JSON.stringify(t)}`);
}
const rows = [
  measure('ModernBERT (ByteLevel split on this thread)', Tokenizer.fromJSON(json, config, 'tokenizer.json')),
  measure('+ Llama-3 Split pattern, unguarded (on this thread)', plain),
  measure('+ Llama-3 Split pattern, guarded (worker, time budget)', guarded),
];
console.log(
  `${texts.length} texts, ${(chars / 1e6).toFixed(2)} M characters, best of ${values.repeat}; node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
console.log('| tokenizer | texts/s | µs per text | MB/s |');
console.log('|---|---:|---:|---:|');
for (const r of rows)
  console.log(
    `| ${r.name} | ${Math.round(texts.length / (r.ms / 1000))} | ${((1000 * r.ms) / texts.length).toFixed(1)} | ${(chars / 1e6 / (r.ms / 1000)).toFixed(2)} |`,
  );
process.exit(0);
