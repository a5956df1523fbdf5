// The fuzzer's cases for what a user names on the command line rather than what a model folder holds:
// batch inputs (embed / predict --input: text and JSONL files, mutated, cut, swapped for FIFOs or devices),
// head names (--add-head NAME=DIR) and output targets (every kind of existing path, forced or not). An
// accepted batch input must give every text a result, finite (runTokenized refuses NaN and infinity); an accepted head name must survive as a
// metadata key and a file name; and whatever an output target is, nothing that was there may change kind or
// content unless it was a regular file replaced with --force.

import { execFileSync } from 'node:child_process';
import {
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { checkHeadName, headPackagePath, parseAddHead } from '../../dist/convert/heads.js';
import { checkPackageOutput } from '../../dist/coreml/package.js';
import { checkFileOutput, writeOutput } from '../../dist/io/output.js';
import { readBatchInput } from '../../dist/tasks/batch-input.js';
import { openTaskModel, runTask, type TaskModel } from '../../dist/tasks/pipeline.js';
import { mutateBytes, mutateJsonText } from './mutate.js';
import type { Rng } from './random.js';

export const USER_FILE_READERS = ['batch-input', 'head-name', 'output'] as const;
export type UserFileReader = (typeof USER_FILE_READERS)[number];

/** What a case did, for the report of a failing case (readers.ts CaseLog). */
interface Log {
  what: string[];
  ready?: (what: string) => void;
}

/** The seeds of a batch input: plain lines and JSONL, from the sentences a user would embed. */
export function batchSeeds(sentences: readonly string[]): { plain: string; jsonl: string } {
  return {
    plain: `${sentences.join('\n')}\n`,
    jsonl: `${sentences.map((text, i) => JSON.stringify({ id: i, text })).join('\n')}\n`,
  };
}

let model: Promise<TaskModel> | undefined;

/** Runs one case of a user-file reader in `dir` (a fresh, empty folder); `checkpoint` is tiny-mlm's folder. */
export async function runUserFileCase(
  reader: UserFileReader,
  seeds: { plain: string; jsonl: string; checkpoint: string },
  rng: Rng,
  dir: string,
  log: Log,
): Promise<void> {
  switch (reader) {
    case 'batch-input':
      return batchInputCase(seeds, rng, dir, log);
    case 'head-name':
      return headNameCase(rng, dir, log);
    case 'output':
      return outputCase(rng, dir, log);
  }
}

/** Lines a careless user's file may hold. */
const ODD_LINES = [
  '',
  '{',
  '{}',
  '{"text": 5}',
  '{"text": null}',
  '{"text": ""}',
  '[MASK]',
  '\u0000\u0001\u0002',
  '\ufeffa BOM',
  'é\u0301 combining',
  '🚀'.repeat(200),
  '\r',
  '{"text": "ok", "text": 7}',
  '"just a string"',
  '[1, 2, 3]',
  '{"__proto__": {"text": "x"}}',
  '{"text": "a\\u0000b"}',
];

async function batchInputCase(
  seeds: { plain: string; jsonl: string; checkpoint: string },
  rng: Rng,
  dir: string,
  log: Log,
): Promise<void> {
  const jsonl = rng.chance(0.5);
  const path = join(dir, jsonl && rng.chance(0.5) ? 'texts.jsonl' : 'texts.txt');
  let lines = (jsonl ? seeds.jsonl : seeds.plain).split('\n');
  let bytes: Uint8Array | undefined;
  const rounds = 1 + rng.int(3);
  for (let r = 0; r < rounds; r++) {
    const k = rng.int(6);
    const at = rng.int(lines.length);
    if (k === 0) {
      // A very long line: one word, or words, or whitespace (--truncate cuts it before tokenizing).
      const unit = rng.pick(['中', 'a', ' ', 'word ', 'é', '!', '\t']);
      const n = rng.pick([600, 5_000, 100_000, 1_000_000]);
      const long = unit.repeat(Math.ceil(n / unit.length));
      lines.splice(at, 0, jsonl && rng.chance(0.7) ? JSON.stringify({ text: long }) : long);
      log.what.push(`line ${at + 1}: ${n} x ${JSON.stringify(unit)}`);
    } else if (k === 1) {
      const odd = rng.pick(ODD_LINES);
      lines.splice(at, 0, odd);
      log.what.push(`line ${at + 1} = ${JSON.stringify(odd).slice(0, 40)}`);
    } else if (k === 2 && jsonl && (lines[at] ?? '').trim() !== '') {
      try {
        const m = mutateJsonText(rng, lines[at]!);
        lines[at] = m.text.replace(/\n/g, ' ');
        log.what.push(`line ${at + 1}: ${m.what}`);
      } catch {
        log.what.push(`line ${at + 1}: not JSON, kept`);
      }
    } else if (k === 3) {
      lines = rng.chance(0.5) ? lines.slice(0, at) : lines.slice(at);
      log.what.push(`kept ${lines.length} lines`);
    } else {
      const m = mutateBytes(rng, Buffer.from(lines.join(rng.chance(0.2) ? '\r\n' : '\n'), 'utf8'));
      bytes = m.bytes;
      log.what.push(m.what);
      break;
    }
  }
  writeFileSync(path, bytes ?? lines.join('\n'));
  if (rng.chance(0.01)) swapKind(rng, path, log);
  const task = rng.chance(0.7) ? ('feature-extraction' as const) : ('fill-mask' as const);
  const batch = { window: rng.pick([16, 64, 512]), pack: rng.pick([1, 4, 64]), truncate: rng.chance(0.5) };
  log.what.push(`${task}, window ${batch.window}, pack ${batch.pack}${batch.truncate ? ', truncate' : ''}`);
  log.ready?.(log.what.join('; '));
  const inputs = readBatchInput(path);
  model ??= openTaskModel(seeds.checkpoint, undefined);
  const tm = await model;
  const label = (i: number) => `line ${inputs[i]!.line}`;
  const texts = inputs.map((t) => t.text);
  const { results } =
    task === 'fill-mask'
      ? await runTask(tm, task, texts, { top_k: 3 }, { ...batch, label })
      : await runTask(tm, task, texts, {}, { ...batch, label });
  if (results.length !== inputs.length || results.some((r) => r === undefined))
    throw new Error(`accepted, but ${results.length} results for ${inputs.length} texts`);
}

/** Replaces `path` with something that is not a regular file (the batch input's FIFO waits DEVICE_WAIT_SECONDS). */
function swapKind(rng: Rng, path: string, log: Log): void {
  const kind = rng.pick(['folder', 'fifo', 'loop', 'dangling', 'dev-zero', 'dev-null', 'empty']);
  execFileSync('rm', ['-f', path]);
  if (kind === 'folder') mkdirSync(path);
  else if (kind === 'fifo') execFileSync('mkfifo', [path]);
  else if (kind === 'loop') symlinkSync(path, path);
  else if (kind === 'dangling') symlinkSync(`${path}.missing`, path);
  else if (kind === 'dev-zero') symlinkSync('/dev/zero', path);
  else if (kind === 'dev-null') symlinkSync('/dev/null', path);
  else writeFileSync(path, '');
  log.what.push(`input -> ${kind}`);
}

const NAME_SEEDS = [
  'mlm',
  'embedding',
  'seqcls',
  'head_1',
  '_x',
  '__proto__',
  'constructor',
  'toString',
  'valueOf',
  'hasOwnProperty',
  'prototype',
  '__defineGetter__',
  'isPrototypeOf',
  'main',
  'A',
];
const NAME_CHARS = ['-', '.', '/', '\\', '=', ' ', '\n', '\u0000', 'é', '🚀', '$', '0', '9', '_', 'Z', '..', '%2F'];

function headNameCase(rng: Rng, dir: string, log: Log): void {
  let name = rng.pick(NAME_SEEDS);
  const edits = rng.int(4);
  for (let e = 0; e < edits; e++) {
    const at = rng.int(name.length + 1);
    const k = rng.int(4);
    if (k === 0) name = name.slice(0, at) + rng.pick(NAME_CHARS) + name.slice(at);
    else if (k === 1) name = name.slice(0, at) + name.slice(at + 1);
    else if (k === 2) name = name.repeat(1 + rng.int(40));
    else name = rng.pick(NAME_SEEDS) + name;
  }
  const spec = rng.chance(0.8) ? `${name}=${dir}` : name;
  log.what.push(`--add-head ${JSON.stringify(spec.slice(0, 80))}`);
  log.ready?.(log.what.join('; '));
  const parsed = parseAddHead(spec);
  if (parsed.name === undefined) return;
  checkHeadName(parsed.name);
  // Accepted: a key of the functions metadata that survives JSON, and a head package beside the body.
  const info = Object.create(null) as Record<string, unknown>;
  info[parsed.name] = { head: 'mlm' };
  const back = JSON.parse(JSON.stringify(info)) as Record<string, unknown>;
  if (!Object.hasOwn(back, parsed.name) || Object.keys(back).length !== 1)
    throw new Error(`accepted head name ${JSON.stringify(parsed.name)} does not survive as a metadata key`);
  const body = join(dir, 'out.mlpackage');
  if (dirname(headPackagePath(body, parsed.name)) !== dir)
    throw new Error(`accepted head name ${JSON.stringify(parsed.name)} puts its package outside the body's folder`);
}

/** What is at a path, for comparing before and after: its kind, and a file's bytes, a link's target or a folder's entries. */
function snapshot(path: string): string {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (!st) return 'none';
  if (st.isSymbolicLink()) return `link ${readlinkSync(path)}`;
  if (st.isFile()) return `file ${readFileSync(path).toString('base64')}`;
  if (st.isDirectory()) return `folder ${readdirSync(path).sort().join('/')}`;
  return st.isFIFO() ? 'fifo' : 'other';
}

const TARGETS = [
  'new',
  'file',
  'folder',
  'manifest-folder',
  'package-like',
  'link-file',
  'link-folder',
  'link-input',
  'dangling',
  'loop',
  'fifo',
  'dev-null',
  'input',
  'in-model',
  'model',
  'dotdot-input',
  'hardlink-input',
  'empty',
  'long',
  'proc',
  'under-file',
  'trailing-slash',
] as const;

function outputCase(rng: Rng, dir: string, log: Log): void {
  const input = join(dir, 'input.txt');
  writeFileSync(input, 'the input\n');
  const model = join(dir, 'model');
  mkdirSync(model);
  writeFileSync(join(model, 'config.json'), '{"model": true}');
  const file = join(dir, 'existing.txt');
  writeFileSync(file, 'existing\n');
  const folder = join(dir, 'folder');
  mkdirSync(folder);
  writeFileSync(join(folder, 'mine.txt'), 'mine');
  const kind = rng.pick(TARGETS);
  let out = join(dir, 'out');
  switch (kind) {
    case 'new':
      break;
    case 'file':
      out = file;
      break;
    case 'folder':
      out = folder;
      break;
    case 'manifest-folder':
      mkdirSync(join(folder, 'Manifest.json'));
      out = folder;
      break;
    case 'package-like':
      writeFileSync(
        join(folder, 'Manifest.json'),
        rng.pick(['{}', 'text', '{"fileFormatVersion": "1.0.0", "rootModelIdentifier": "X", "itemInfoEntries": {}}']),
      );
      out = folder;
      break;
    case 'link-file':
      symlinkSync(file, out);
      break;
    case 'link-folder':
      symlinkSync(folder, out);
      break;
    case 'link-input':
      symlinkSync(input, out);
      break;
    case 'dangling':
      symlinkSync(join(dir, 'nowhere'), out);
      break;
    case 'loop':
      symlinkSync(out, out);
      break;
    case 'fifo':
      execFileSync('mkfifo', [out]);
      break;
    case 'dev-null':
      symlinkSync('/dev/null', out);
      break;
    case 'input':
      out = input;
      break;
    case 'in-model':
      out = join(model, 'config.json');
      break;
    case 'model':
      out = model;
      break;
    case 'dotdot-input':
      out = join(model, '..', 'input.txt');
      break;
    case 'hardlink-input':
      linkSync(input, out);
      break;
    case 'empty':
      out = '';
      break;
    case 'long':
      out = join(dir, 'x'.repeat(300));
      break;
    case 'proc':
      out = '/proc/modernbert-ane-nowhere/out';
      break;
    case 'under-file':
      out = join(file, 'out');
      break;
    case 'trailing-slash':
      out = `${join(dir, 'out')}/`;
      break;
  }
  const force = rng.chance(0.5);
  const asFolder = rng.chance(0.3);
  log.what.push(`${asFolder ? 'package' : 'file'} output at ${kind}${force ? ', --force' : ''}`);
  log.ready?.(log.what.join('; '));
  const watched = [input, join(model, 'config.json'), model, file, folder, join(dir, 'out')];
  const before = new Map(watched.map((p) => [p, snapshot(p)]));
  try {
    if (asFolder) {
      checkPackageOutput(out, force, [model, input]);
      if (before.get(out) !== undefined && before.get(out) !== 'none' && !force)
        throw new Error(`accepted an existing ${kind} as a package output without --force`);
    } else {
      const checked = checkFileOutput(out, { what: '--out', force, inputs: [model, input] });
      // A FIFO is written in place, which waits for a reader: checked, not written.
      if (kind !== 'fifo') writeOutput(checked, 'written by the fuzzer\n');
    }
  } finally {
    for (const [p, was] of before) {
      const now = snapshot(p);
      if (now === was) continue;
      // The only change allowed: a regular file at the target, replaced with --force, or a new file where nothing was.
      const replacedFile =
        !asFolder &&
        (was.startsWith('file ') || was === 'none') &&
        now.startsWith('file ') &&
        (force || was === 'none') &&
        p !== input &&
        p !== join(model, 'config.json');
      if (!replacedFile) throw new Error(`${kind}: ${p} changed from ${was.slice(0, 60)} to ${now.slice(0, 60)}`);
    }
  }
}
