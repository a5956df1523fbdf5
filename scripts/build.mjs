// Build: compile TypeScript to dist/ and copy the non-TypeScript assets that the runtime loads.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
rmSync(join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });

// Assets beside the sources (protobuf schemas, WebAssembly, worker scripts and their type declarations,
// which the emitted .d.ts files import, the Core ML helper's Swift source) keep their relative paths.
const assetExt = ['.proto', '.wasm', '.mjs', '.d.mts', '.swift'];
function copyAssets(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) copyAssets(path);
    else if (assetExt.some((e) => entry.endsWith(e))) {
      const out = join(root, 'dist', relative(join(root, 'src'), path));
      mkdirSync(dirname(out), { recursive: true });
      cpSync(path, out);
    }
  }
}
if (existsSync(join(root, 'src'))) copyAssets(join(root, 'src'));
