// A grow-only float64 scratch buffer. Touching fresh memory costs page faults, more than the arithmetic of a
// Hadamard transform (docs/PERFORMANCE.md), so transforms reuse one buffer across tensors instead of
// allocating per call.

/** Scratch space handed out as a view of one growing buffer; a new `take` invalidates the previous view. */
export class Workspace {
  private buffer = new Float64Array(0);

  /** A view of `length` values (contents unspecified). */
  take(length: number): Float64Array {
    if (this.buffer.length < length) this.buffer = new Float64Array(length);
    return this.buffer.subarray(0, length);
  }
}
