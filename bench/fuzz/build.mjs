// Compiles the fuzzer (a development tool: it stays out of dist/ and of the published package) into
// build/fuzz/, against the built library in dist/, for the scripts in bench/ that run it.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Builds the fuzzer and returns the path of its compiled module `name` ('run.js', 'readers.js', ...). */
export function buildFuzzer() {
  if (!existsSync(join(root, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', join(root, 'bench', 'fuzz', 'tsconfig.json')], { stdio: 'inherit' });
  return (name) => join(root, 'build', 'fuzz', name);
}
