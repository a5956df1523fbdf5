// Weights stored in the layout their readers take. The lowering writes a projection as x @ W^T with
// Transpose(Reshape(W)) on the checkpoint's (Cout, Cin, 1, 1) weight (ops/defs/linear.ts); onnxruntime
// would fold that at load time, but into a second copy of every matrix held beside the first while the
// session is built (about +400 MB peak on synth-base). Here the reshape and the 2-D transpose of an
// initializer that nothing else reads become the initializer itself: dims changed, bytes transposed when
// written, so the file holds W^T once.

import type { OnnxInitializer, OnnxNodeProto } from './schema.js';

/** ONNX FLOAT, FLOAT16: the weights' types. */
const FLOAT_TYPES = new Set([1, 10]);

const permOf = (n: OnnxNodeProto): number[] | undefined => n.attribute?.find((a) => a.name === 'perm')?.ints?.map(Number);

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
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out.set(src.subarray((i * c + j) * size, (i * c + j + 1) * size), (j * r + i) * size);
  return out;
}

/** The nodes and initializers with Reshapes and 2-D Transposes of sole-reader float initializers folded into them. */
export function foldWeightLayouts(nodes: readonly OnnxNodeProto[], initializers: readonly OnnxInitializer[], graphOutputs: ReadonlySet<string>): { nodes: OnnxNodeProto[]; initializers: OnnxInitializer[] } {
  const byName = new Map(initializers.map((t) => [t.name, t]));
  const readers = new Map<string, number>();
  for (const n of nodes) for (const i of n.input) readers.set(i, (readers.get(i) ?? 0) + 1);
  const kept: OnnxNodeProto[] = [];
  const made: OnnxInitializer[] = [];
  for (const n of nodes) {
    const src = byName.get(n.input[0] ?? '');
    const out = n.output[0]!;
    const foldable = src && FLOAT_TYPES.has(src.dataType) && readers.get(src.name) === 1 && n.output.length === 1 && !graphOutputs.has(out);
    let folded: OnnxInitializer | undefined;
    if (foldable && n.op_type === 'Reshape') {
      const shape = byName.get(n.input[1] ?? '');
      const want = shape ? int64Values(shape) : undefined;
      const count = src.dims.reduce((p, q) => p * q, 1);
      if (want && want.every((d) => d > 0) && want.reduce((p, q) => p * q, 1) === count) folded = { ...src, name: out, dims: want };
    } else if (foldable && n.op_type === 'Transpose' && src.dims.length === 2 && JSON.stringify(permOf(n)) === '[1,0]') {
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
