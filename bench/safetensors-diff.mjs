// Differential check of our safetensors reader against Hugging Face's library (its Python binding of
// the Rust crate): the fuzzer's safetensors mutations, each judged by both; every disagreement printed.
// Needs a Python with `pip install safetensors` (no other package).
//
//   npm run build && node bench/safetensors-diff.mjs --python /path/to/python [--cases 10000] [--seed 1]

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildFuzzer } from './fuzz/build.mjs';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : fallback);
const python = opt('python', 'python3');
const cases = Number(opt('cases', '10000'));
const seed = Number(opt('seed', '1'));

// Hugging Face's reader is the judge: without it there is nothing to compare, so say so before any work.
try {
  execFileSync(python, ['-c', 'import safetensors'], { stdio: 'ignore' });
} catch {
  console.error(`error: ${python} cannot import safetensors: pip install safetensors, or give --python PATH`);
  process.exit(2);
}

const fuzzer = buildFuzzer();
const { prepareSeeds, mutateSafetensors } = await import(fuzzer('readers.js'));
const { Rng } = await import(fuzzer('random.js'));
const { SafetensorsFile } = await import(join(root, 'dist', 'io', 'safetensors.js'));

const work = mkdtempSync(join(tmpdir(), 'mbane-stdiff-'));
const seeds = await prepareSeeds(join(root, 'test', 'fixtures'), join(work, 'seeds'));
const ours = [];
const whats = [];
for (let i = 0; i < cases; i++) {
  const rng = Rng.forCase(seed, i);
  const m = rng.chance(0.5) ? mutateSafetensors(rng, seeds.safetensors) : mutateSafetensors(rng, seeds.golden, true);
  const path = join(work, `${i}.safetensors`);
  writeFileSync(path, m.bytes);
  whats.push(m.what);
  try {
    SafetensorsFile.open(path).close();
    ours.push(true);
  } catch {
    ours.push(false);
  }
}
const script = `
import sys
from safetensors import deserialize
d, n = sys.argv[1], int(sys.argv[2])
out = []
for i in range(n):
    try:
        deserialize(open(f"{d}/{i}.safetensors", "rb").read())
        out.append("1")
    except Exception:
        out.append("0")
print("".join(out))
`;
const theirs = execFileSync(python, ['-c', script, work, String(cases)], { encoding: 'utf8', maxBuffer: 1 << 26 })
  .trim()
  .split('')
  .map((c) => c === '1');
const kinds = new Map();
let shown = 0;
const count = { bothAccept: 0, bothRefuse: 0, onlyWeAccept: 0, onlyTheyAccept: 0 };
for (let i = 0; i < cases; i++) {
  if (ours[i] && theirs[i]) count.bothAccept++;
  else if (!ours[i] && !theirs[i]) count.bothRefuse++;
  else {
    if (ours[i]) count.onlyWeAccept++;
    else count.onlyTheyAccept++;
    kinds.set(
      whats[i].replace(/[0-9]+/g, 'N').slice(0, 60),
      (kinds.get(whats[i].replace(/[0-9]+/g, 'N').slice(0, 60)) ?? 0) + 1,
    );
    if (!whats[i].startsWith('duplicate key') && shown++ < 20) {
      console.error(
        `case ${i} [${whats[i]}]: we ${ours[i] ? 'accept' : 'refuse'}, the library ${theirs[i] ? 'accepts' : 'refuses'}`,
      );
      if (!ours[i]) {
        try {
          SafetensorsFile.open(join(work, `${i}.safetensors`));
        } catch (e) {
          console.error(`  ours: ${e.message}`);
        }
      }
    }
  }
}
rmSync(work, { recursive: true, force: true });
console.log(`seed ${seed}, ${cases} cases:`, JSON.stringify(count));
console.log('disagreements by mutation:', JSON.stringify(Object.fromEntries(kinds)));
