// Writing a user's file, the one way every command does it (embed, predict --input, export-onnx and its .data
// file, outliers --plot, synth, and convert's packages through coreml/package.ts):
// - checked before the work starts: the folder exists and takes a new file (a probe is made and removed, which
//   no permission bit or read-only mount can fool, root or not);
// - never over an input of the same run: real paths (and device and inode) are compared, so no symbolic
//   link, `..` or hard link hides one; an existing entry inside an input folder (the model's own files) is an
//   input too, and a folder output never replaces a folder that holds one;
// - an existing output is replaced only with --force, and only when it is a regular file (or, for folder
//   outputs, the kind the caller recognises, such as a Core ML package): never a folder of the user's, a
//   socket or a block device;
// - character devices and FIFOs (/dev/null, a named pipe) and the process's own standard output or error
//   (/dev/stdout, even when the shell sent it to a file) are written in place, never replaced; a FIFO with no
//   reader, or a reader that stops, fails after DEVICE_WAIT_SECONDS with a line saying what it waited for;
// - everything else is written to a temporary sibling (tracked by temp-files.ts) and renamed at the end, so a
//   failed or interrupted run leaves nothing behind and an existing file stays as it was.

import {
  accessSync,
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmdirSync,
  statSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { ModernBertError } from '../errors.js';
import { kindOf } from './files.js';
import { fsError, withFsErrors } from './fs-errors.js';
import { DEVICE_WAIT_SECONDS, sleepMs } from './limits.js';
import { dropTemp, tempSibling, untrackTemp } from './temp-files.js';

export interface OutputRequest {
  /** What names the output in messages: the option ('--out', '--plot') or a role ('the ONNX data file'). */
  what: string;
  /** Replace an existing output (a regular file, or a folder that `recognise` accepts). */
  force: boolean;
  /** What this run reads, files or folders: never written over (see the module comment). */
  inputs?: readonly (string | undefined)[];
}

export interface FolderOutputRequest extends OutputRequest {
  /** Why what exists at the real path (stats `st`) must not be replaced, or undefined when it may (with force). */
  irreplaceable: (real: string, st: Stats) => string | undefined;
}

/** An output that was checked and may be written. */
export interface CheckedOutput {
  /** The path as the user gave it, for messages. */
  path: string;
  /** What names it in messages. */
  what: string;
  /** Where it is written: absolute, symbolic links resolved. */
  target: string;
  /** 'new': nothing there; 'replace': an existing file or folder, with force; 'direct': a device, FIFO or our own stdout/stderr, written in place. */
  how: 'new' | 'replace' | 'direct';
  force: boolean;
  /** For 'direct': the descriptor of our own stdout or stderr when the output is one of them. */
  ownFd?: 1 | 2;
}

/** Whether `child` is `parent` or lies inside it (both absolute). */
export function within(child: string, parent: string): boolean {
  const r = relative(parent, child);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}

/** The working directory's real path (as given when it cannot be resolved, e.g. after it was removed). */
function realCwd(): string {
  try {
    return realpathSync(process.cwd());
  } catch {
    return resolve('.');
  }
}

/** Where `abs` leads: the real path, and the stats of what is there (undefined: nothing yet). */
function locate(path: string, abs: string, what: string): { real: string; st: Stats | undefined } {
  return withFsErrors(path, 'write', () => {
    const parent = dirname(abs);
    const pst = statSync(parent, { throwIfNoEntry: false });
    if (!pst)
      throw new ModernBertError('FILE_NOT_FOUND', `${what} ${path}: the folder ${parent} does not exist`, { path });
    if (!pst.isDirectory())
      throw new ModernBertError('BAD_ARGUMENT', `cannot write ${path}: ${parent} is a file, not a folder`, {
        path: parent,
      });
    const lst = lstatSync(abs, { throwIfNoEntry: false });
    if (!lst?.isSymbolicLink()) return { real: join(realpathSync(parent), basename(abs)), st: lst };
    let st: Stats | undefined;
    try {
      st = statSync(abs);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT')
        throw new ModernBertError(
          'BAD_ARGUMENT',
          `${what} ${path} is a symbolic link to nothing (${readlinkSync(abs)}); remove it or choose another path`,
          { path },
        );
      throw e;
    }
    // A link to a pipe or socket (/dev/stdout -> /proc/self/fd/1 -> pipe:[...]) has no real path: it is
    // written through the link itself.
    return { real: st.isFile() || st.isDirectory() ? realpathSync(abs) : abs, st };
  });
}

/** Why the output at `real` (stats `st`, undefined when new) would write over an input, or undefined. */
function inputConflict(
  real: string,
  st: Stats | undefined,
  folder: boolean,
  inputs: readonly (string | undefined)[],
): string | undefined {
  for (const input of inputs) {
    if (input === undefined || input === '') continue;
    const ist = statSync(input, { throwIfNoEntry: false });
    if (!ist) continue;
    let rin: string;
    try {
      rin = realpathSync(input);
    } catch {
      continue;
    }
    if (real === rin || (st && st.dev === ist.dev && st.ino === ist.ino))
      return folder ? `is or holds the input ${input}` : `is the input ${input}`;
    if (st && ist.isDirectory() && within(real, rin) && real !== rin) return `lies inside the input ${input}`;
    if (st && folder && within(rin, real)) return `is or holds the input ${input}`;
  }
  return undefined;
}

/** The refusal of an existing output: with --force, that it will not be replaced; without, that it exists. */
function refuse(o: OutputRequest, path: string, why: string): ModernBertError {
  if (o.force)
    return new ModernBertError('BAD_ARGUMENT', `--force will not replace ${path}: it ${why}; nothing was changed`, {
      path,
    });
  return new ModernBertError('OUTPUT_EXISTS', `${path} already exists; it ${why}, so choose another path`, { path });
}

/** Which of our own standard streams (1, 2) `st` is, if any. */
function ownStream(st: Stats): 1 | 2 | undefined {
  for (const fd of [1, 2] as const) {
    try {
      const s = fstatSync(fd);
      if (s.dev === st.dev && s.ino === st.ino) return fd;
    } catch {
      // not open
    }
  }
  return undefined;
}

/** Makes and removes a probe in `folder`: whether a file (or folder) can be created there, known before the work. */
function probe(target: string, path: string, folder: boolean): void {
  const tmp = tempSibling(target);
  try {
    withFsErrors(path, 'write', () => {
      if (folder) {
        mkdirSync(tmp);
        rmdirSync(tmp);
      } else {
        closeSync(openSync(tmp, 'wx'));
      }
    });
  } finally {
    dropTemp(tmp);
  }
}

/**
 * Checks that a file may be written at `path` (see the module comment), before any work. Returns where and
 * how it will be written; writeOutput or OutputFile then write it.
 */
export function checkFileOutput(path: string, o: OutputRequest): CheckedOutput {
  if (path.trim() === '') throw new ModernBertError('BAD_ARGUMENT', `${o.what} needs a file name`);
  const abs = resolve(path);
  const { real, st } = locate(path, abs, o.what);
  const conflict = inputConflict(real, st, false, o.inputs ?? []);
  if (conflict) throw refuse(o, path, conflict);
  if (st?.isDirectory())
    throw new ModernBertError('BAD_ARGUMENT', `${o.what} ${path} is a folder, not a file`, { path });
  const base = { path, what: o.what, target: real, force: o.force };
  // Our own standard output or error (/dev/stdout), whatever it is (a pipe, a socket, the shell's file).
  const own = st && ownStream(st);
  if (own) return { ...base, how: 'direct', ownFd: own };
  if (st && (st.isCharacterDevice() || st.isFIFO())) {
    checkWritable(path, real);
    return { ...base, how: 'direct' };
  }
  if (st && !st.isFile()) throw refuse({ ...o, force: true }, path, `is ${kindOf(st)}`);
  if (st && !o.force)
    throw new ModernBertError('OUTPUT_EXISTS', `${o.what} ${path} already exists (use --force to replace it)`, {
      path,
    });
  probe(real, path, false);
  return { ...base, how: st ? 'replace' : 'new' };
}

/**
 * Whether a device or FIFO may be written (it is not created: permission is the whole question). Not by
 * opening it: a FIFO's reader would see the end of its input, and some devices act on being opened.
 */
function checkWritable(path: string, real: string): void {
  withFsErrors(path, 'write', () => accessSync(real, constants.W_OK));
}

/**
 * Checks that a folder output (a package) may be written at `path`: as checkFileOutput, but an existing
 * folder is replaced (with force) only when `irreplaceable` finds no reason against it, and never the working
 * directory or a folder above it. Devices, FIFOs and files are never replaced by a folder.
 */
export function checkFolderOutput(path: string, o: FolderOutputRequest): CheckedOutput {
  if (path.trim() === '')
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `the output path is empty: name a package, e.g. ${o.what} model.mlpackage`,
    );
  const abs = resolve(path);
  const { real, st } = locate(path, abs, o.what);
  const base = { path, what: o.what, target: real, force: o.force };
  if (st) {
    const why = within(realCwd(), real)
      ? 'is the working directory or a folder above it'
      : (inputConflict(real, st, true, o.inputs ?? []) ?? o.irreplaceable(real, st));
    if (why) throw refuse(o, path, why);
    if (!o.force)
      throw new ModernBertError('OUTPUT_EXISTS', `${path} already exists (use --force to replace the package)`, {
        path,
      });
  }
  probe(real, path, true);
  return { ...base, how: st ? 'replace' : 'new' };
}

/** Checks a file output again just before it is renamed into place: nothing appeared at a new one, nothing but a file is at a replaced one. */
function recheck(out: CheckedOutput): void {
  const st = lstatSync(out.target, { throwIfNoEntry: false });
  if (out.how === 'new' && st && !out.force)
    throw new ModernBertError('OUTPUT_EXISTS', `${out.path} appeared while it was being written; nothing was changed`, {
      path: out.path,
    });
  if (out.how === 'replace' && st && !st.isFile()) {
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `${out.path} became ${kindOf(st)} while it was being written; nothing was changed`,
      { path: out.path },
    );
  }
}

const BUFFER_BYTES = 1 << 20;

/**
 * A file output being written: a temporary sibling renamed into place by commit, or (direct) the device,
 * FIFO or stream itself. abort() leaves nothing behind (and an existing file as it was).
 */
export class OutputFile {
  private fd: number;
  private readonly tmp: string | undefined;
  private done = false;
  /** Small writes (JSONL lines) gathered into one system call per BUFFER_BYTES. */
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;

  private constructor(readonly out: CheckedOutput) {
    if (out.how === 'direct') {
      this.tmp = undefined;
      this.fd = out.ownFd ?? openDirect(out);
      return;
    }
    const tmp = tempSibling(out.target);
    this.tmp = tmp;
    this.fd = withFsErrors(out.path, 'write', () => {
      try {
        const fd = openSync(tmp, 'wx');
        // A replaced file keeps its permissions.
        if (out.how === 'replace') fchmodSync(fd, statSync(out.target).mode & 0o7777);
        return fd;
      } catch (e) {
        dropTemp(tmp);
        throw e;
      }
    });
  }

  /** Opens a checked output (or checks `path` now with `request`) for writing. */
  static open(out: CheckedOutput | string, request?: OutputRequest): OutputFile {
    return new OutputFile(
      typeof out === 'string' ? checkFileOutput(out, request ?? { what: '--out', force: false }) : out,
    );
  }

  /** Appends bytes or UTF-8 text. */
  write(data: string | Uint8Array): void {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (bytes.length < BUFFER_BYTES) {
      // A copy: callers may reuse their buffer for the next write (synth fills one scratch array per tensor).
      this.buffered.push(typeof data === 'string' ? (bytes as Buffer) : Buffer.from(bytes));
      this.bufferedBytes += bytes.length;
      if (this.bufferedBytes >= BUFFER_BYTES) this.flush();
      return;
    }
    this.flush();
    this.writeNow(bytes);
  }

  private flush(): void {
    if (this.bufferedBytes === 0) return;
    const all = Buffer.concat(this.buffered, this.bufferedBytes);
    this.buffered = [];
    this.bufferedBytes = 0;
    this.writeNow(all);
  }

  private writeNow(bytes: Uint8Array): void {
    try {
      writeAll(this.fd, bytes, this.out);
    } catch (e) {
      this.abort();
      throw fsError(e, this.out.path, 'write');
    }
  }

  /** Finishes: renames the temporary file into place (after recheck), or closes the device. */
  commit(): void {
    if (this.done) return;
    this.flush();
    try {
      if (this.tmp === undefined) {
        if (this.out.ownFd === undefined) closeSync(this.fd);
        this.done = true;
        return;
      }
      withFsErrors(this.out.path, 'write', () => {
        fsyncSync(this.fd);
        closeSync(this.fd);
        this.fd = -1;
        recheck(this.out);
        renameSync(this.tmp!, this.out.target);
      });
      untrackTemp(this.tmp);
      this.done = true;
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Gives up: closes and removes the temporary file (a device is only closed). */
  abort(): void {
    if (this.done) return;
    this.done = true;
    if (this.fd >= 0 && this.out.ownFd === undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
    }
    this.fd = -1;
    if (this.tmp !== undefined) dropTemp(this.tmp);
  }
}

/** Writes a whole output (checked, or checked now with `request`): chunks in order, committed at the end. */
export function writeOutput(
  out: CheckedOutput | string,
  chunks: string | Uint8Array | Iterable<string | Uint8Array>,
  request?: OutputRequest,
): void {
  const file = OutputFile.open(out, request);
  try {
    for (const c of typeof chunks === 'string' || chunks instanceof Uint8Array ? [chunks] : chunks) file.write(c);
    file.commit();
  } finally {
    file.abort();
  }
}

/** Opens a device or FIFO for writing in place, waiting up to DEVICE_WAIT_SECONDS for a FIFO's reader. */
function openDirect(out: CheckedOutput): number {
  const deadline = Date.now() + DEVICE_WAIT_SECONDS * 1000;
  for (;;) {
    try {
      // Non-blocking: opening a FIFO for writing would otherwise wait for a reader for good.
      return openSync(out.target, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_APPEND);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENXIO') throw fsError(e, out.path, 'write');
      if (Date.now() > deadline) {
        throw new ModernBertError(
          'FILE_SYSTEM',
          `${out.what} ${out.path} is a FIFO that nobody reads: waited ${DEVICE_WAIT_SECONDS} s for a reader`,
          { path: out.path },
        );
      }
      sleepMs(20);
    }
  }
}

/** Writes all of `bytes`, waiting (up to DEVICE_WAIT_SECONDS without progress) where a pipe is full. */
function writeAll(fd: number, bytes: Uint8Array, out: CheckedOutput): void {
  let done = 0;
  let stalled = Date.now();
  while (done < bytes.length) {
    try {
      const n = writeSync(fd, bytes, done, bytes.length - done);
      done += n;
      if (n > 0) stalled = Date.now();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      if (Date.now() - stalled > DEVICE_WAIT_SECONDS * 1000) {
        throw new ModernBertError(
          'FILE_SYSTEM',
          `${out.what} ${out.path}: its reader took nothing for ${DEVICE_WAIT_SECONDS} s`,
          { path: out.path },
        );
      }
      sleepMs(5);
    }
  }
}
