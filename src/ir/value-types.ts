// The type of every named value of a graph (inputs, constants, op outputs), checking that names are unique.

import type { Graph, TensorType } from './graph.js';
import { ModernBertError } from '../errors.js';

/** Maps each value name of `graph` to its type and what defines it; a name defined twice is BAD_ARGUMENT. */
export function valueTypes(graph: Graph): Map<string, { type: TensorType; source: 'input' | 'const' | 'op' }> {
  const types = new Map<string, { type: TensorType; source: 'input' | 'const' | 'op' }>();
  const define = (name: string, type: TensorType, source: 'input' | 'const' | 'op'): void => {
    if (types.has(name)) {
      throw new ModernBertError('BAD_ARGUMENT', `value name "${name}" is defined more than once in the graph`, {
        value: name,
      });
    }
    types.set(name, { type, source });
  };
  for (const v of graph.inputs) define(v.name, v.type, 'input');
  for (const [name, c] of graph.consts) {
    if (c.name !== name) {
      throw new ModernBertError('BAD_ARGUMENT', `constant stored under "${name}" is named "${c.name}"`, {
        const: name,
      });
    }
    define(name, c.type, 'const');
  }
  for (const op of graph.ops) for (const out of op.outputs) define(out.name, out.type, 'op');
  return types;
}
