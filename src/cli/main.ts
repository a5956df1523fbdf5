// The modernbert-ane command line: parse, run one command, turn every failure into one line and an exit code
// (2 for bad input or usage, 1 when a check fails, 3 for an internal error; the stack with --debug).

import { Command, CommanderError } from 'commander';
import { ModernBertError } from '../errors.js';
import { shutdownRuntime } from '../runtime/shutdown.js';
import { processIo, type Io } from './context.js';
import { registerInspect } from './commands/inspect.js';
import { registerOutliers } from './commands/outliers.js';
import { registerPredict } from './commands/predict.js';
import { registerSynth } from './commands/synth.js';
import { registerVerify } from './commands/verify.js';

export const VERSION = '0.1.0';

/** Runs the CLI on arguments (without node and the script); resolves to the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  let exitCode = 0;
  const program = new Command('modernbert-ane')
    .description('ModernBERT for the Apple Neural Engine: convert, run, verify and diff, in TypeScript')
    .version(VERSION)
    .option('--debug', 'print the stack trace of errors')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });
  const setExit = (code: number) => (exitCode = code);
  registerPredict(program, io);
  registerVerify(program, io, setExit);
  registerInspect(program, io);
  registerSynth(program, io);
  registerOutliers(program, io);
  for (const cmd of program.commands) cmd.exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr }).showHelpAfterError('(add --help for usage)');

  const debug = argv.includes('--debug');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // commander already printed the message
    if (e instanceof ModernBertError) {
      io.stderr(`error: ${e.message}\n`);
      if (debug && e.stack) io.stderr(`${e.stack}\n`);
      return 2;
    }
    const err = e as Error;
    io.stderr(`internal error: ${err?.message ?? String(e)}${debug ? '' : ' (run with --debug for the stack trace)'}\n`);
    if (debug && err?.stack) io.stderr(`${err.stack}\n`);
    return 3;
  } finally {
    await shutdownRuntime();
  }
}
