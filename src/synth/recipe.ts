// Which tensors a synthetic checkpoint stores, and the uniform range each is drawn from
// (docs/FIXTURES.md): norm weights around 1, biases small, every other weight uniform with std 0.02.

import type { ModernBertConfig } from '../model/config.js';
import { expectedTensors } from '../model/checkpoint.js';

/** One stored tensor: values are float32(base + (2u - 1) * amp). */
export interface RecipeEntry {
  name: string;
  shape: number[];
  base: number;
  amp: number;
}

/** The base and amplitude of a tensor, from its name. */
function recipeRule(name: string): { base: number; amp: number } {
  if (name.endsWith('norm.weight')) return { base: 1, amp: 0.1 };
  if (name.endsWith('.bias')) return { base: 0, amp: 0.02 };
  return { base: 0, amp: 0.02 * Math.sqrt(3) };
}

/** The tensors a checkpoint of `config` stores, in checkpoint order; a tied decoder is not stored. */
export function synthRecipe(config: ModernBertConfig): RecipeEntry[] {
  const entries: RecipeEntry[] = [];
  for (const [name, shape] of expectedTensors(config)) {
    if (name === 'decoder.weight' && config.tieWordEmbeddings) continue;
    entries.push({ name, shape, ...recipeRule(name) });
  }
  return entries;
}
