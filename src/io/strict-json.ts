// A JSON parser as strict as serde_json, for headers whose validity must match the Rust libraries
// exactly (safetensors): JSON.parse keeps the last of duplicate keys, cannot tell `1.0` from `1`,
// accepts lone surrogates and nests without bound. Objects come back as Maps (no prototype names),
// numbers written without fraction or exponent as numbers, other numbers as FloatLiteral.

/** A number written with a fraction or an exponent (serde refuses it where an integer is expected). */
export class FloatLiteral {
  constructor(readonly value: number) {}
}

export type StrictJson = null | boolean | number | FloatLiteral | string | StrictJson[] | Map<string, StrictJson>;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** serde_json's default recursion limit. */
const MAX_DEPTH = 128;

/** Thrown with a message saying what is wrong and where; callers wrap it with the file name. */
export class StrictJsonError extends Error {}

/** Parses `text` as one JSON value (whitespace around it allowed), refusing duplicate keys and deep nesting. */
export function parseStrictJson(text: string): StrictJson {
  let i = 0;
  const fail = (msg: string): never => {
    throw new StrictJsonError(`${msg} at character ${i}`);
  };
  const ws = (): void => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      i++;
    }
  };
  const str = (): string => {
    const start = i++;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      i += c === 0x5c ? 2 : 1;
    }
    i++;
    let s: string;
    try {
      s = JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail('invalid string');
    }
    // serde_json refuses escapes that leave a lone surrogate.
    if (LONE_SURROGATE.test(s)) fail('lone surrogate in string');
    return s;
  };
  const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
  const num = (): number | FloatLiteral => {
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail('invalid number');
    i += m[0].length;
    const v = Number(m[0]);
    return m[1] !== undefined || m[2] !== undefined ? new FloatLiteral(v) : v;
  };
  const word = (w: string, v: StrictJson): StrictJson => {
    if (!text.startsWith(w, i)) fail('invalid literal');
    i += w.length;
    return v;
  };
  const value = (depth: number): StrictJson => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      if (depth >= MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
      i++;
      ws();
      const close = c === '{' ? '}' : ']';
      const map = new Map<string, StrictJson>();
      const list: StrictJson[] = [];
      if (text[i] === close) {
        i++;
        return c === '{' ? map : list;
      }
      for (;;) {
        if (c === '{') {
          ws();
          if (text[i] !== '"') fail('expected a key');
          const key = str();
          if (map.has(key)) fail(`duplicate key ${JSON.stringify(key.slice(0, 40))}`);
          ws();
          if (text[i] !== ':') fail('expected ":"');
          i++;
          map.set(key, value(depth + 1));
        } else {
          list.push(value(depth + 1));
        }
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === close) {
          i++;
          return c === '{' ? map : list;
        }
        fail(`expected "," or "${close}"`);
      }
    }
    if (c === '"') return str();
    if (c === 't') return word('true', true);
    if (c === 'f') return word('false', false);
    if (c === 'n') return word('null', null);
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return num();
    return fail(c === undefined ? 'unexpected end' : 'unexpected character');
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}
