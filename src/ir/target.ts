// Core ML deployment targets: each fixes the model's specification version and the MIL opset name that
// the program is written in. Numbers and names from coremltools/__init__.py (_SPECIFICATION_VERSION_IOS_*,
// _OPSET) and converters/mil/_deployment_compatibility.py (macOS aliases). iOS 26 (spec 10, "CoreML9")
// exists there too but has no op definitions folder to transcribe, so it is not offered.

import { ModernBertError } from '../errors.js';

/** A deployment target that we can write (ML Programs start at iOS 15). */
export type Target = 'iOS15' | 'iOS16' | 'iOS17' | 'iOS18';

export interface TargetInfo {
  target: Target;
  /** Model.specificationVersion. */
  specificationVersion: number;
  /** Function.opset and the key of its block specialization. */
  opset: string;
}

const TARGETS: readonly TargetInfo[] = [
  { target: 'iOS15', specificationVersion: 6, opset: 'CoreML5' },
  { target: 'iOS16', specificationVersion: 7, opset: 'CoreML6' },
  { target: 'iOS17', specificationVersion: 8, opset: 'CoreML7' },
  { target: 'iOS18', specificationVersion: 9, opset: 'CoreML8' },
];

/** macOS releases that share a specification version with an iOS release. */
const MACOS_ALIASES: Record<string, Target> = {
  macOS12: 'iOS15',
  macOS13: 'iOS16',
  macOS14: 'iOS17',
  macOS15: 'iOS18',
};

/** The default target: macOS 14 / iOS 17, as the reference project converts. */
export const DEFAULT_TARGET: Target = 'iOS17';

/** A target as a user names it: an iOS release or the macOS release that shares its specification version. */
export type TargetName = Target | 'macOS12' | 'macOS13' | 'macOS14' | 'macOS15';

/** Reads a target name ('iOS17', 'macOS14', ...): the one place a name becomes a Target. */
export function parseTarget(name: string = DEFAULT_TARGET): Target {
  const target = MACOS_ALIASES[name] ?? name;
  if (!TARGETS.some((t) => t.target === target)) {
    throw new ModernBertError('UNSUPPORTED', `unknown deployment target "${name}"`, {
      target: name,
      supported: [...TARGETS.map((t) => t.target), ...Object.keys(MACOS_ALIASES)],
    });
  }
  return target as Target;
}

/** The specification version and opset of a target. */
export function targetInfo(target: Target = DEFAULT_TARGET): TargetInfo {
  return TARGETS.find((t) => t.target === target)!;
}

/** The target whose opset name (as a package's Function.opset) is `opset`. */
export function targetForOpset(opset: string): TargetInfo {
  const info = TARGETS.find((t) => t.opset === opset);
  if (!info) {
    throw new ModernBertError('UNSUPPORTED', `unknown MIL opset "${opset}"`, {
      opset,
      supported: TARGETS.map((t) => t.opset),
    });
  }
  return info;
}

/** True when target `a` is the same release as `b` or a later one. */
export function atLeast(a: Target, b: Target): boolean {
  return targetInfo(a).specificationVersion >= targetInfo(b).specificationVersion;
}
