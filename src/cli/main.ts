// The modernbert-ane command line: parse, run one command, turn every failure into one line and an exit code
// (2 for bad input or usage, 1 when a check fails, 3 for an internal error; the stack with --debug).

import { Command, CommanderError } from 'commander';
import { exitCodeFor, ModernBertError } from '../errors.js';
import { VERSION } from '../version.js';
import { kernelThreads } from '../runtime/kernels/index.js';
import { shutdownRuntime } from '../runtime/shutdown.js';
import { processIo, type Io } from './context.js';
import { asFlags } from './flag-names.js';
import { registerConvert } from './commands/convert.js';
import { registerDiff } from './commands/diff.js';
import { registerDownload } from './commands/download.js';
import { registerExportOnnx } from './commands/export-onnx.js';
import { registerEmbed } from './commands/embed.js';
import { registerInspect } from './commands/inspect.js';
import { registerOutliers } from './commands/outliers.js';
import { registerPredict } from './commands/predict.js';
import { registerReport } from './commands/report.js';
import { registerSynth } from './commands/synth.js';
import { registerVerify } from './commands/verify.js';
import { registerBench } from './commands/bench.js';
import { registerPlan } from './commands/plan.js';
import { closeCoreMLSessions } from '../run/coreml/session.js';

/** Runs the CLI on arguments (without node and the script); resolves to the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  let exitCode = 0;
  // Usage errors are one line too: commander's suggestion ("(Did you mean ...?)") joins the message.
  const output = {
    writeOut: io.stdout,
    writeErr: io.stderr,
    outputError: (str: string, write: (s: string) => void) =>
      write(`${oneLine(str)}${dashHint(str, commandOf(argv))} (add --help for usage)\n`),
  };
  const program = new Command('modernbert-ane')
    .description('ModernBERT for the Apple Neural Engine: convert, run, verify and diff, in TypeScript')
    .version(VERSION)
    .option('--debug', 'print the stack trace of errors')
    .exitOverride()
    .configureOutput(output);
  const setExit = (code: number) => (exitCode = code);
  registerPredict(program, io);
  registerVerify(program, io, setExit);
  registerInspect(program, io, setExit);
  registerSynth(program, io);
  registerOutliers(program, io);
  registerConvert(program, io, setExit);
  registerDiff(program, io);
  registerExportOnnx(program, io);
  registerEmbed(program, io);
  registerReport(program, io);
  registerBench(program, io);
  registerPlan(program, io);
  registerDownload(program, io);
  for (const cmd of program.commands) cmd.exitOverride().configureOutput(output);
  // A bad MODERNBERT_ANE_THREADS fails before a command starts, not minutes into a conversion (--help still works).
  program.hook('preAction', () => void kernelThreads());

  const debug = argv.includes('--debug');
  // No command, or help for one that does not exist: one `error:` line, as for any other usage error (the whole help is for --help).
  const names = program.commands.map((c) => c.name());
  const words = argv.filter((a) => a !== '--debug');
  const usage = `modernbert-ane <command> [options], the command one of ${names.join(', ')} (add --help for usage)`;
  if (words.length === 0) {
    io.stderr(`error: no command given: ${usage}\n`);
    return 2;
  }
  if (words[0] === 'help' && words[1] !== undefined && !names.includes(words[1]) && !words[1].startsWith('-')) {
    io.stderr(`error: unknown command '${oneLine(words[1])}': ${usage}\n`);
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // commander already printed the message
    if (e instanceof ModernBertError && e.code !== 'INTERNAL') {
      io.stderr(`error: ${oneLine(asFlags(e.message))}\n`);
      if (debug && e.stack) io.stderr(`${e.stack}\n`);
      return exitCodeFor(e.code);
    }
    const err = e as Error;
    io.stderr(
      `internal error: ${oneLine(err?.message ?? String(e))}${debug ? '' : ' (run with --debug for the stack trace)'}\n`,
    );
    if (debug && err?.stack) io.stderr(`${err.stack}\n`);
    return 3;
  } finally {
    await closeCoreMLSessions();
    await shutdownRuntime();
  }
}

/** The commands that take texts as arguments, where a text may start with '-'. */
const TEXT_COMMANDS: ReadonlySet<string> = new Set(['predict', 'diff', 'outliers']);

/** The command named in argv (its first word that is not an option). */
function commandOf(argv: readonly string[]): string | undefined {
  return argv.find((a) => !a.startsWith('-'));
}

/**
 * Texts are never guessed from unknown options (a mistyped option would silently become the text), so an
 * unknown option given to a command that takes texts says how to pass a text that starts with '-': after `--`.
 */
function dashHint(message: string, command: string | undefined): string {
  const m = /unknown option '([^']*)'/.exec(message);
  return m && command !== undefined && TEXT_COMMANDS.has(command)
    ? ` (a text that starts with '-' goes after --, e.g. ${command} -- "${m[1]}")`
    : '';
}

/** A message on one line (the CLI's contract: one line on stderr per error). */
function oneLine(text: string): string {
  return text.trim().replace(/\s*\n\s*/g, ' ');
}
