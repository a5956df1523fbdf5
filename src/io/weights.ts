// Named weight tensors, produced on demand. A checkpoint, a synthetic model and a folded/rotated model all
// present the same interface, so the model definition never cares where its weights come from, and
// conversion can stream them one tensor at a time.

import { ModernBertError } from '../errors.js';
import type { StoredTensor } from '../ir/graph.js';

export type { StoredTensor };

/** A float32 tensor with its shape (row-major). */
export interface Tensor {
  shape: number[];
  data: Float32Array;
}

/** A set of named tensors; `get` may compute or read the tensor each time it is called. */
export interface WeightSource {
  has(name: string): boolean;
  /**
   * The tensor, in a fresh array that the caller owns (and may modify); throws
   * ModernBertError('BAD_CONFIG') naming the tensor if it is absent.
   */
  get(name: string): Tensor;
  /** The shape without loading the data. */
  shape(name: string): number[];
  names(): string[];
  /** The stored tensor whose data `name` shares (a tied decoder reads the embeddings), else `name`. */
  storedName?(name: string): string;
  /** Where `get(name)`'s values lie as they are in a file, when they do (a checkpoint's tensors; never transformed ones). */
  location?(name: string): StoredTensor | undefined;
}

/** A source that answers from another one; subclasses change only how a tensor is read (`get`). */
export abstract class WrappedWeights implements WeightSource {
  constructor(protected readonly inner: WeightSource) {}
  abstract get(name: string): Tensor;
  has(name: string): boolean {
    return this.inner.has(name);
  }
  shape(name: string): number[] {
    return this.inner.shape(name);
  }
  names(): string[] {
    return this.inner.names();
  }
  storedName(name: string): string {
    return this.inner.storedName?.(name) ?? name;
  }
}

/** A source whose tensors also lie, as they are, in files (a package's weight.bin): runtimes that read files may read them there. */
export class LocatedWeights extends WrappedWeights {
  constructor(
    inner: WeightSource,
    private readonly where: ReadonlyMap<string, StoredTensor>,
  ) {
    super(inner);
  }
  get(name: string): Tensor {
    return this.inner.get(name);
  }
  location(name: string): StoredTensor | undefined {
    return this.where.get(name);
  }
}

/**
 * A zeroed float32 array on a SharedArrayBuffer: weights live there so that the matrix kernels' worker
 * threads read them in place, without a copy per product.
 */
export function sharedFloat32(n: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(n * 4));
}

/** Throws CORRUPT_FILE naming the tensor (and file) when `data` holds a NaN or an infinity. */
export function assertFinite(data: Float32Array, tensor: string, file?: string): void {
  // One multiply-add per element: x * 0 is NaN exactly when x is NaN or infinite.
  let acc = 0;
  for (let i = 0; i < data.length; i++) acc += data[i]! * 0;
  if (acc === 0) return;
  const at = data.findIndex((x) => !Number.isFinite(x));
  throw new ModernBertError(
    'CORRUPT_FILE',
    `${file ? `${file}: ` : ''}tensor "${tensor}" holds ${data[at]} at element ${at}; weights must be finite`,
    {
      tensor,
      index: at,
      ...(file ? { file } : {}),
    },
  );
}

/** A WeightSource over tensors held in memory (tests, small transforms). */
export class MemoryWeights implements WeightSource {
  constructor(private readonly tensors: Map<string, Tensor>) {}

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new ModernBertError('BAD_CONFIG', `weight "${name}" is missing`, { tensor: name });
    return { shape: [...t.shape], data: t.data.slice() };
  }

  shape(name: string): number[] {
    return this.get(name).shape;
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }
}
