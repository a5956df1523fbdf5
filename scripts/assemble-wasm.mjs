// Assembles every WebAssembly text file under src/ (*.wat) into the committed binary beside it (*.wasm).
// The binaries are committed so that the runtime and the tests (which run from src/) load them directly;
// `--check` assembles in memory and fails when a committed binary differs, so a stale one cannot land.
import { readdirSync, readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import wabtInit from 'wabt';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');

function watFiles(dir) {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) return watFiles(path);
    return entry.endsWith('.wat') ? [path] : [];
  });
}

const wabt = await wabtInit();
let stale = 0;
for (const wat of watFiles(join(root, 'src'))) {
  const module = wabt.parseWat(wat, readFileSync(wat, 'utf8'), { simd: true });
  module.validate();
  const bytes = Buffer.from(module.toBinary({ write_debug_names: false }).buffer);
  module.destroy();
  const out = wat.replace(/\.wat$/, '.wasm');
  const name = relative(root, out);
  if (!check) {
    writeFileSync(out, bytes);
    console.log(`wrote ${name} (${bytes.length} bytes)`);
  } else if (!existsSync(out) || !bytes.equals(readFileSync(out))) {
    console.error(`${name} is stale: run node scripts/assemble-wasm.mjs`);
    stale++;
  }
}
if (stale > 0) process.exit(1);
