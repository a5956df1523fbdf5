// Predicted placement of a Core ML package: every function of it, as read back (readMLPackage), costed at its
// longest input length.

import type { ModelDescription } from '../coreml/description.js';
import { readMLPackage, type ReadPackageResult } from '../coreml/mil-read.js';
import { estimateTime, type TimeEstimate } from './estimate.js';
import { predictPlacement, type Placement } from './placement.js';
import { defaultRules, type Rules } from './rules.js';

/** The prediction for one function. */
export interface FunctionPlacement {
  name: string;
  placement: Placement;
  time: TimeEstimate;
}

export interface PackagePlacement {
  path: string;
  functions: FunctionPlacement[];
}

/** The longest sequence length a description accepts: the last axis of its inputs' shapes (null when none). */
export function longestLength(d: ModelDescription): number | null {
  const lens = d.inputs.flatMap((f) => (f.enumeratedShapes ?? [f.shape]).map((s) => s.at(-1) ?? 0));
  return lens.length ? Math.max(...lens) : null;
}

/** Predicts one function already read. */
export function predictFunction(pkg: ReadPackageResult, rules: Rules = defaultRules()): FunctionPlacement {
  const seq = longestLength(pkg.description);
  const placement = predictPlacement(pkg.graph, {
    rules,
    sizes: seq ?? {},
    inputs: pkg.description.inputs,
    outputs: pkg.description.outputs,
  });
  return { name: pkg.functionName, placement, time: estimateTime(placement) };
}

/** Predicts every function of the package at `path` (the default function first). */
export function predictPackage(path: string, rules: Rules = defaultRules()): PackagePlacement {
  const first = readMLPackage(path);
  const functions = [predictFunction(first, rules)];
  for (const name of first.functions.slice(1)) functions.push(predictFunction(readMLPackage(path, name), rules));
  return { path, functions };
}
