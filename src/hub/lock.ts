// A lock between processes on one cache file, so that two processes fetching the same blob do not both
// download it nor write the same `.incomplete` file. huggingface_hub locks with flock(2) on
// .locks/<repo>/<etag>.lock (utils/_fixes.py WeakFileLock), which Node cannot call; this lock is a file of
// its own beside that one, created exclusively (O_EXCL), holding the owner's pid and host and touched every
// few seconds while held. A lock whose owner died (same host, pid gone) or that was not touched for
// STALE_MS is taken over. The cache's correctness does not rest on the lock: blobs are checked and renamed
// into place whole, as huggingface_hub's own comments ask (its lock is "best-effort" too).
//
// Not proper-lockfile: it loads signal-exit at import, which patches process.emit and listens to SIGINT
// and SIGTERM, so that the CLI's own handlers (which remove a half-written package and exit) no longer
// see themselves as the only listener and nobody ends the process on Ctrl-C.

import { closeSync, openSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { fsError, makeFolders } from '../io/fs-errors.js';
import { alive } from '../io/temp-files.js';

/** A lock not touched for this long belongs to a process that hangs or died on another host. */
export const STALE_MS = 30_000;
const TOUCH_MS = 2_000;
const POLL_MS = 100;

interface Owner {
  pid: number;
  host: string;
  nonce: string;
}

/** Locks this process holds, removed if it exits while holding them. */
const held = new Map<string, string>();
let exitHook = false;

function releaseAllSync(): void {
  for (const [path, nonce] of held) releaseSync(path, nonce);
}

function releaseSync(path: string, nonce: string): void {
  held.delete(path);
  // Only our own lock: after a takeover (we hung past STALE_MS) the file is somebody else's.
  if (readOwner(path)?.nonce === nonce) rmSync(path, { force: true });
}

function readOwner(path: string): Owner | undefined {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as Partial<Owner>;
    return typeof o.pid === 'number' && typeof o.host === 'string' && typeof o.nonce === 'string'
      ? (o as Owner)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Whether the lock at `path` is abandoned: its owner is gone, or it was not touched in STALE_MS. */
function stale(path: string): boolean {
  let mtime: number;
  try {
    mtime = statSync(path).mtimeMs;
  } catch {
    return false; // gone already: the next try creates it
  }
  if (Date.now() - mtime > STALE_MS) return true;
  const owner = readOwner(path);
  // Half-written by a process that is creating it right now: wait for it.
  if (!owner) return false;
  if (owner.host !== hostname()) return false;
  if (owner.pid === process.pid) return !held.has(path);
  return !alive(owner.pid);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `f` holding the lock file `path` (made with its folder if missing). Waits while another live process
 * holds it, calling `onWait` once with that process's pid.
 */
export async function withLock<T>(
  path: string,
  f: () => Promise<T>,
  onWait?: (pid: number | undefined) => void,
): Promise<T> {
  try {
    makeFolders(dirname(path));
  } catch (e) {
    throw fsError(e, dirname(path), 'write');
  }
  const nonce = randomBytes(8).toString('hex');
  let waited = false;
  for (;;) {
    let fd: number | undefined;
    try {
      fd = openSync(path, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(e, path, 'write');
    }
    if (fd !== undefined) {
      try {
        writeSync(fd, JSON.stringify({ pid: process.pid, host: hostname(), nonce } satisfies Owner));
      } finally {
        closeSync(fd);
      }
      break;
    }
    if (stale(path)) {
      // Renamed away first, so that of two processes taking over the same stale lock only one succeeds.
      try {
        const aside = `${path}.${randomBytes(4).toString('hex')}.stale`;
        renameSync(path, aside);
        rmSync(aside, { force: true });
      } catch {
        // another process took it over first: try again
      }
      continue;
    }
    if (!waited) onWait?.(readOwner(path)?.pid);
    waited = true;
    await sleep(POLL_MS);
  }
  held.set(path, nonce);
  if (!exitHook) {
    process.on('exit', releaseAllSync);
    exitHook = true;
  }
  const touch = setInterval(() => {
    try {
      const now = new Date();
      utimesSync(path, now, now);
    } catch {
      // taken over or removed: releaseSync leaves a lock that is not ours alone
    }
  }, TOUCH_MS);
  touch.unref();
  try {
    return await f();
  } finally {
    clearInterval(touch);
    releaseSync(path, nonce);
  }
}
