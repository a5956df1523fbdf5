// The shape of src/: each folder (or loose file) stands on one layer and imports only from layers below
// it, so that no import runs upward and no two folders import each other; and no file or function grows
// past what one person reads in one sitting. The layer order is written down here and in CONTRIBUTING.md;
// a new folder must be given its place.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '..', 'src');

/** From the ground up: a unit may import only from units on lower rows (never from its own row). */
const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'version.ts'], // the error type, the version
  ['numeric/'], // float16 arithmetic, the portable PRNG
  ['ir/'], // the graph's types, deployment targets
  ['io/'], // files, safetensors, strict JSON, named weight sources, file-system errors
  ['runtime/'], // CPU tensors, numerics, kernels
  ['ops/'], // the op registry: signatures, type inference, kernels, ONNX lowerings
  ['graph/'], // builder, interpreter, printer, Neural Engine limits
  ['rotation/'], // norm folding and rotations of the weights
  ['model/'], // ModernBERT's config, checkpoint and forward pass as a graph
  ['synth/', 'tokenizer/', 'hub/'], // synthetic checkpoints; the tokenizer; Hugging Face Hub ids and the cache
  ['coreml/'], // the .mlpackage format
  ['compress/'], // palettization and quantization of weights
  ['ane/'], // predicted Neural Engine placement of a package's ops, their cost and time
  ['onnx/'], // ONNX lowering and writing
  ['run/'], // everything that executes a model: engine, onnxruntime, packages, the runtime choice, loading
  ['eval/'], // goldens, verify, agreement, fidelity
  ['learn/'], // learned rotations
  ['convert/'], // checkpoint to Core ML package or ONNX model
  ['tasks/'], // predict, batch embedding and classification
  ['report/'], // plots and reports for the commands
  ['api/'], // the library's calls that the commands print: verify, diff, inspect
  ['cli/'], // the commands
  ['index.ts', 'advanced.ts'], // the library's public face, and its advanced subpath
];

/** Every file under src/ that can import (TypeScript and JavaScript modules). */
function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|mts|mjs)$/.test(name) ? [path] : [];
  });
}

/** The unit of a file: its top folder under src/ ('model/'), or the file itself at the root ('errors.ts'). */
function unitOf(file: string): string {
  const parts = relative(SRC, file).split(sep);
  return parts.length > 1 ? `${parts[0]}/` : parts[0]!;
}

/** The files a module imports (static, re-exports, side effects, dynamic import of a literal), resolved to sources. */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((s) => s.startsWith('.'))
    .map((s) => {
      const path = resolve(dirname(file), s);
      const source = path.replace(/\.js$/, '.ts');
      return path.endsWith('.js') && existsSync(source) ? source : path;
    });
}

const files = sourceFiles();
const edges = files.flatMap((from) => importsOf(from).map((to) => ({ from, to })));
const layerOf = new Map(LAYERS.flatMap((row, i) => row.map((unit) => [unit, i] as const)));
const show = (f: string) => relative(SRC, f);

describe('the layers of src/', () => {
  it('places every folder and loose file of src/ on exactly one layer', () => {
    const units = [...new Set(files.map(unitOf))].sort();
    expect(
      units.filter((u) => !layerOf.has(u)),
      'give these a layer in LAYERS (and CONTRIBUTING.md)',
    ).toEqual([]);
    expect(
      [...layerOf.keys()].filter((u) => !units.includes(u)),
      'LAYERS names units that no longer exist',
    ).toEqual([]);
    expect(LAYERS.flat().length).toBe(layerOf.size);
  });

  it('imports only from lower layers: no import runs upward or sideways', () => {
    const bad = edges
      .filter(({ from, to }) => unitOf(from) !== unitOf(to) && !(layerOf.get(unitOf(to))! < layerOf.get(unitOf(from))!))
      .map(({ from, to }) => `${show(from)} -> ${show(to)}`);
    expect(bad).toEqual([]);
  });

  it('has no cycle between folders', () => {
    // Tarjan's strongly connected components over units, independent of the declared order.
    const graph = new Map<string, Set<string>>();
    for (const { from, to } of edges) {
      const [a, b] = [unitOf(from), unitOf(to)];
      if (a !== b) graph.set(a, (graph.get(a) ?? new Set()).add(b));
    }
    const index = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const cycles: string[][] = [];
    const visit = (v: string) => {
      index.set(v, index.size);
      low.set(v, index.get(v)!);
      stack.push(v);
      for (const w of graph.get(v) ?? []) {
        if (!index.has(w)) {
          visit(w);
          low.set(v, Math.min(low.get(v)!, low.get(w)!));
        } else if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
      if (low.get(v) === index.get(v)) {
        const scc: string[] = [];
        let w: string;
        do scc.push((w = stack.pop()!));
        while (w !== v);
        if (scc.length > 1) cycles.push(scc.sort());
      }
    };
    for (const v of new Set(files.map(unitOf))) if (!index.has(v)) visit(v);
    expect(cycles).toEqual([]);
  });

  it('keeps every import inside src/ (no import of tests, benchmarks or the build)', () => {
    const outside = edges.filter(({ to }) => !to.startsWith(SRC + sep)).map(({ from, to }) => `${show(from)} -> ${to}`);
    expect(outside).toEqual([]);
  });
});

describe('the size of what one reads', () => {
  const sizes = files.filter((f) => f.endsWith('.ts')).map((f) => ({ file: f, text: readFileSync(f, 'utf8') }));

  it('has no source file over 500 lines', () => {
    const long = sizes
      .map(({ file, text }) => ({ file: show(file), lines: text.split('\n').length - 1 }))
      .filter((f) => f.lines > 500);
    expect(long).toEqual([]);
  });

  it('has no function over 150 lines', () => {
    const long: string[] = [];
    for (const { file, text } of sizes) {
      const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
      const visit = (node: ts.Node) => {
        if (ts.isFunctionLike(node) && 'body' in node && node.body) {
          const lines =
            sf.getLineAndCharacterOfPosition(node.getEnd()).line -
            sf.getLineAndCharacterOfPosition(node.getStart(sf)).line +
            1;
          const name = node.name && ts.isIdentifier(node.name) ? node.name.text : '(anonymous)';
          if (lines > 150) long.push(`${show(file)}: ${name} (${lines} lines)`);
        }
        ts.forEachChild(node, visit);
      };
      visit(sf);
    }
    expect(long).toEqual([]);
  });
});
