import { describe, expect, it } from 'vitest';
import { GraphBuilder, bool, i32, str } from '../src/graph/builder.js';
import { Interpreter, opArgs } from '../src/graph/interpreter.js';
import { numericsFor } from '../src/runtime/numerics.js';
import type { Precision } from '../src/runtime/numerics.js';
import { ARENA_MIN, arenaStats, blockOf, releaseBlock, withArena } from '../src/runtime/arena.js';
import { allocFloat, type RtTensor } from '../src/runtime/tensor.js';
import { roundToF16 } from '../src/numeric/fp16.js';

const f32 = (shape: number[], f: (i: number) => number): RtTensor => {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'fp32', shape, data: Float32Array.from({ length: n }, (_, i) => f(i)) };
};

describe('interpreter', () => {
  // The scores + mask -> softmax pair runs fused; exposing the sum as an output keeps it unfused.
  async function maskedSoftmax(maskShape: number[], precision: Precision, fuse: boolean): Promise<Float32Array> {
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [1, 6, 1, 5]);
    const m = g.input('m', 'fp32', maskShape);
    const sum = g.op('add', { x, y: m }, 'sum');
    const p = g.op('softmax', { x: sum, axis: i32(1) }, 'p');
    g.output(p, 'probs');
    if (!fuse) g.graph.outputs.push(sum);
    const out = await new Interpreter(g.graph, precision).run({
      x: f32([1, 6, 1, 5], (i) => Math.sin(i * 1.7) * 300),
      m: f32(maskShape, (i) => (i % 4 === 1 ? -1e4 : 0)),
    });
    return out.get('probs')!.data as Float32Array;
  }

  for (const precision of ['fp32', 'fp16'] as const) {
    for (const shape of [
      [1, 6, 1, 5],
      [1, 6, 1, 1],
    ]) {
      it(`a fused mask add + softmax equals the two ops (${precision}, mask [${shape.join(', ')}])`, async () => {
        const fused = await maskedSoftmax(shape, precision, true);
        const plain = await maskedSoftmax(shape, precision, false);
        expect(Array.from(fused)).toEqual(Array.from(plain));
        // Columns sum to 1 and masked keys get nothing.
        for (let q = 0; q < 5; q++) {
          let s = 0;
          for (let k = 0; k < 6; k++) s += fused[k * 5 + q]!;
          expect(s).toBeCloseTo(1, 3);
        }
        expect(fused[1 * 5 + (shape[3] === 1 ? 2 : 0)]).toBe(0);
      });
    }
  }

  it('slices, splits, concatenates, gathers and einsums like MIL', async () => {
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [1, 4, 1, 3]);
    const sl = g.op(
      'slice_by_index',
      { x, begin: i32([0, 1, 0, 0]), end: i32([1, 3, 1, 0]), end_mask: bool([true, false, true, true]) },
      'sl',
    );
    const [a, b] = g.opN('split', { x, split_sizes: i32([1, 3]), axis: i32(1) }, 'sp');
    const cat = g.op('concat', { values: [b!, a!], axis: i32(1), interleave: bool(false) }, 'cat');
    const kT = g.op('transpose', { x, perm: i32([0, 3, 2, 1]) }, 'kT');
    const sc = g.op('einsum', { values: [kT, x], equation: str('bkhc,bchq->bkhq') }, 'sc');
    const ga = g.op('gather', { x, indices: i32([2, 0]), axis: i32(3) }, 'ga');
    for (const [v, n] of [
      [sl, 'sl_out'],
      [cat, 'cat_out'],
      [sc, 'sc_out'],
      [ga, 'ga_out'],
    ] as const)
      g.output(g.op('identity', { x: v }, `${n}_id`), n);
    const xs = f32([1, 4, 1, 3], (i) => i); // x[c, s] = 3c + s
    const out = await new Interpreter(g.graph).run({ x: xs });
    expect(Array.from(out.get('sl_out')!.data)).toEqual([3, 4, 5, 6, 7, 8]);
    expect(Array.from(out.get('cat_out')!.data)).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2]);
    expect(out.get('sc_out')!.shape).toEqual([1, 3, 1, 3]);
    // scores[k, q] = sum_c x[c, k] x[c, q]
    const ref = (k: number, q: number) => [0, 1, 2, 3].reduce((s, c) => s + (3 * c + k) * (3 * c + q), 0);
    expect(Array.from(out.get('sc_out')!.data)).toEqual([0, 1, 2].flatMap((k) => [0, 1, 2].map((q) => ref(k, q))));
    expect(Array.from(out.get('ga_out')!.data)).toEqual([2, 0, 5, 3, 8, 6, 11, 9]);
  });

  it('splits and slices over channels as views of their input (no copy), and copies other boxes', async () => {
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [1, 6, 1, 4]);
    const [a, b] = g.opN('split', { x, split_sizes: i32([2, 4]), axis: i32(1) }, 'sp');
    const head = g.slice(x, 1, 2, 5, 'head');
    const cols = g.slice(x, 3, 1, 3, 'cols');
    for (const [v, n] of [
      [a!, 'a'],
      [b!, 'b'],
      [head, 'head_out'],
      [cols, 'cols_out'],
    ] as const)
      g.output(v, n);
    const xs = f32([1, 6, 1, 4], (i) => i);
    for (const precision of ['fp32', 'fp16'] as const) {
      const input = { ...xs, data: Float32Array.from(xs.data) };
      const out = await new Interpreter(g.graph, precision).run({ x: input });
      expect(Array.from(out.get('b')!.data)).toEqual([8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]);
      expect(Array.from(out.get('head_out')!.data)).toEqual([8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
      expect(Array.from(out.get('cols_out')!.data)).toEqual([1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22]);
      const buffer = out.get('a')!.data.buffer;
      expect(out.get('b')!.data.buffer).toBe(buffer);
      expect(out.get('head_out')!.data.buffer).toBe(buffer);
      expect(out.get('cols_out')!.data.buffer).not.toBe(buffer);
    }
  });

  it('opArgs reads values, literals and the declared defaults of absent inputs, and names a missing value', () => {
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [1, 2, 1, 3]);
    const w = g.input('w', 'fp32', [4, 2, 1, 1]);
    g.op('conv', { x, weight: w, groups: i32(1) }, 'c');
    const op = g.graph.ops[0]!;
    delete op.inputs['strides']; // the builder fills defaults; a hand-made op may leave them out
    const env = new Map([
      ['x', f32([1, 2, 1, 3], (i) => i)],
      ['w', f32([4, 2, 1, 1], (i) => i)],
    ]);
    const a = opArgs(op, numericsFor('fp32'), (n) => env.get(n));
    expect(a.t('x')).toBe(env.get('x'));
    expect(a.ints('groups')).toEqual([1]);
    expect(a.ints('strides')).toEqual([1, 1]); // conv's default: one per spatial dim of x
    expect(a.has('strides')).toBe(false);
    expect(() => opArgs(op, numericsFor('fp32'), () => undefined).t('x')).toThrow(/reads "x", which is not available/);
  });

  it('frees intermediate values but keeps what it is asked for', async () => {
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [2]);
    const y = g.op('mul', { x, y: g.f(2) }, 'y');
    const z = g.op('add', { x: y, y: g.f(1) }, 'z');
    g.tap('double', y);
    g.output(z, 'out');
    const res = await new Interpreter(g.graph).run({ x: f32([2], (i) => i + 1) }, { keep: ['y'] });
    expect(Array.from(res.get('out')!.data)).toEqual([3, 5]);
    expect(Array.from(res.get('y')!.data)).toEqual([2, 4]);
  });

  it("hands dead activations back to the run's arena for later ops, never a block a live view holds, and returns copies", async () => {
    const C = 4;
    const S = 1 << 15; // (1, 4, 1, 32768): 131,072 floats, above the arena's minimum
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [1, C, 1, S]);
    const a = g.op('mul', { x, y: g.f(2) }, 'a');
    const head = g.slice(a, 1, 0, 2, 'head'); // a view of a's block, alive after a's last use
    const xv = g.op('reshape', { x, shape: i32([1, C, 1, S]) }, 'xv'); // a view of the input
    let v = g.op('mul', { x: xv, y: g.f(3) }, 'b'); // a is dead here but its block is not
    for (let k = 0; k < 8; k++) v = g.op('add', { x: v, y: g.f(k % 2 === 0 ? 1 : -1) }, `c${k}`); // each input dies as its output is born
    const tail = g.op('mul', { x: head, y: g.f(1) }, 'tail');
    g.output(v, 'out');
    g.output(tail, 'tail_out');
    const xs = f32([1, C, 1, S], (i) => (i % 97) - 48);
    const copy = Float32Array.from(xs.data);
    let live = 0;
    const interp = new Interpreter(g.graph);
    const out = await interp.run({ x: xs }, { onOp: () => (live = Math.max(live, arenaStats().liveFloats)) });
    // Eleven arrays of C x S were made; at most four were alive at once (a's block, the add's input and output, tail).
    expect(live).toBeGreaterThan(0);
    expect(live).toBeLessThanOrEqual(4 * C * S);
    expect(xs.data).toEqual(copy);
    const want = copy.map((val) => 3 * val);
    expect(out.get('out')!.data).toEqual(want);
    expect(out.get('tail_out')!.data).toEqual(copy.subarray(0, 2 * S).map((val) => 2 * val));
    // The outputs are copies: a second run, which reuses the slabs, leaves them alone.
    expect(blockOf(out.get('out')!.data)).toBeUndefined();
    await interp.run({ x: f32([1, C, 1, S], () => 5) });
    expect(out.get('out')!.data).toEqual(want);
  });

  it('hands back the parts of a block that no live view covers (the QKV output once only V is read)', async () => {
    const S = 1 << 15;
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [1, 4, 1, S]);
    const a = g.op('mul', { x, y: g.f(2) }, 'a');
    const [q, k, v, last] = [0, 1, 2, 3].map((c) => g.slice(a, 1, c, c + 1, `s${c}`)); // views of a's block
    const u = g.op('add', { x: g.op('add', { x: q, y: k }, 't'), y: v }, 'u'); // q, k and v die here
    const w = g.op('mul', { x: u, y: g.f(3) }, 'w');
    g.output(g.op('add', { x: w, y: last }, 'o'), 'out');
    const xs = f32([1, 4, 1, S], (i) => (i % 89) - 44);
    const interp = new Interpreter(g.graph);
    const liveAt = new Map<number, number>();
    const out = await interp.run({ x: xs }, { onOp: (done) => liveAt.set(done, arenaStats().liveFloats) });
    // After w: a's last quarter (the one view left) and w. Without trimming a stays whole: 5 S.
    const wAt = g.graph.ops.findIndex((op) => op.outputs[0]!.name === w) + 1;
    expect(liveAt.get(wAt)).toBe(2 * S);
    const d = xs.data as Float32Array;
    expect(out.get('out')!.data).toEqual(
      Float32Array.from(
        { length: S },
        (_, i) => 3 * (2 * d[i]! + 2 * d[S + i]! + 2 * d[2 * S + i]!) + 2 * d[3 * S + i]!,
      ),
    );
  });

  it('an arena hands out zeroed blocks, takes them back by any view, merges free neighbours, and is off outside a run', async () => {
    const n = ARENA_MIN;
    expect(blockOf(allocFloat(n))).toBeUndefined(); // outside a run: an ordinary array
    await withArena(async () => {
      const a = allocFloat(n).fill(7);
      const b = allocFloat(n).fill(8);
      expect(a.buffer).toBe(b.buffer);
      expect(b.byteOffset).toBe(a.byteOffset + 4 * n);
      const view = b.subarray(10, 20);
      expect(blockOf(view)).toBe(blockOf(b));
      releaseBlock(blockOf(view)!);
      releaseBlock(blockOf(a)!);
      expect(arenaStats().liveFloats).toBe(0);
      const c = allocFloat(2 * n); // a's and b's blocks, merged
      expect(c.byteOffset).toBe(a.byteOffset);
      expect(c.every((val) => val === 0)).toBe(true);
      expect(allocFloat(n - 1).length).toBe(n - 1);
      expect(blockOf(allocFloat(100))).toBeUndefined(); // short arrays stay ordinary
    });
  });

  it('float16 modes round the outputs of ops whose inputs share their arena slab', async () => {
    const S = 1 << 16;
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [1, 1, 1, S]);
    const third = g.op('mul', { x, y: g.f(1 / 3) }, 'third');
    g.output(g.op('mul', { x: third, y: g.f(1 / 7) }, 'seventh'), 'out');
    const xs = f32([1, 1, 1, S], (i) => 1 + i / S);
    const want = roundToF16(
      roundToF16(roundToF16(Float32Array.from(xs.data)).map((val) => val * Math.fround(1 / 3))).map(
        (val) => val * Math.fround(1 / 7),
      ),
    );
    expect((await new Interpreter(g.graph, 'fp16').run({ x: xs })).get('out')!.data).toEqual(want);
  });

  it('float16 modes round every output and overflow past 65504', async () => {
    const g = new GraphBuilder('fp32');
    const x = g.input('x', 'fp32', [3]);
    g.output(g.op('mul', { x, y: g.f(1) }, 'm'), 'out');
    const input = f32([3], (i) => [1 + 2 ** -12, 70000, 0.1][i]!);
    expect(Array.from((await new Interpreter(g.graph, 'fp16').run({ x: input })).get('out')!.data)).toEqual([
      1,
      Infinity,
      Math.fround(0.0999755859375),
    ]);
    expect(Array.from((await new Interpreter(g.graph, 'fp32').run({ x: input })).get('out')!.data)).toEqual(
      Array.from(input.data),
    );
  });
});
