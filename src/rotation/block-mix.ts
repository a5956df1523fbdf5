// The H_K factor of a Hadamard transform, compiled to straight-line code. Applied with loops, the K×K ±1
// mix pays V8's loop overhead and loads of the block for every value; generated code that holds the K
// inputs in locals and spells each output as a chain of additions and subtractions is about ten times
// faster (docs/PERFORMANCE.md). The source is built only from the integers K, P and the signs of the
// block, never from user input.

/** x[o + a·P + b] ← Σ_c B[a][c]·x[o + c·P + b] for every b < P: the block applied across the K segments at o. */
export type BlockMix = (x: Float64Array, offset: number) => void;

/** Compiles the K×K ±1 matrix `block` (row-major) for segments of length p. */
export function compileBlockMix(block: Int8Array, k: number, p: number): BlockMix {
  const lines = [`for (let b = offset; b < offset + ${p}; b++) {`];
  for (let c = 0; c < k; c++) lines.push(`const g${c} = x[b + ${c * p}];`);
  for (let a = 0; a < k; a++) {
    let sum = '';
    for (let c = 0; c < k; c++) {
      const positive = block[a * k + c]! > 0;
      sum += c === 0 ? `${positive ? '' : '-'}g0` : ` ${positive ? '+' : '-'} g${c}`;
    }
    lines.push(`x[b + ${a * p}] = ${sum};`);
  }
  lines.push('}');
  return new Function('x', 'offset', lines.join('\n')) as BlockMix;
}
