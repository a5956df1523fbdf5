// What `convert --compress` asks for, checked against the target before any work: which modes exist, which
// targets can express them (iOS 16's table holds 2, 4, 16, 64 or 256 entries; int4 blocks and grouped tables
// are iOS 18 forms), and which tensors are compressed (coremltools' defaults: 2,048 elements or more; norms
// and biases, vectors, stay float16).

import { ModernBertError } from '../errors.js';
import { atLeast, type Target } from '../ir/target.js';
import { decoderChunks, MAX_CHANNELS } from '../model/decoder.js';

export const COMPRESS_MODES = ['pal8', 'pal6', 'pal4', 'pal3', 'pal2', 'int8', 'int4'] as const;
export type CompressMode = (typeof COMPRESS_MODES)[number];

/** coremltools' OpCompressorConfig weight_threshold default: smaller tensors stay uncompressed. */
const MIN_COMPRESS_ELEMENTS = 2048;

/** The int4 block along the input axis when --block-size is not given (coremltools' examples use 32). */
export const DEFAULT_BLOCK_SIZE = 32;

export interface CompressSpec {
  mode: CompressMode;
  target: Target;
  /** Output channels per table (iOS 18 palettes); undefined: one table per tensor. */
  groupSize?: number;
  /** int4: inputs per scale. */
  blockSize: number;
  /** Name globs (`*` any run of characters) of tensors kept at float16. */
  keep: readonly string[];
}

/** Bits of a palette mode, or undefined for the linear modes. */
export function paletteBits(mode: CompressMode): number | undefined {
  return mode.startsWith('pal') ? Number(mode.slice(3)) : undefined;
}

const bad = (message: string, context: Record<string, unknown> = {}): never => {
  throw new ModernBertError('BAD_ARGUMENT', message, context);
};

/** Checks the options of --compress against each other and the target; returns the spec. */
export function compressSpec(o: {
  mode: string;
  target: Target;
  groupSize?: number;
  blockSize?: number;
  keep?: readonly string[];
  weights: string;
}): CompressSpec {
  const mode = o.mode as CompressMode;
  if (!COMPRESS_MODES.includes(mode))
    bad(`\`compress: ${o.mode}\` is not a mode; valid: ${COMPRESS_MODES.join(', ')}`, { mode: o.mode });
  if (!atLeast(o.target, 'iOS16'))
    bad(
      `\`compress\` needs \`target: iOS16\` or later (compressed weights are iOS 16 ops); ${o.target} stores float16 only`,
      { target: o.target },
    );
  if (o.weights !== 'fp16') bad(`\`compress\` stores float16 tables and scales: leave out \`weights: ${o.weights}\``);
  const ios18 = atLeast(o.target, 'iOS18');
  if (mode === 'pal3' && !ios18)
    bad(
      `\`compress: pal3\` needs \`target: iOS18\`: before it a table holds 2, 4, 16, 64 or 256 entries (pal1, pal2, pal4, pal6, pal8); valid at ${o.target}: pal8, pal6, pal4, pal2, int8`,
    );
  if (mode === 'int4' && !ios18)
    bad(`\`compress: int4\` (block-wise) needs \`target: iOS18\`; valid at ${o.target}: pal8, pal6, pal4, pal2, int8`);
  if (o.groupSize !== undefined) {
    if (!mode.startsWith('pal'))
      bad(`\`groupSize\` applies to the palette modes (pal8, pal6, pal4, pal3, pal2), not ${mode}`);
    if (!ios18)
      bad(
        `\`groupSize\` (one table per group of output channels) needs \`target: iOS18\`; before it a tensor has one table`,
      );
  }
  if (o.blockSize !== undefined && mode !== 'int4') bad(`\`blockSize\` applies to \`compress: int4\`, not ${mode}`);
  return {
    mode,
    target: o.target,
    ...(o.groupSize !== undefined ? { groupSize: o.groupSize } : {}),
    blockSize: o.blockSize ?? DEFAULT_BLOCK_SIZE,
    keep: o.keep ?? [],
  };
}

/** True when `name` matches the glob (`*` any run of characters, everything else literal). */
export function globMatch(glob: string, name: string): boolean {
  const re = new RegExp(
    `^${glob
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
  return re.test(name);
}

/** Whether a weight of this name and shape is compressed: 2,048 elements or more, a matrix, not kept. */
export function isCompressed(spec: CompressSpec, name: string, shape: readonly number[]): boolean {
  const n = shape.reduce((a, b) => a * b, 1);
  return (
    n >= MIN_COMPRESS_ELEMENTS && shape.filter((d) => d > 1).length >= 2 && !spec.keep.some((g) => globMatch(g, name))
  );
}

/** Divisors of n, ascending. */
function divisors(n: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= n; d++) if (n % d === 0) out.push(d);
  return out;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** Checks --group-size and --block-size against the shapes of the tensors that will be compressed. */
export function checkShapes(spec: CompressSpec, tensors: readonly { name: string; shape: readonly number[] }[]): void {
  const chosen = tensors.filter((t) => isCompressed(spec, t.name, t.shape));
  if (spec.groupSize !== undefined) {
    const g = chosen.reduce((a, t) => gcd(a, t.shape[0]!), 0);
    const off = chosen.find((t) => t.shape[0]! % spec.groupSize! !== 0);
    if (off || spec.groupSize < 1)
      bad(
        `\`groupSize: ${spec.groupSize}\` does not divide the ${off?.shape[0] ?? '?'} output channels of ${off?.name ?? 'a tensor'}; valid: ${divisors(g).join(', ')}`,
        { groupSize: spec.groupSize },
      );
  }
  // The split decoder's chunks (vocabularies above 65,536) are stored as rows of the table: with one table
  // per group, each chunk must start and end on a group.
  const table = chosen.find((t) => t.name === 'model.embeddings.tok_embeddings.weight' && t.shape[0]! > MAX_CHANNELS);
  if (table && spec.groupSize !== undefined) {
    const V = table.shape[0]!;
    const { rows } = decoderChunks(V);
    if (rows % spec.groupSize !== 0 || (V % rows) % spec.groupSize !== 0) {
      const ok = divisors(gcd(rows, V % rows)).filter((d) => chosen.every((t) => t.shape[0]! % d === 0));
      bad(
        `\`groupSize: ${spec.groupSize}\` does not fit the decoder's chunks of ${rows} rows (its ${V} tokens split for the Neural Engine); valid: ${ok.join(', ')}`,
        { groupSize: spec.groupSize },
      );
    }
  }
  if (spec.mode === 'int4') {
    const g = chosen.reduce((a, t) => gcd(a, t.shape[1]!), 0);
    const off = chosen.find((t) => t.shape[1]! % spec.blockSize !== 0);
    if (off || spec.blockSize < 1)
      bad(
        `\`blockSize: ${spec.blockSize}\` does not divide the ${off?.shape[1] ?? '?'} inputs of ${off?.name ?? 'a tensor'}; valid: ${divisors(g).join(', ')}`,
        { blockSize: spec.blockSize },
      );
  }
}
