// The .mlpackage folder, as coremltools' modelpackage/src/ModelPackage.cpp lays it out:
//   Manifest.json                      {fileFormatVersion "1.0.0", itemInfoEntries {UUID: {author, description,
//                                       name, path}}, rootModelIdentifier: UUID of the model.mlmodel item}
//   Data/com.apple.CoreML/model.mlmodel
//   Data/com.apple.CoreML/weights/     (weight.bin)
// Item paths are relative to Data/. Writing is atomic: everything is built in a temporary sibling folder
// that is renamed into place at the end, and removed on any failure, process exit or interrupting signal.

import { randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, lstatSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { ModernBertError } from '../errors.js';
import { fsError, makeFolders } from '../io/fs-errors.js';
import { fileError, readJsonFile } from '../io/files.js';
import { READ_LIMITS } from '../io/limits.js';
import { checkFolderOutput, within } from '../io/output.js';
import { clearStaleSiblings, dropTemp, removeQuietly, tempSibling } from '../io/temp-files.js';

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
    [modelId]: {
      author: COREML_AUTHOR,
      description: 'CoreML Model Specification',
      name: 'model.mlmodel',
      path: MODEL_ITEM_PATH,
    },
    [weightsId]: {
      author: COREML_AUTHOR,
      description: 'CoreML Model Weights',
      name: 'weights',
      path: WEIGHTS_ITEM_PATH,
    },
  };
  for (const x of extras)
    entries[randomUUID().toUpperCase()] = { author: x.author, description: x.description, name: x.name, path: x.path };
  return { fileFormatVersion: FILE_FORMAT_VERSION, itemInfoEntries: entries, rootModelIdentifier: modelId };
}

/** Manifest.json text: two-space indented JSON without a trailing newline, as in packages coremltools writes. */
function manifestText(manifest: Manifest): string {
  return JSON.stringify(manifest, null, 2);
}

/**
 * Checks that a package may be written at `outPath`, before any work (io/output.ts checkFolderOutput: the
 * folder takes it, nothing of `protect`, the inputs, is written over, an existing path needs `force`), after
 * clearing what a killed earlier conversion to it left. Only a package that isPackage recognises is
 * replaced. Returns the absolute (real) path.
 */
export function checkPackageOutput(
  outPath: string,
  force: boolean,
  protect: readonly (string | undefined)[] = [],
): string {
  if (outPath.trim() !== '') clearStaleSiblings(resolve(outPath));
  return checkFolderOutput(outPath, {
    what: '--out',
    force,
    inputs: protect,
    irreplaceable: (real, st) =>
      st.isDirectory() && isPackage(real)
        ? undefined
        : 'is not a Core ML package (a folder whose Manifest.json names its model)',
  }).target;
}

/**
 * Whether `dir` is a package we may replace: its Manifest.json is a regular file that parses as a package
 * manifest and names a root model that exists. A folder that merely holds an entry of that name is not.
 */
function isPackage(dir: string): boolean {
  try {
    locatePackage(dir);
    return true;
  } catch {
    return false;
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
  const tmp = tempSibling(target);
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
    dropTemp(tmp);
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
  if (!lstatSync(target, { throwIfNoEntry: false })) {
    renameSync(tmp, target);
    return;
  }
  if (!force)
    throw new ModernBertError('OUTPUT_EXISTS', `${target} appeared while it was being written`, { path: target });
  // What is there now must still be a package: a folder of the user's swapped in meanwhile is not ours to move.
  if (!isPackage(target))
    throw new ModernBertError(
      'BAD_ARGUMENT',
      `${target} changed while it was being written and is not a Core ML package now; nothing was changed`,
      { path: target },
    );
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
    throw new ModernBertError('FILE_NOT_FOUND', `${packagePath} is not an .mlpackage: it has no Manifest.json`, {
      path: packagePath,
    });
  }
  const json = readJsonFile(file, 'Manifest.json', READ_LIMITS.manifest);
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
    throw new ModernBertError(
      'CORRUPT_FILE',
      `${file} lacks fileFormatVersion, rootModelIdentifier or well-formed itemInfoEntries`,
      {
        file,
      },
    );
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
    throw new ModernBertError(
      'CORRUPT_FILE',
      `Manifest.json item "${item.name}" points outside the package: ${item.path}`,
      {
        path: packagePath,
        item: item.path,
      },
    );
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
  if (!isDir)
    throw new ModernBertError('FILE_NOT_FOUND', `no .mlpackage folder at ${packagePath}`, { path: packagePath });
  const manifest = readManifest(packagePath);
  // Own entries only: a root identifier such as "constructor" must not find Object.prototype's.
  const root = Object.hasOwn(manifest.itemInfoEntries, manifest.rootModelIdentifier)
    ? manifest.itemInfoEntries[manifest.rootModelIdentifier]
    : undefined;
  if (!root) {
    throw new ModernBertError(
      'CORRUPT_FILE',
      `Manifest.json names root model ${JSON.stringify(manifest.rootModelIdentifier.slice(0, 80))}, which is not among its items`,
      {
        path: packagePath,
      },
    );
  }
  const modelFile = itemPath(packagePath, root);
  if (!existsSync(modelFile)) {
    throw new ModernBertError('FILE_NOT_FOUND', `the root model ${root.path} named by Manifest.json is missing`, {
      path: modelFile,
    });
  }
  // The program names its weights relative to the model file (@model_path/weights/...).
  return { modelFile, weightsDir: join(dirname(modelFile), 'weights') };
}
