// Building checkpoint folders for tests: copies of the fixtures with an edited config, re-encoded or
// resharded weights, and raw safetensors bytes for corruption tests.

import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { writeSafetensors, type TensorToWrite } from '../../src/io/safetensors-writer.js';
import type { Tensor } from '../../src/io/weights.js';

export const FX = join(import.meta.dirname, '..', 'fixtures');
export const ROOT = join(import.meta.dirname, '..', '..');

export type Json = Record<string, unknown>;

const made: string[] = [];

/** A fresh temporary folder, removed by cleanupTempDirs. */
export function tempDir(prefix = 'mbane-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

/** Writes the smallest config `synth CONFIG.json` takes (one layer, 32 wide) into `dir`; returns its path. */
export function writeTinySynthConfig(dir: string): string {
  const p = join(dir, 'c.json');
  const config = {
    hidden_size: 32,
    num_attention_heads: 2,
    num_hidden_layers: 1,
    vocab_size: 64,
    intermediate_size: 16,
    pad_token_id: 0,
    cls_token_id: 1,
    sep_token_id: 2,
    bos_token_id: 1,
    eos_token_id: 2,
  };
  writeFileSync(p, JSON.stringify(config));
  return p;
}

/** Removes every folder tempDir made (call from afterAll). */
export function cleanupTempDirs(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** A fixture's config.json (or another JSON file in its folder). */
export function readFixtureJson(name: string, file = 'config.json'): Json {
  return JSON.parse(readFileSync(join(FX, name, file), 'utf8')) as Json;
}

/** Every tensor of a safetensors file as float32, in file order. */
export function readTensors(path: string): Map<string, Tensor> {
  const f = SafetensorsFile.open(path);
  try {
    const out = new Map<string, Tensor>();
    for (const [name, info] of f.tensors)
      out.set(name, { shape: [...info.shape], data: Float32Array.from(f.readFloat32(name)) });
    return out;
  } finally {
    f.close();
  }
}

/** float32 -> bfloat16 bits, round to nearest even. */
export function toBF16Bits(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Round half to even. */
function rint(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** A number -> float16 bits, round to nearest even (written independently of src/numeric/fp16.ts). */
export function toF16Bits(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (Number.isNaN(x)) return 0x7e00;
  if (a >= 65520) return sign | 0x7c00; // rounds past the largest finite value (65504)
  if (a < 2 ** -14) return sign | rint(a / 2 ** -24); // subnormal; 1024 rounds into the smallest normal
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  let mant = rint((a / 2 ** e - 1) * 1024);
  if (mant === 1024) {
    mant = 0;
    e += 1;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | mant;
}

/** float16 bits -> number (independent of src). */
export function fromF16Bits(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

export type StoreDType = 'F32' | 'F16' | 'BF16';

/** Tensors as writer entries in one dtype. */
export function toWrite(tensors: Map<string, Tensor>, dtype: StoreDType = 'F32'): TensorToWrite[] {
  return [...tensors].map(([name, t]): TensorToWrite => {
    if (dtype === 'F32') return { name, dtype, shape: t.shape, data: () => Float32Array.from(t.data) };
    const conv = dtype === 'F16' ? toF16Bits : toBF16Bits;
    return { name, dtype, shape: t.shape, data: () => Uint16Array.from(t.data, conv) };
  });
}

export interface CheckpointSpec {
  config: Json;
  tensors: Map<string, Tensor>;
  dtype?: StoreDType;
  /** Split the tensors into this many shards with model.safetensors.index.json. */
  shards?: number;
  /** Copy tokenizer.json and tokenizer_config.json from this folder. */
  tokenizerFrom?: string;
}

/** Writes a Hugging Face folder: config.json, model.safetensors (or shards + index), tokenizer files. */
export async function writeCheckpoint(dir: string, spec: CheckpointSpec): Promise<string> {
  writeFileSync(join(dir, 'config.json'), JSON.stringify(spec.config, null, 2));
  const all = toWrite(spec.tensors, spec.dtype);
  const shards = spec.shards ?? 1;
  if (shards === 1) {
    await writeSafetensors(join(dir, 'model.safetensors'), all, { metadata: { format: 'pt' } });
  } else {
    const per = Math.ceil(all.length / shards);
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = all.slice(s * per, (s + 1) * per);
      await writeSafetensors(join(dir, file), part, { metadata: { format: 'pt' } });
      for (const t of part) weightMap[t.name] = file;
    }
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2),
    );
  }
  if (spec.tokenizerFrom) {
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
      if (existsSync(join(spec.tokenizerFrom, f))) copyFileSync(join(spec.tokenizerFrom, f), join(dir, f));
    }
  }
  return dir;
}

/**
 * A copy of a fixture folder with `edit` applied to its config (the weights and tokenizer copied as they
 * are); returns the folder.
 */
export function copyFixture(name: string, edit: (c: Json) => Json = (c) => c, configFile = 'config.json'): string {
  const dir = tempDir(`mbane-${name}-`);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(edit(readFixtureJson(name, configFile)), null, 2));
  for (const f of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
    copyFileSync(join(FX, name, f), join(dir, f));
  return dir;
}

/**
 * Raw safetensors bytes: an 8-byte little-endian header length (given, or the header's real length), the
 * header (a JSON value or a literal string) and the data.
 */
export function rawSafetensors(header: unknown, data: Uint8Array = new Uint8Array(0), headerLen?: number): Buffer {
  const text = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerLen ?? text.length));
  return Buffer.concat([len, text, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}
