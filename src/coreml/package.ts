// The .mlpackage folder, as coremltools' modelpackage/src/ModelPackage.cpp lays it out:
//   Manifest.json                      {fileFormatVersion "1.0.0", itemInfoEntries {UUID: {author, description,
//                                       name, path}}, rootModelIdentifier: UUID of the model.mlmodel item}
//   Data/com.apple.CoreML/model.mlmodel
//   Data/com.apple.CoreML/weights/     (weight.bin)
// Item paths are relative to Data/. Writing is atomic: everything is built in a temporary sibling folder
// that is renamed into place at the end, and removed on any failure, process exit or interrupting signal.

import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, lstatSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { ModernBertError } from '../errors.js';
import { fsError, makeFolders, withFsErrors } from '../io/fs-errors.js';
import { fileError, readJsonFile } from '../io/files.js';

/** The author that Core ML's own items carry. */
const COREML_AUTHOR = 'com.apple.CoreML';
const DATA_DIR = 'Data';
const MODEL_ITEM_PATH = 'com.apple.CoreML/model.mlmodel';
const WEIGHTS_ITEM_PATH = 'com.apple.CoreML/weights';
/** The weight file name inside the weights item; the program refers to it as @model_path/weights/weight.bin. */
export const WEIGHT_FILE = 'weight.bin';
const FILE_FORMAT_VERSION = '1.0.0';

/** Where conversion stores the tokenizer: an item with its own author, which Core ML itself does not read. */
export const TOKENIZER_ITEM_PATH = 'com.github.modernbert-ane/tokenizer';

/** A folder of extra files registered in Manifest.json beside the model (ModelPackage items). */
export interface ExtraItem {
  author: string;
  description: string;
  name: string;
  /** Relative to Data/. */
  path: string;
  /** Files copied into the item's folder. */
  files: { name: string; source: string }[];
}

export interface ManifestItem {
  author: string;
  description: string;
  name: string;
  path: string;
}

export interface Manifest {
  fileFormatVersion: string;
  itemInfoEntries: Record<string, ManifestItem>;
  rootModelIdentifier: string;
}

/** Where the parts of a package lie on disk. */
export interface PackageLayout {
  /** Data/com.apple.CoreML/model.mlmodel */
  modelFile: string;
  /** Data/com.apple.CoreML/weights */
  weightsDir: string;
}

/** Manifest.json for a package with a model, its weights and any extra items, with fresh upper-case UUID keys as ModelPackage makes. */
function newManifest(extras: readonly ExtraItem[] = []): Manifest {
  const modelId = randomUUID().toUpperCase();
  const weightsId = randomUUID().toUpperCase();
  const entries: Record<string, ManifestItem> = {
    [modelId]: { author: COREML_AUTHOR, description: 'CoreML Model Specification', name: 'model.mlmodel', path: MODEL_ITEM_PATH },
    [weightsId]: { author: COREML_AUTHOR, description: 'CoreML Model Weights', name: 'weights', path: WEIGHTS_ITEM_PATH },
  };
  for (const x of extras) entries[randomUUID().toUpperCase()] = { author: x.author, description: x.description, name: x.name, path: x.path };
  return { fileFormatVersion: FILE_FORMAT_VERSION, itemInfoEntries: entries, rootModelIdentifier: modelId };
}

/** Manifest.json text: two-space indented JSON without a trailing newline, as in packages coremltools writes. */
function manifestText(manifest: Manifest): string {
  return JSON.stringify(manifest, null, 2);
}

/** Temporary folders being built, removed if the process exits or is interrupted before they are renamed into place. */
const pending = new Set<string>();
let exitHookInstalled = false;
/** Signals that end a conversion (Ctrl-C, kill, a closed terminal); the process exits 128 + the signal number. */
const SIGNALS: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

function removePending(): void {
  for (const dir of pending) removeQuietly(dir);
}

function onSignal(signal: NodeJS.Signals): void {
  removePending();
  pending.clear();
  // Only a process that nobody else listens to the signal in is ours to end (a host program decides itself).
  if (process.listenerCount(signal) === 1) process.exit(128 + (SIGNALS[signal] ?? 0));
}

/** Removes `path` if it is there; a cleanup that fails must not hide the error that caused it. */
function removeQuietly(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // nothing to do: the original error (or the finished package) is what matters
  }
}

function track(tmp: string): void {
  if (!exitHookInstalled) {
    process.on('exit', removePending);
    exitHookInstalled = true;
  }
  if (pending.size === 0) for (const s of Object.keys(SIGNALS)) process.on(s, onSignal);
  pending.add(tmp);
}

function untrack(tmp: string): void {
  pending.delete(tmp);
  if (pending.size === 0) for (const s of Object.keys(SIGNALS)) process.off(s, onSignal);
}

/** Whether `child` is `parent` or lies inside it (both absolute). */
function within(child: string, parent: string): boolean {
  const r = relative(parent, child);
  return r === '' || (!r.startsWith('..') && !isAbsolute(r));
}

/**
 * Checks that a package may be written at `outPath`, before any work, after clearing what a killed earlier
 * conversion to it left (removeStaleTemps). An existing path is an OUTPUT_EXISTS
 * error unless `force`, and even then only a package (a folder holding Manifest.json) is replaced, never the
 * working directory or a folder above it, nor a path in `protect` (the input checkpoint) or one holding it.
 * Real paths are compared, so symbolic links and `..` do not hide one. Returns the absolute path.
 */
export function checkPackageOutput(outPath: string, force: boolean, protect: readonly string[] = []): string {
  if (outPath.trim() === '') throw new ModernBertError('BAD_ARGUMENT', 'the output path is empty: name a package, e.g. --out model.mlpackage');
  const target = resolve(outPath);
  const parent = dirname(target);
  const parentStat = withFsErrors(parent, 'write', () => statSync(parent, { throwIfNoEntry: false }));
  if (!parentStat) {
    throw new ModernBertError('FILE_NOT_FOUND', `the folder to write ${basename(target)} into does not exist: ${parent}`, { path: parent });
  }
  if (!parentStat.isDirectory()) throw new ModernBertError('BAD_ARGUMENT', `cannot write ${outPath}: ${parent} is a file, not a folder`, { path: parent });
  removeStaleTemps(target);
  const own = withFsErrors(outPath, 'write', () => lstatSync(target, { throwIfNoEntry: false }));
  if (!own) return target;
  const real = withFsErrors(outPath, 'write', () => (existsSync(target) ? realpathSync(target) : undefined));
  if (real === undefined) throw new ModernBertError('BAD_ARGUMENT', `${outPath} is a symbolic link to nothing (${readlinkSync(target)}); remove it or choose another path`, { path: outPath });
  const why = irreplaceable(real, protect);
  if (!force) {
    const hint = why ? `; it ${why}, so choose another path` : ' (use --force to replace the package)';
    throw new ModernBertError('OUTPUT_EXISTS', `${outPath} already exists${hint}`, { path: outPath });
  }
  if (why) throw new ModernBertError('BAD_ARGUMENT', `--force will not replace ${outPath}: it ${why}; nothing was changed`, { path: outPath });
  return target;
}

/** The working directory's real path (as given when it cannot be resolved, e.g. after it was removed). */
function realCwd(): string {
  try {
    return realpathSync(process.cwd());
  } catch {
    return resolve('.');
  }
}

/** Why the existing `real` path must not be replaced, or undefined when it is a package that may be. */
function irreplaceable(real: string, protect: readonly string[]): string | undefined {
  if (within(realCwd(), real)) return 'is the working directory or a folder above it';
  for (const p of protect) {
    const rp = existsSync(p) ? realpathSync(p) : resolve(p);
    if (within(rp, real)) return `is or holds the input ${p}`;
  }
  if (!statSync(real).isDirectory() || !existsSync(join(real, 'Manifest.json'))) return 'is not a Core ML package (a folder with Manifest.json)';
  return undefined;
}

/** The temporary sibling a package is built in: the owner's pid makes a leftover recognisable as stale. */
function tempName(target: string): string {
  return join(dirname(target), `${tempPrefix(target)}${process.pid}-${randomUUID()}`);
}

/**
 * `.NAME.tmp-`, NAME cut to 60 UTF-16 units (at most 180 bytes of UTF-8) so that the temporary name, with its
 * pid, UUID and `.old`, stays within the 255 bytes a file name may have wherever the package's own name fits.
 */
function tempPrefix(target: string): string {
  return `.${basename(target).slice(0, 60)}.tmp-`;
}

/** Whether process `pid` is alive (EPERM: alive, another user's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Clears what an earlier conversion to `target` left when it was killed (SIGKILL, a crash): the temporary
 * folders of a process that is gone, and those of older versions, which carried no pid. A previous package
 * moved aside (`.old`) when the kill fell between the two renames of a --force is put back, not removed.
 */
function removeStaleTemps(target: string): void {
  const prefix = tempPrefix(target);
  let names: string[];
  try {
    names = readdirSync(dirname(target));
  } catch {
    return; // an unreadable folder fails later, with the writer's own error
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(?:(\d+)-)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\.old)?$/.exec(name.slice(prefix.length));
    if (!m || (m[1] !== undefined && alive(Number(m[1])))) continue;
    const path = join(dirname(target), name);
    if (m[2] && !lstatSync(target, { throwIfNoEntry: false })) {
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

/**
 * Builds a package at `outPath` atomically: `build` fills the layout of a temporary sibling folder (the
 * manifest is written here), which is then renamed to `outPath`. On failure, SIGINT, SIGTERM or SIGHUP
 * nothing is left behind, and leftovers of a killed earlier run are cleared first. checkPackageOutput says
 * what may be replaced (`force`, `protect`); file-system failures are one-line errors naming `outPath`.
 */
export async function writePackageAtomically<T>(
  outPath: string,
  force: boolean,
  build: (layout: PackageLayout) => Promise<T>,
  extras: readonly ExtraItem[] = [],
  protect: readonly string[] = [],
): Promise<T> {
  const target = checkPackageOutput(outPath, force, protect);
  const tmp = tempName(target);
  track(tmp);
  try {
    return await writeErrorsAbout(outPath, dirname(target), async () => {
      const layout = layoutOf(tmp);
      makeFolders(layout.weightsDir);
      const result = await build(layout);
      for (const x of extras) {
        const dir = join(tmp, DATA_DIR, ...x.path.split('/'));
        makeFolders(dir);
        for (const f of x.files) copyFileSync(f.source, join(dir, f.name));
      }
      writeFileSync(join(tmp, 'Manifest.json'), manifestText(newManifest(extras)));
      replaceWith(tmp, target, force);
      return result;
    });
  } finally {
    removeQuietly(tmp);
    untrack(tmp);
  }
}

/**
 * Runs `f`, turning file-system errors of the package's own writing into one line about `outPath`: those on
 * a path in `folder`, or on no path (a write to an open file). Others (reading the checkpoint) pass as they are.
 */
async function writeErrorsAbout<T>(outPath: string, folder: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    const path = (e as NodeJS.ErrnoException).path;
    throw path === undefined || within(resolve(path), folder) ? fsError(e, outPath, 'write') : e;
  }
}

/** Renames the finished `tmp` folder to `target`; a folder cannot be renamed over another, so an old one is moved aside first. */
function replaceWith(tmp: string, target: string, force: boolean): void {
  if (!existsSync(target)) {
    renameSync(tmp, target);
    return;
  }
  if (!force) throw new ModernBertError('OUTPUT_EXISTS', `${target} appeared while it was being written`, { path: target });
  const old = `${tmp}.old`;
  renameSync(target, old);
  try {
    renameSync(tmp, target);
  } catch (e) {
    renameSync(old, target); // put the previous package back rather than lose both
    throw e;
  }
  removeQuietly(old);
}

function layoutOf(packageDir: string): PackageLayout {
  return {
    modelFile: join(packageDir, DATA_DIR, ...MODEL_ITEM_PATH.split('/')),
    weightsDir: join(packageDir, DATA_DIR, ...WEIGHTS_ITEM_PATH.split('/')),
  };
}

function isItem(x: unknown): x is ManifestItem {
  if (typeof x !== 'object' || x === null) return false;
  const r = x as Record<string, unknown>;
  return ['author', 'description', 'name', 'path'].every((k) => typeof r[k] === 'string');
}

/** Reads and checks Manifest.json of the package at `packagePath`. */
function readManifest(packagePath: string): Manifest {
  const file = join(packagePath, 'Manifest.json');
  if (!existsSync(file)) {
    throw new ModernBertError('FILE_NOT_FOUND', `${packagePath} is not an .mlpackage: it has no Manifest.json`, { path: packagePath });
  }
  const json = readJsonFile(file, 'Manifest.json');
  const m = (typeof json === 'object' && !Array.isArray(json) ? json : null) as Partial<Manifest> | null;
  const entries = m?.itemInfoEntries;
  if (
    m === null ||
    typeof m.fileFormatVersion !== 'string' ||
    typeof m.rootModelIdentifier !== 'string' ||
    typeof entries !== 'object' ||
    entries === null ||
    Array.isArray(entries) ||
    !Object.values(entries).every(isItem)
  ) {
    throw new ModernBertError('CORRUPT_FILE', `${file} lacks fileFormatVersion, rootModelIdentifier or well-formed itemInfoEntries`, {
      file,
    });
  }
  if (m.fileFormatVersion.split('.')[0] !== FILE_FORMAT_VERSION.split('.')[0]) {
    throw new ModernBertError('UNSUPPORTED', `${file} has package format version ${m.fileFormatVersion}; we read 1.x`, {
      file,
      version: m.fileFormatVersion,
    });
  }
  return m as Manifest;
}

/** Resolves an item path inside Data/, refusing paths that climb out of the package. */
function itemPath(packagePath: string, item: ManifestItem): string {
  const data = resolve(packagePath, DATA_DIR);
  const path = resolve(data, item.path);
  if (!path.startsWith(data + sep)) {
    throw new ModernBertError('CORRUPT_FILE', `Manifest.json item "${item.name}" points outside the package: ${item.path}`, {
      path: packagePath,
      item: item.path,
    });
  }
  return path;
}

/** Locates the root model file (via the manifest) and its weights folder in the package at `packagePath`. */
export function locatePackage(packagePath: string): PackageLayout {
  let isDir = false;
  try {
    isDir = statSync(packagePath).isDirectory();
  } catch (e) {
    if (fileError(e, packagePath).code !== 'FILE_NOT_FOUND') throw fileError(e, packagePath, 'package');
  }
  if (!isDir) throw new ModernBertError('FILE_NOT_FOUND', `no .mlpackage folder at ${packagePath}`, { path: packagePath });
  const manifest = readManifest(packagePath);
  // Own entries only: a root identifier such as "constructor" must not find Object.prototype's.
  const root = Object.hasOwn(manifest.itemInfoEntries, manifest.rootModelIdentifier) ? manifest.itemInfoEntries[manifest.rootModelIdentifier] : undefined;
  if (!root) {
    throw new ModernBertError('CORRUPT_FILE', `Manifest.json names root model ${JSON.stringify(manifest.rootModelIdentifier.slice(0, 80))}, which is not among its items`, {
      path: packagePath,
    });
  }
  const modelFile = itemPath(packagePath, root);
  if (!existsSync(modelFile)) {
    throw new ModernBertError('FILE_NOT_FOUND', `the root model ${root.path} named by Manifest.json is missing`, { path: modelFile });
  }
  // The program names its weights relative to the model file (@model_path/weights/...).
  return { modelFile, weightsDir: join(dirname(modelFile), 'weights') };
}
