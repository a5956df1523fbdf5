// What every command that takes a MODEL shares for Hugging Face Hub ids: the --revision option and the
// options of the one resolver (src/hub/resolve.ts), with a download progress bar in megabytes on a TTY.

import type { Command } from 'commander';
import { ModernBertError } from '../errors.js';
import { isPackagePath } from '../run/load.js';
import type { DownloadProgress, HubOptions } from '../hub/resolve.js';
import { progress, type Io } from './context.js';

/** What a MODEL argument may be, for the commands' help. */
export const MODEL_HELP =
  'a checkpoint folder, or a Hugging Face Hub id org/name[@revision] (downloaded into the Hugging Face cache)';

/** Adds --revision to a command (--revision-SUFFIX for a second model, as diff's b). */
export function addRevisionOption(cmd: Command, suffix?: string): Command {
  const flag = suffix === undefined ? '--revision <rev>' : `--revision-${suffix} <rev>`;
  return cmd.option(
    flag,
    `branch, tag or commit of a Hub id${suffix === undefined ? '' : ` ${suffix.toUpperCase()}`} (default main; the same as ID@rev)`,
  );
}

/** A byte-counting progress bar shown in MB (with ETA and rate), silent with --json or off a TTY. */
export function downloadProgress(io: Io, json: boolean): DownloadProgress {
  const bar = progress(io, 'download MB', json, 'MB');
  const mb = (b: number) => Math.round(b / 1e5) / 10;
  return { update: (done, total) => bar.update(mb(done), mb(total)), stop: () => bar.stop() };
}

/** The resolver's options for a command: its revision and a progress bar. */
export function hubOptions(io: Io, o: { revision?: string; json?: boolean }): HubOptions {
  return {
    ...(o.revision === undefined ? {} : { revision: o.revision }),
    progress: downloadProgress(io, Boolean(o.json)),
  };
}

/** Refuses a MODEL that is not a Core ML package, for commands that read only packages (`doing`: what they do with it). */
export function requirePackagePath(path: string, doing: string): void {
  if (!isPackagePath(path))
    throw new ModernBertError('BAD_ARGUMENT', `${doing}; ${path} is not one (convert it first)`, { path });
}
