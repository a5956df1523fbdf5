// Mutations: byte-level ones for any file (bit flips, interesting bytes and integers, truncation,
// extension, chunk duplication and removal) and structure-aware ones for JSON (a field set to an odd value,
// deleted, added under a prototype name, deeply nested, ...). Each returns a new value and a short
// description, which the fuzzer prints with a failing case.

import type { Rng } from './random.js';

/** A mutated file and what was done to it. */
export interface Mutated {
  bytes: Uint8Array;
  what: string;
}

const INTERESTING_BYTES = [
  0x00, 0x01, 0x7f, 0x80, 0xff, 0x20, 0x22, 0x2c, 0x2d, 0x30, 0x39, 0x5b, 0x5d, 0x7b, 0x7d, 0x5c,
];
const INTERESTING_INTS = [
  0n,
  1n,
  2n ** 7n,
  2n ** 8n,
  2n ** 15n,
  2n ** 16n,
  2n ** 31n - 1n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 40n,
  2n ** 53n,
  2n ** 63n,
  2n ** 64n - 1n,
];

/** One byte-level mutation of `input`; `focus` biases positions to the first bytes (a header). */
export function mutateBytes(rng: Rng, input: Uint8Array, focus = input.length): Mutated {
  const b = Uint8Array.from(input);
  const n = b.length;
  const pos = (): number => (n === 0 ? 0 : rng.chance(0.8) ? rng.int(Math.min(focus, n)) : rng.int(n));
  switch (rng.int(8)) {
    case 0: {
      const p = pos();
      const bits = 1 + rng.int(3);
      for (let i = 0; i < bits; i++) if (n > 0) b[Math.min(n - 1, p + rng.int(4))]! ^= 1 << rng.int(8);
      return { bytes: b, what: `flip ${bits} bit(s) near ${p}` };
    }
    case 1: {
      const p = pos();
      const v = rng.pick(INTERESTING_BYTES);
      if (n > 0) b[Math.min(n - 1, p)] = v;
      return { bytes: b, what: `byte ${p} = 0x${v.toString(16)}` };
    }
    case 2: {
      const p = pos();
      const v = rng.pick(INTERESTING_INTS) + BigInt(rng.int(3) - 1);
      const width = rng.pick([4, 8]);
      const field = Buffer.alloc(8);
      field.writeBigUInt64LE(BigInt.asUintN(64, v));
      b.set(field.subarray(0, Math.min(width, Math.max(0, n - p))), Math.min(p, n));
      return { bytes: b, what: `u${width * 8} at ${p} = ${BigInt.asUintN(width * 8, v)}` };
    }
    case 3: {
      const p = pos();
      return { bytes: b.subarray(0, p), what: `truncate to ${p}` };
    }
    case 4: {
      const extra = new Uint8Array(1 + rng.int(64));
      if (rng.chance(0.5)) for (let i = 0; i < extra.length; i++) extra[i] = rng.int(256);
      return { bytes: concat(b, extra), what: `extend by ${extra.length}` };
    }
    case 5: {
      const p = pos();
      const len = 1 + rng.int(32);
      const chunk = b.slice(p, p + len);
      const at = pos();
      return {
        bytes: concat(b.subarray(0, at), chunk, b.subarray(at)),
        what: `duplicate ${chunk.length} bytes from ${p} at ${at}`,
      };
    }
    case 6: {
      const p = pos();
      const len = 1 + rng.int(32);
      return { bytes: concat(b.subarray(0, p), b.subarray(p + len)), what: `remove ${len} bytes at ${p}` };
    }
    default: {
      const p = pos();
      const v = rng.int(256);
      if (n > 0) b[Math.min(n - 1, p)] = v;
      return { bytes: b, what: `byte ${p} = ${v}` };
    }
  }
}

/** Concatenated byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

// Placeholder strings replaced in the serialized text (values JSON cannot hold, or that would be costly to build).
const DEEP = '\u0000DEEP\u0000';
const DEEPER = '\u0000DEEPER\u0000';
const NAN = '\u0000NAN\u0000';

/** Values a field is set to: huge, negative, fractional, NaN-like, prototype names, wrong types, deep. */
export const ODD_VALUES: readonly Json[] = [
  1e308,
  1e12,
  3e8,
  1e9,
  2 ** 40,
  2 ** 53 + 2,
  2 ** 31,
  -1,
  -0.5,
  0,
  0.5,
  1,
  2,
  3,
  7,
  1023,
  1024,
  65535,
  'NaN',
  'Infinity',
  '-Infinity',
  '',
  'x',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  '../../etc/passwd',
  '/dev/zero',
  null,
  true,
  false,
  [],
  {},
  [1, 2],
  { a: 1 },
  [[[[[]]]]],
  'a'.repeat(10_000),
  DEEP,
  DEEPER,
  NAN,
];
const ODD_KEYS = ['__proto__', 'constructor', 'toString', 'prototype', 'valueOf', '', '0', '-1', 'x'.repeat(300)];

/** One structure-aware mutation of a JSON document (text in, text out). */
export function mutateJsonText(rng: Rng, text: string): { text: string; what: string } {
  const doc = JSON.parse(text) as Json;
  const { doc: out, what } = mutateJson(rng, doc);
  let s = JSON.stringify(out, null, rng.chance(0.5) ? 2 : undefined) ?? 'null';
  s = s.replaceAll(JSON.stringify(DEEP), '['.repeat(200) + ']'.repeat(200));
  s = s.replaceAll(JSON.stringify(DEEPER), '['.repeat(10_000) + '1' + ']'.repeat(10_000));
  s = s.replaceAll(JSON.stringify(NAN), rng.pick(['NaN', 'Infinity', '1e999', '-1e999']));
  return { text: s, what };
}

/** Paths to every value of a document (capped), as lists of keys and indices. */
function paths(doc: Json, limit = 2000): (string | number)[][] {
  const out: (string | number)[][] = [[]];
  const walk = (v: Json, path: (string | number)[]): void => {
    if (out.length >= limit) return;
    if (Array.isArray(v)) {
      // Long arrays (vocabularies, merges): a few elements are enough.
      const idx = v.length <= 8 ? v.keys() : [0, 1, v.length - 1][Symbol.iterator]();
      for (const i of idx) {
        out.push([...path, i]);
        walk(v[i]!, [...path, i]);
      }
    } else if (v !== null && typeof v === 'object') {
      const keys = Object.keys(v);
      const sample = keys.length <= 64 ? keys : keys.filter((_, i) => i < 16 || i % Math.ceil(keys.length / 48) === 0);
      for (const k of sample) {
        out.push([...path, k]);
        walk(v[k]!, [...path, k]);
      }
    }
  };
  walk(doc, []);
  return out;
}

function getAt(doc: Json, path: (string | number)[]): Json {
  let v = doc;
  for (const k of path) v = (v as Record<string, Json>)[k as string]!;
  return v;
}

/** Sets an own property (plain assignment of "__proto__" would change the prototype instead). */
function setOwn(obj: object, key: string | number, value: Json): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** One mutation of a parsed JSON document (the input is not modified). */
export function mutateJson(rng: Rng, input: Json): { doc: Json; what: string } {
  const doc = structuredClone(input);
  const all = paths(doc);
  const path = rng.pick(all);
  const where = path.length === 0 ? '(root)' : path.join('.');
  if (path.length === 0) {
    if (doc !== null && typeof doc === 'object' && !Array.isArray(doc) && rng.chance(0.7)) {
      const key = rng.pick(ODD_KEYS);
      const value = rng.pick(ODD_VALUES);
      setOwn(doc, key, value);
      return { doc, what: `add key ${JSON.stringify(key.slice(0, 20))} = ${show(value)}` };
    }
    const value = rng.pick(ODD_VALUES);
    return { doc: value, what: `document = ${show(value)}` };
  }
  const parent = getAt(doc, path.slice(0, -1)) as Record<string, Json> | Json[];
  const key = path[path.length - 1]!;
  const current = (parent as Record<string, Json>)[key as string]!;
  switch (rng.int(7)) {
    case 0:
    case 1:
    case 2: {
      const value = rng.pick(ODD_VALUES);
      setOwn(parent, key, value);
      return { doc, what: `${where} = ${show(value)}` };
    }
    case 3: {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key as string];
      return { doc, what: `delete ${where}` };
    }
    case 4: {
      // Numbers nudged, strings renamed, containers emptied or doubled.
      let value: Json;
      if (typeof current === 'number')
        value = rng.pick([current + 1, current - 1, current * 2, -current, current * 1000, current + 0.5]);
      else if (typeof current === 'string')
        value = rng.pick([current + 'x', current.slice(1), current.toUpperCase(), '__proto__', 'constructor']);
      else if (Array.isArray(current)) value = rng.chance(0.5) ? [] : [...current, ...current];
      else if (current !== null && typeof current === 'object')
        value = rng.chance(0.5) ? {} : { ...current, __extra__: 1 };
      else value = rng.pick(ODD_VALUES);
      setOwn(parent, key, value);
      return { doc, what: `${where}: ${show(current)} -> ${show(value)}` };
    }
    case 5: {
      const other = rng.pick(all);
      if (other.length === 0 || other.slice(0, path.length).join('\u0001') === path.join('\u0001'))
        return { doc, what: 'no-op swap' };
      const b = getAt(doc, other);
      setOwn(parent, key, structuredClone(b));
      return { doc, what: `${where} = copy of ${other.join('.')}` };
    }
    default: {
      if (current !== null && typeof current === 'object' && !Array.isArray(current)) {
        const k = rng.pick(ODD_KEYS);
        setOwn(current, k, rng.pick(ODD_VALUES));
        return { doc, what: `${where}: add key ${JSON.stringify(k.slice(0, 20))}` };
      }
      setOwn(parent, key, [current]);
      return { doc, what: `${where} wrapped in a list` };
    }
  }
}

function show(v: Json): string {
  const s =
    typeof v === 'string' && v.startsWith('\u0000') ? v.replaceAll('\u0000', '') : (JSON.stringify(v) ?? 'undefined');
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}
