// The Core ML helper's Swift source cannot be compiled here (no macOS): it is parsed with tree-sitter's Swift
// grammar instead, and must parse with no ERROR or MISSING node. Its ops must be the ones the client sends.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { Language, Parser, type Node } from 'web-tree-sitter';
import { HELPER_SOURCE } from '../src/run/coreml/build.js';

const require = createRequire(import.meta.url);
const source = readFileSync(HELPER_SOURCE, 'utf8');

/** Every ERROR or MISSING node of a parse, with its position. */
async function parseProblems(text: string): Promise<string[]> {
  await Parser.init();
  const swift = await Language.load(require.resolve('@repomix/tree-sitter-wasms/out/tree-sitter-swift.wasm'));
  const parser = new Parser();
  parser.setLanguage(swift);
  const tree = parser.parse(text)!;
  const problems: string[] = [];
  const walk = (n: Node) => {
    if (n.isError || n.isMissing)
      problems.push(
        `${n.isMissing ? `MISSING ${n.type}` : 'ERROR'} at ${n.startPosition.row + 1}:${n.startPosition.column + 1}: ${JSON.stringify(n.text.slice(0, 60))}`,
      );
    for (const c of n.children) if (c) walk(c);
  };
  walk(tree.rootNode);
  if (tree.rootNode.hasError && problems.length === 0) problems.push('the tree has an error');
  tree.delete();
  parser.delete();
  return problems;
}

describe('helper.swift', () => {
  it('parses with no ERROR or MISSING node', async () => {
    expect(await parseProblems(source)).toEqual([]);
  });

  it('the check finds broken Swift (so a clean parse means something)', async () => {
    expect(
      await parseProblems(
        source.replace('func millis(since t0: UInt64) -> Double {', 'func millis(since t0: UInt64) -> Double {{'),
      ),
    ).not.toEqual([]);
    expect((await parseProblems('let x = foo(\n')).length).toBeGreaterThan(0);
    expect((await parseProblems('guard let value else { throw Failure(message: "x") \n')).length).toBeGreaterThan(0);
  });

  it('handles every op the client sends, and stays one small file', () => {
    for (const op of ['hello', 'compile', 'load', 'predict', 'unload', 'plan'])
      expect(source).toContain(`case "${op}":`);
    for (const units of ['all', 'cpuOnly', 'cpuAndGPU', 'cpuAndNeuralEngine'])
      expect(source).toContain(`case "${units}":`);
    for (const dtype of ['int32', 'float16', 'float32', 'float64']) expect(source).toContain(`case "${dtype}":`);
    expect(source.split('\n').length).toBeLessThanOrEqual(310);
  });

  it('names a source beside every Core ML call', () => {
    const calls = [
      'MLModel.compileModel(at:',
      'MLModel(contentsOf:',
      'MLComputePlan.load(contentsOf:',
      'config.functionName',
      'MLMultiArray(shape:',
      'withUnsafeMutableBytes',
      'MLDictionaryFeatureProvider(dictionary:',
      'model.prediction(from:',
      'deviceUsage(for:',
      'estimatedCost(of:',
    ];
    const lines = source.split('\n');
    for (const call of calls) {
      const at = lines.findIndex((l) => l.includes(call) && !l.trim().startsWith('//'));
      expect(at, call).toBeGreaterThan(0);
      // The comment above the function that makes the call (or beside the call) cites where its signature was read.
      let start = at;
      while (start > 0 && !/^\s*(static )?func /.test(lines[start]!)) start--;
      let top = start;
      while (top > 0 && /^\s*(\/\/|@available)/.test(lines[top - 1]!)) top--;
      const cited = [...lines.slice(top, start), ...lines.slice(start, at + 1).filter((l) => l.includes('//'))].join(
        '\n',
      );
      expect(cited, call).toMatch(/developer\.apple\.com\/documentation|[\w/-]+\.swift:\d+/);
    }
  });
});
