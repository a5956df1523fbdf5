// Temporary files and folders, the one mechanism for all of them: a file or package built beside its output
// before it is renamed into place (onnxruntime needs none: it reads the weights in place). While one exists it is tracked, and removed when the run fails, exits or is
// interrupted (SIGINT, SIGTERM, SIGHUP: the process then exits 128 + the signal number). Every name carries
// the owner's pid, so that the next run can clear what a killed one (SIGKILL, a crash) left, and never a live
// run's.

import { randomUUID } from 'node:crypto';
import { lstatSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Signals that end a run (Ctrl-C, kill, a closed terminal), with their numbers for the exit code. */
const SIGNALS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

const pending = new Set<string>();
let hooksInstalled = false;

function removePending(): void {
  for (const path of pending) removeQuietly(path);
}

function onSignal(signal: NodeJS.Signals): void {
  removePending();
  pending.clear();
  // Only a process in which nobody else listens to the signal is ours to end (a host program decides itself).
  if (process.listenerCount(signal) === 1) process.exit(128 + (SIGNALS[signal] ?? 0));
}

/** Removes `path` if it is there; a cleanup that fails must not hide the error that caused it. */
export function removeQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // nothing to do: the original error (or the finished output) is what matters
  }
}

/**
 * Tracks a temporary path: removed on exit or an interrupting signal until untrackTemp. The signal listeners
 * stay once installed: a signal that arrives while a path is tracked is handled on the event loop, possibly
 * after the path was untracked (onnxruntime creates its session without yielding), and must still end the
 * process as it would have without them.
 */
function trackTemp(path: string): void {
  if (!hooksInstalled) {
    process.on('exit', removePending);
    for (const s of Object.keys(SIGNALS)) process.on(s, onSignal);
    hooksInstalled = true;
  }
  pending.add(path);
}

/** Stops tracking `path` (it was renamed into place or removed). */
export function untrackTemp(path: string): void {
  pending.delete(path);
}

/** Removes a tracked temporary path and stops tracking it. */
export function dropTemp(path: string): void {
  removeQuietly(path);
  untrackTemp(path);
}

/**
 * `.NAME.tmp-`, NAME cut to 60 UTF-16 units (at most 180 bytes of UTF-8) so that the temporary name, with its
 * pid, UUID and `.old`, stays within the 255 bytes a file name may have wherever the output's own name fits.
 */
function siblingPrefix(target: string): string {
  return `.${basename(target).slice(0, 60)}.tmp-`;
}

/**
 * A fresh temporary name beside `target` (absolute), tracked, after clearing the leftovers of killed runs
 * that wrote to the same target. The caller creates it, and renames it into place or drops it (dropTemp).
 */
export function tempSibling(target: string): string {
  clearStaleSiblings(target);
  const path = join(dirname(target), `${siblingPrefix(target)}${process.pid}-${randomUUID()}`);
  trackTemp(path);
  return path;
}

/** Whether process `pid` is alive (EPERM: alive, another user's). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Clears what an earlier run writing `target` left when it was killed: the temporary siblings of a process
 * that is gone, and those of older versions, which carried no pid. A previous package moved aside (`.old`)
 * when the kill fell between the two renames of a --force is put back, not removed.
 */
export function clearStaleSiblings(target: string): void {
  const prefix = siblingPrefix(target);
  const pattern = new RegExp(`^(?:(\\d+)-)?${UUID}(\\.old|\\.data)?$`);
  let names: string[];
  try {
    names = readdirSync(dirname(target));
  } catch {
    return; // an unreadable folder fails later, with the writer's own error
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = pattern.exec(name.slice(prefix.length));
    if (!m || (m[1] !== undefined && alive(Number(m[1])))) continue;
    const path = join(dirname(target), name);
    if (m[2] === '.old' && !lstatSync(target, { throwIfNoEntry: false })) {
      try {
        renameSync(path, target);
        continue;
      } catch {
        // it cannot be put back: removed below like any leftover
      }
    }
    removeQuietly(path);
  }
}
