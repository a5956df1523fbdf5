// A WeightSource whose tensors are recipes: each is computed from its inputs when asked and not kept, so a
// transform of a large model holds one output tensor (and the inputs it reads) at a time.

import { ModernBertError } from '../errors.js';
import type { Tensor, WeightSource } from '../io/weights.js';

/** How to produce one tensor: its shape cheaply, its data on demand. */
export interface Recipe {
  shape(): number[];
  get(): Tensor;
}

/** A WeightSource computing each tensor from its recipe on every `get`. */
export class LazyWeights implements WeightSource {
  constructor(private readonly recipes: Map<string, Recipe>) {}

  has(name: string): boolean {
    return this.recipes.has(name);
  }

  get(name: string): Tensor {
    return this.recipe(name).get();
  }

  shape(name: string): number[] {
    return this.recipe(name).shape();
  }

  names(): string[] {
    return [...this.recipes.keys()];
  }

  private recipe(name: string): Recipe {
    const r = this.recipes.get(name);
    if (!r) throw new ModernBertError('BAD_CONFIG', `weight "${name}" is missing`, { tensor: name });
    return r;
  }
}
