// What every command shares: where output goes, whether it is JSON, progress bars on a TTY.

import { SingleBar } from 'cli-progress';

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Whether stderr is an interactive terminal (progress bars are drawn only there). */
  isTTY: boolean;
}

// A reader that stops early (`predict ... | head -1`) closes the pipe: the rest of the output has nowhere to go,
// which is no error of the command's. Writes after that are dropped, so the command still finishes (and cleans
// up) instead of dying on an unhandled EPIPE with a stack trace.
const closed = { stdout: false, stderr: false };
for (const name of ['stdout', 'stderr'] as const) {
  process[name].on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    closed[name] = true;
  });
}

/** The process's own streams. */
export const processIo: Io = {
  stdout: (t) => void (closed.stdout || process.stdout.write(t)),
  stderr: (t) => void (closed.stderr || process.stderr.write(t)),
  isTTY: Boolean(process.stderr.isTTY),
};

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

// A bar hides the terminal's cursor while it draws. Interrupted (Ctrl-C, kill), the process must not leave it
// hidden: while a bar is drawn, a signal first shows the cursor again, then takes its usual course (whoever
// else listens, as a package being written does, still cleans up and exits).
const SHOW_CURSOR = '\u001b[?25h';
let drawing = 0;
const EXIT_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function onSignal(signal: NodeJS.Signals): void {
  process.stderr.write(SHOW_CURSOR);
  // Alone, the listener would swallow the signal: without it, the signal ends the process as it would have.
  if (process.listenerCount(signal) === 1) {
    process.removeListener(signal, onSignal);
    process.kill(process.pid, signal);
  }
}

function barStarted(): void {
  if (drawing++ === 0) for (const s of EXIT_SIGNALS) process.on(s, onSignal);
}

function barStopped(): void {
  if (--drawing === 0) for (const s of EXIT_SIGNALS) process.removeListener(s, onSignal);
}

/** A progress bar with counts and ETA on a TTY, and the rate in `unit`s per second when given; silent otherwise (and always with --json). */
export function progress(io: Io, label: string, json: boolean, unit?: string): Progress {
  if (json || !io.isTTY) return { update: () => {}, stop: () => {} };
  const t0 = performance.now();
  const bar = new SingleBar({
    format: `${label.padEnd(12)} [{bar}] {value}/{total} | {percentage}% | ETA {eta_formatted}${unit ? ` | {rate} ${unit}/s` : ''}`,
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: true,
    etaBuffer: 50,
  });
  let started = false;
  return {
    update(done, total) {
      const rate = { rate: (done / Math.max(1e-3, (performance.now() - t0) / 1000)).toFixed(1) };
      if (!started) {
        barStarted();
        bar.start(total, 0, rate);
        started = true;
      }
      bar.setTotal(total);
      bar.update(done, rate);
    },
    stop() {
      if (!started) return;
      bar.stop();
      started = false;
      barStopped();
    },
  };
}

/** Prints a value as JSON on one line. */
export function printJson(io: Io, value: unknown): void {
  io.stdout(`${JSON.stringify(value)}\n`);
}
