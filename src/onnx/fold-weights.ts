// Weights stored in the layout their readers take. The lowering writes a projection as x @ W^T with
// Transpose(Reshape(W)) on the checkpoint's (Cout, Cin, 1, 1) weight (ops/defs/linear.ts); onnxruntime
// would fold that at load time, but into a second copy of every matrix held beside the first while the
// session is built (about +400 MB peak on synth-base). Here the reshape and the 2-D transpose of an
// initializer that nothing else reads become the initializer itself: dims changed, bytes transposed when
// written, so the file holds W^T once.

import type { OnnxInitializer, OnnxNodeProto } from './schema.js';

/** ONNX FLOAT, FLOAT16: the weights' types. */
const FLOAT_TYPES = new Set([1, 10]);

const permOf = (n: OnnxNodeProto): number[] | undefined =>
  n.attribute?.find((a) => a.name === 'perm')?.ints?.map(Number);

function int64Values(t: OnnxInitializer): number[] {
  const b = t.bytes();
  return Array.from(new BigInt64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), Number);
}

// Rows and columns of a row-major (r, c) matrix of `size`-byte elements swapped (2 and 4 bytes through
// typed views of an aligned copy; the weights are float32 or float16).
function transposeBytes(src: Uint8Array, r: number, c: number, size: number): Uint8Array {
  const out = new Uint8Array(src.length);
  const View = size === 4 ? Uint32Array : size === 2 ? Uint16Array : undefined;
  if (View) {
    const aligned = src.byteOffset % size === 0 ? src : src.slice();
    const from = new View(aligned.buffer as ArrayBuffer, aligned.byteOffset, r * c);
    const to = new View(out.buffer);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) to[j * r + i] = from[i * c + j]!;
    return out;
  }
  for (let i = 0; i < r; i++)
    for (let j = 0; j < c; j++) out.set(src.subarray((i * c + j) * size, (i * c + j + 1) * size), (j * r + i) * size);
  return out;
}

/** The nodes and initializers with Reshapes and (unless `transpose` is false) 2-D Transposes of sole-reader float initializers folded into them. */
export function foldWeightLayouts(
  nodes: readonly OnnxNodeProto[],
  initializers: readonly OnnxInitializer[],
  graphOutputs: ReadonlySet<string>,
  o: { transpose?: boolean } = {},
): { nodes: OnnxNodeProto[]; initializers: OnnxInitializer[] } {
  const byName = new Map(initializers.map((t) => [t.name, t]));
  const readers = new Map<string, number>();
  for (const n of nodes) for (const i of n.input) readers.set(i, (readers.get(i) ?? 0) + 1);
  const kept: OnnxNodeProto[] = [];
  const made: OnnxInitializer[] = [];
  // A weight cast (to its compute type: a checkpoint's bfloat16, a package's float16 read in place; or
  // through float16 for the emulation) and then reshaped: the initializer takes the new dims and the last
  // Cast writes the reshaped value, so that onnxruntime folds the Casts at load, not also a copy for the Reshape.
  const producer = new Map<string, OnnxNodeProto>();
  for (const n of nodes) for (const o of n.output) producer.set(o, n);
  const soleCast = (v: string) => {
    const p = producer.get(v);
    return p?.op_type === 'Cast' && readers.get(v) === 1 ? p : undefined;
  };
  const replaced = new Map<OnnxNodeProto, OnnxNodeProto | null>(); // null: dropped
  for (const n of nodes) {
    if (n.op_type !== 'Reshape' || graphOutputs.has(n.output[0]!)) continue;
    const chain: OnnxNodeProto[] = [];
    for (let c = soleCast(n.input[0]!); c; c = soleCast(c.input[0]!)) chain.unshift(c);
    const src = chain.length ? byName.get(chain[0]!.input[0]!) : undefined;
    const shape = byName.get(n.input[1] ?? '');
    const want = src && shape && readers.get(src.name) === 1 ? int64Values(shape) : undefined;
    if (
      !src ||
      !want ||
      !want.every((d) => d > 0) ||
      want.reduce((p, q) => p * q, 1) !== src.dims.reduce((p, q) => p * q, 1)
    )
      continue;
    const reshaped: OnnxInitializer = { ...src, name: `${src.name}__${want.join('x')}`, dims: want };
    made.push(reshaped);
    replaced.set(chain[0]!, { ...chain[0]!, input: [reshaped.name, ...chain[0]!.input.slice(1)] });
    const last = chain[chain.length - 1]!;
    replaced.set(last, { ...(replaced.get(last) ?? last), output: [...n.output] });
    replaced.set(n, null);
  }
  for (const n0 of nodes) {
    const swapped = replaced.get(n0);
    if (swapped === null) continue; // a Reshape, now done by the Casts before it
    const n = swapped ?? n0;
    const src = byName.get(n.input[0] ?? '');
    const out = n.output[0]!;
    const foldable =
      src &&
      FLOAT_TYPES.has(src.dataType) &&
      readers.get(src.name) === 1 &&
      n.output.length === 1 &&
      !graphOutputs.has(out);
    let folded: OnnxInitializer | undefined;
    if (foldable && n.op_type === 'Reshape') {
      const shape = byName.get(n.input[1] ?? '');
      const want = shape ? int64Values(shape) : undefined;
      const count = src.dims.reduce((p, q) => p * q, 1);
      if (want && want.every((d) => d > 0) && want.reduce((p, q) => p * q, 1) === count)
        folded = { ...src, name: out, dims: want };
    } else if (
      foldable &&
      o.transpose !== false &&
      !src.file &&
      n.op_type === 'Transpose' &&
      src.dims.length === 2 &&
      JSON.stringify(permOf(n)) === '[1,0]'
    ) {
      const [r, c] = src.dims as [number, number];
      const size = src.byteLength / (r * c);
      folded = { ...src, name: out, dims: [c, r], bytes: () => transposeBytes(src.bytes(), r, c, size) };
    }
    if (folded) {
      byName.set(out, folded);
      made.push(folded);
    } else kept.push(n);
  }
  return { nodes: kept, initializers: [...initializers, ...made] };
}
