// The fidelity report that convert stores in a package's metadata, read back for the report page. JSON
// turns non-finite numbers into null, and packages from elsewhere (or older versions) may store less.

import type { FidelityReport, LayerFidelity } from '../eval/fidelity.js';

/** A stored layer: any number may have been written as null (not finite). */
export type StoredLayer = { [K in keyof LayerFidelity]: K extends 'layer' ? number : number | null };

/** A stored fidelity report: the KL may be null (not finite); per-layer figures only from this version on. */
export type StoredFidelity = Omit<FidelityReport, 'kl' | 'layers'> & { kl: number | null; layers?: StoredLayer[] };

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const numOrNull = (v: unknown): boolean => v === null || isNum(v);

/** The stored report, or null when there is none or it is not one of ours (the page then says so). */
export function readStoredFidelity(text: string | undefined): StoredFidelity | null {
  if (text === undefined) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  const f = raw as Record<string, unknown>;
  if (
    typeof f !== 'object' ||
    f === null ||
    typeof f.precision !== 'string' ||
    !numOrNull(f.kl) ||
    !isNum(f.top1) ||
    !isNum(f.top5) ||
    !isNum(f.tokens) ||
    typeof f.inputs !== 'string'
  )
    return null;
  const layers = Array.isArray(f.layers)
    ? (f.layers as Record<string, unknown>[]).filter(
        (l) =>
          typeof l === 'object' &&
          l !== null &&
          isNum(l.layer) &&
          ['rel_error', 'reference_max', 'converted_max', 'emulated_max'].every((k) => numOrNull(l[k])),
      )
    : undefined;
  return {
    ...(f as unknown as StoredFidelity),
    ...(layers ? { layers: layers as unknown as StoredLayer[] } : { layers: undefined }),
  };
}
