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

// CommonJS entries beside the ES modules, for `require('modernbert-ane')`. Where Node.js can require an ES
// module (20.19+, 22.12+) the entry is the module itself; where it cannot (older 20.x, or
// --no-experimental-require-module), every function loads the module on first call (all of them are async),
// and ModernBertError matches the module's errors by name.
const { pathToFileURL } = await import('node:url');
const { writeFileSync } = await import('node:fs');
for (const entry of ['index', 'advanced']) {
  const mod = await import(pathToFileURL(join(root, 'dist', `${entry}.js`)).href);
  const functions = Object.keys(mod).filter((k) => typeof mod[k] === 'function' && !/^[A-Z]/.test(k));
  const cjs = `'use strict';
// CommonJS entry of modernbert-ane${entry === 'index' ? '' : '/advanced'} (an ES module), written by scripts/build.mjs.
let esm;
try {
  esm = require('./${entry}.js');
} catch (e) {
  if (e.code !== 'ERR_REQUIRE_ESM') throw e;
}
if (esm) {
  module.exports = esm;
} else {
  let loading;
  const load = () => (loading ??= import('./${entry}.js'));
  for (const name of ${JSON.stringify(functions)}) {
    exports[name] = async (...args) => (await load())[name](...args);
  }
  exports.ModernBertError = class ModernBertError extends Error {
    static [Symbol.hasInstance](e) {
      return e instanceof Error && e.name === 'ModernBertError';
    }
  };
}
`;
  writeFileSync(join(root, 'dist', `${entry}.cjs`), cjs);
  writeFileSync(join(root, 'dist', `${entry}.d.cts`), `export * from './${entry}.js';\n`);
}
