// The options of the batch path (embed, predict --input): how texts are packed into windows.

import type { Command } from 'commander';
import type { Progress } from './context.js';
import { positiveInt } from './parse.js';

export interface BatchCliOptions {
  window?: number;
  pack?: number;
  truncate?: boolean;
  prefix?: string;
  force?: boolean;
}

/** Adds --window, --pack, --truncate, --prefix and --force; `note` prefixes their help (e.g. "with --input: "). */
export function addBatchOptions(cmd: Command, note = ''): Command {
  return cmd
    .option(
      '--window <n>',
      `${note}tokens per window (default 512 for checkpoints, the package's length for packages)`,
      positiveInt,
    )
    .option(
      '--pack <k>',
      `${note}most texts per window (default 64 for checkpoints, the package's --pack; 1 = one text per window)`,
      positiveInt,
    )
    .option('--truncate', `${note}cut texts longer than the window instead of failing`)
    .option(
      '--prefix <text>',
      `${note}prepended to every text (a sentence-transformers prompt such as "search_query: ")`,
    )
    .option(
      '--force',
      `${note}replace an existing --out file (never an input, a folder or a link's target of another kind)`,
    );
}

/** The batch run's options from the flags: errors name a text by its input line, progress goes to `bar`. */
export function batchRunOptions(o: BatchCliOptions, inputs: readonly { line: number }[], bar: Progress) {
  return {
    window: o.window,
    pack: o.pack,
    truncate: o.truncate,
    prefix: o.prefix,
    label: (i: number) => `line ${inputs[i]!.line}`,
    onProgress: (d: number, t: number) => bar.update(d, t),
  };
}
