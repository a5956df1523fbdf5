// One fuzz case, classified: a clear error (a ModernBertError with a one-line message), accepted (read
// and used without trouble), or an internal error (anything else). Hangs are caught by the caller
// (bench/fuzz.mjs runs cases in a worker with a watchdog; the test suite's own timeout in test/).

import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from './random.js';
import { isClearError, runReaderCase, type ReaderName, type Seeds } from './readers.js';

export { prepareSeeds, READERS, type ReaderName, type Seeds } from './readers.js';

export type Outcome = 'error' | 'accepted' | 'internal' | 'hang';

/** The result of one case, with what to print to replay it. */
export interface CaseResult {
  reader: ReaderName;
  seed: number;
  index: number;
  outcome: Outcome;
  /** The mutations applied. */
  what: string;
  /** The error message (for errors). */
  message?: string;
}

/** Runs case `index` of `reader` under `seed` in a fresh folder below `work`, and removes the folder; `ready` hears the mutations before the read. */
export async function runCase(
  reader: ReaderName,
  seeds: Seeds,
  seed: number,
  index: number,
  work: string,
  ready?: (what: string) => void,
): Promise<CaseResult> {
  const dir = join(work, `${reader}-${seed}-${index}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const log = { what: [] as string[], ready };
  const rng = Rng.forCase(seed, index);
  let outcome: Outcome;
  let message: string | undefined;
  try {
    await runReaderCase(reader, seeds, rng, dir, log);
    outcome = 'accepted';
  } catch (e) {
    outcome = isClearError(e) ? 'error' : 'internal';
    message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    if (outcome === 'internal' && e instanceof Error && e.stack)
      message += `\n${e.stack.split('\n').slice(1, 6).join('\n')}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { reader, seed, index, outcome, what: log.what.join('; '), ...(message === undefined ? {} : { message }) };
}

/** The replay line of a case. */
export function describeCase(r: CaseResult): string {
  return `${r.reader} seed ${r.seed} case ${r.index} [${r.what}] -> ${r.outcome}${r.message ? `: ${r.message.slice(0, 2000)}` : ''}`;
}
