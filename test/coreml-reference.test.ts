// Reading the packages that coremltools wrote (test/fixtures/coreml-reference): the graph we rebuild must
// match coremltools' own printout (program.mil.txt) op for op, and pass our op signature checks.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseTarget } from '../src/ir/target.js';
import { readMLPackage, type ReadPackageResult } from '../src/coreml/mil-read.js';
import { validateGraph } from '../src/ops/validate.js';
import { isLiteral, numel, type Graph } from '../src/ir/graph.js';
import { literalText, printGraph, pyFloat, typeText } from '../src/graph/print.js';

const ROOT = 'test/fixtures/coreml-reference';
const CASES = [
  { name: 'tiny-mlm-S32-norot', S: 32, hidden: 64, vocab: 1024, layers: 4 },
  { name: 'tiny-mlm-S32-rot', S: 32, hidden: 64, vocab: 1024, layers: 4 },
  { name: 'mini-trained-S64-rot', S: 64, hidden: 256, vocab: 4096, layers: 6 },
];

interface TextOp {
  outputs: { name: string; shape: string[]; dtype: string }[];
  type: string;
  args: string;
  line: string;
}

/** Parses coremltools' program.mil.txt op lines: `%a: (1, 64, fp16)(Tensor), %b: ... = type(args, name="...")`. */
function parseProgramText(text: string): TextOp[] {
  const ops: TextOp[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s+(%.*?) = ([a-z_0-9]+)\((.*)\)$/.exec(line);
    if (!m) continue;
    const outputs = [...m[1]!.matchAll(/%(\w+): \(([^)]*)\)\((?:Tensor|Scalar)\)/g)].map((o) => {
      const parts = o[2]!
        .split(',')
        .map((p) => p.trim())
        .filter((p) => p !== '');
      return { name: o[1]!, dtype: parts[parts.length - 1]!, shape: parts.slice(0, -1) };
    });
    ops.push({ outputs, type: m[2]!, args: m[3]!, line: line.trim() });
  }
  return ops;
}

/** numpy 2 prints some list elements as np.int32(-1); coremltools' block counter numbers blocks globally. */
function normalise(text: string): string {
  return text.replace(/np\.int32\((-?\d+)\)/g, '$1').replace(/block\d+\(\)/g, 'block0()');
}

function countTypes(types: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const t of types) counts[t] = (counts[t] ?? 0) + 1;
  return counts;
}

function constShape(g: Graph, name: string): number[] {
  const c = g.consts.get(name);
  if (!c) throw new Error(`no const ${name}`);
  return c.type.shape as number[];
}

describe.each(CASES)('reference package $name', ({ name, S, hidden, vocab, layers }) => {
  const pkg: ReadPackageResult = readMLPackage(join(ROOT, name, 'model.mlpackage'));
  const text = readFileSync(join(ROOT, name, 'program.mil.txt'), 'utf8');
  const textOps = parseProgramText(text);
  const g = pkg.graph;

  it('is an iOS17 ML Program with the documented inputs and output', () => {
    expect(pkg.specificationVersion).toBe(8);
    expect(pkg.opset).toBe('CoreML7');
    expect(pkg.target).toBe('iOS17');
    expect(pkg.functionName).toBe('main');
    expect(g.inputs).toEqual([
      { name: 'input_ids', type: { dtype: 'int32', shape: [1, S] } },
      { name: 'mask', type: { dtype: 'fp16', shape: [1, S, 1, S] } },
    ]);
    expect(g.outputs).toEqual(['logits']);
    expect(pkg.description.inputs).toEqual([
      { name: 'input_ids', dtype: 'int32', shape: [1, S] },
      { name: 'mask', dtype: 'fp16', shape: [1, S, 1, S] },
    ]);
    expect(pkg.description.outputs).toEqual([{ name: 'logits', dtype: 'fp16', shape: [1, vocab, 1, S] }]);
  });

  it('has the ops of program.mil.txt, in order, with their output names and shapes', () => {
    expect(textOps.length).toBeGreaterThan(200);
    expect(g.ops.map((o) => o.op)).toEqual(textOps.map((o) => o.type));
    expect(countTypes(g.ops.map((o) => o.op))).toEqual(countTypes(textOps.map((o) => o.type)));
    g.ops.forEach((op, i) => {
      const expected = textOps[i]!.outputs;
      expect(op.outputs.map((o) => ({ name: o.name, dtype: o.type.dtype, shape: o.type.shape.map(String) }))).toEqual(
        expected,
      );
    });
    const splits = g.ops.filter((o) => o.op === 'split');
    expect(splits.length).toBe(2 * layers);
    expect(splits.every((o) => o.outputs.length >= 2)).toBe(true);
  });

  it('keeps weights as lazily loaded Consts of the right shapes, small immediates as Literals', () => {
    expect(constShape(g, 'embeddings_embeddings_weight_to_fp16')).toEqual([vocab, hidden]);
    expect(constShape(g, 'head_decoder_weight_to_fp16')).toEqual([vocab, hidden, 1, 1]);
    for (const op of g.ops.filter((o) => o.op === 'conv')) {
      const w = op.inputs.weight;
      expect(typeof w).toBe('string');
      const [out, inp, kh, kw] = constShape(g, w as string);
      const x =
        g.ops.flatMap((o) => o.outputs).find((v) => v.name === op.inputs.x) ??
        g.inputs.find((v) => v.name === op.inputs.x);
      expect([kh, kw]).toEqual([1, 1]);
      expect(out).toBe(op.outputs[0]!.type.shape[1]);
      expect(inp).toBe(x!.type.shape[1]);
    }
    for (const c of g.consts.values()) {
      const data = c.load();
      expect(data.length).toBe(numel(c.type.shape as number[]));
      if (c.type.dtype === 'fp16') expect(data).toBeInstanceOf(Float32Array);
    }
    // The (1, S, 1, S) bool condition of the mask select is an inline immediate: too big for a Literal.
    const select = g.ops[0]!;
    expect(select.op).toBe('select');
    expect(g.consts.get(select.inputs.cond as string)?.type).toEqual({ dtype: 'bool', shape: [1, S, 1, S] });
    expect(select.inputs.a).toEqual({ kind: 'literal', dtype: 'fp16', shape: [], value: [-10000] });
    const gather = g.ops.find((o) => o.op === 'gather')!;
    expect(gather.inputs.validate_indices).toEqual({ kind: 'literal', dtype: 'bool', shape: [], value: [false] });
    const cast = g.ops.find((o) => o.op === 'cast')!;
    expect(cast.inputs.dtype).toEqual({ kind: 'literal', dtype: 'string', shape: [], value: 'int16' });
    const literals = g.ops.flatMap((o) => Object.values(o.inputs).filter(isLiteral));
    expect(literals.every((l) => numel(l.shape) <= 10)).toBe(true);
  });

  it('prints exactly as coremltools printed it (program.mil.txt)', () => {
    expect(normalise(printGraph(g, { opset: pkg.opset }))).toBe(normalise(text));
  });

  it('passes the op signature checks at its target, and names what iOS15 lacks', () => {
    expect(() => validateGraph(g, pkg.target)).not.toThrow();
    expect(() => validateGraph(g, parseTarget('macOS14'))).not.toThrow();
    expect(() => validateGraph(g, 'iOS15')).toThrow(/mask.*fp16 model inputs\/outputs need iOS16/);
  });
});

describe('MIL text helpers', () => {
  it('print floats as Python repr does', () => {
    expect(
      [1, -10000, 0.25, 1e-4, 1.0013580322265625e-5, 1e-5, 1e16, 123456789012345.6, -0, NaN, -Infinity].map(pyFloat),
    ).toEqual([
      '1.0',
      '-10000.0',
      '0.25',
      '0.0001',
      '1.0013580322265625e-05',
      '1e-05',
      '1e+16',
      '123456789012345.6',
      '-0.0',
      'nan',
      '-inf',
    ]);
  });

  it('print types and literals as coremltools does', () => {
    expect(typeText({ dtype: 'fp16', shape: [1, 64, 1, 'S'] })).toBe('(1, 64, 1, S, fp16)(Tensor)');
    expect(typeText({ dtype: 'int32', shape: [3] })).toBe('(3,int32)(Tensor)');
    expect(typeText({ dtype: 'fp32', shape: [] })).toBe('(fp32)(Scalar)');
    expect(literalText({ kind: 'literal', dtype: 'bool', shape: [2, 2], value: [true, false, false, true] })).toBe(
      '[[True, False], [False, True]]',
    );
    expect(literalText({ kind: 'literal', dtype: 'string', shape: [], value: 'EXACT' })).toBe('"EXACT"');
    expect(literalText({ kind: 'literal', dtype: 'int32', shape: [], value: [-2] })).toBe('-2');
  });
});
