// The Core ML helper's protocol (helper.swift's header says it in full): newline-delimited JSON, one request and
// one reply per line, arrays as base64 of their little-endian elements. This module turns our tensors into wire
// arrays and back, and checks each reply's shape before anything reads it.

import { ModernBertError } from '../../errors.js';
import type { DType } from '../../ir/graph.js';
import { brief } from '../../io/files.js';
import { decodeF16, encodeF16 } from '../../numeric/fp16.js';
import type { RtTensor } from '../../runtime/tensor.js';

/** The protocol version this client speaks (the helper's hello says which it speaks). */
export const PROTOCOL_VERSION = 1;

/** Element types on the wire. */
export type WireDType = 'int32' | 'float16' | 'float32' | 'float64';

/** An array on the wire. */
export interface WireArray {
  dtype: WireDType;
  shape: number[];
  /** base64 of the elements, little-endian, row-major. */
  data: string;
}

const BYTES: Record<WireDType, number> = { int32: 4, float16: 2, float32: 4, float64: 8 };

/** The wire dtype that carries one of our graph dtypes (Core ML's model inputs are int32, float16 or float32). */
export function wireDType(dtype: DType): WireDType {
  switch (dtype) {
    case 'int32':
      return 'int32';
    case 'fp16':
      return 'float16';
    case 'fp32':
      return 'float32';
    default:
      throw new ModernBertError(
        'UNSUPPORTED',
        `Core ML multi-array features are int32, float16 or float32; this one is ${dtype}`,
        { dtype },
      );
  }
}

/** A tensor's values as a wire array of `dtype` (floats rounded to float16 when the wire says so). */
export function encodeArray(t: Pick<RtTensor, 'shape' | 'data'>, dtype: WireDType): WireArray {
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n)
    throw new ModernBertError('INTERNAL', `a tensor of shape [${t.shape.join(', ')}] holds ${t.data.length} values`);
  let bytes: Uint8Array;
  if (dtype === 'int32') {
    const a = Int32Array.from(t.data as ArrayLike<number>);
    for (let i = 0; i < n; i++)
      if (a[i] !== t.data[i])
        throw new ModernBertError('BAD_INPUT', `value ${t.data[i]} at element ${i} is not an int32`, { index: i });
    bytes = new Uint8Array(a.buffer);
  } else if (dtype === 'float16') {
    bytes = new Uint8Array(encodeF16(Float32Array.from(t.data as ArrayLike<number>)).buffer);
  } else if (dtype === 'float32') {
    bytes = new Uint8Array(Float32Array.from(t.data as ArrayLike<number>).buffer);
  } else {
    bytes = new Uint8Array(Float64Array.from(t.data as ArrayLike<number>).buffer);
  }
  return {
    dtype,
    shape: [...t.shape],
    data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
  };
}

/** A wire array's values: int32 as Int32Array, floats of any width as Float32Array (as our runtime holds them). */
export function decodeArray(
  w: unknown,
  what: string,
): { dtype: WireDType; shape: number[]; data: Float32Array | Int32Array } {
  const a = w as Partial<WireArray> | null;
  if (
    typeof a !== 'object' ||
    a === null ||
    typeof a.dtype !== 'string' ||
    !(a.dtype in BYTES) ||
    !Array.isArray(a.shape) ||
    typeof a.data !== 'string'
  ) {
    throw protocolError(`${what} is not an array ({dtype, shape, data}): ${brief(w)}`);
  }
  if (!a.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    throw protocolError(`${what} has shape ${brief(a.shape)}`);
  const n = a.shape.reduce((x: number, y: number) => x * y, 1);
  const buf = Buffer.from(a.data, 'base64');
  const size = BYTES[a.dtype];
  if (buf.length !== n * size)
    throw protocolError(`${what}: ${buf.length} bytes do not hold shape [${a.shape.join(', ')}] of ${a.dtype}`);
  // A fresh, aligned copy: base64 decoding may hand back a slice of a shared pool at any offset.
  const bytes = new Uint8Array(buf.length);
  bytes.set(buf);
  let data: Float32Array | Int32Array;
  if (a.dtype === 'int32') data = new Int32Array(bytes.buffer);
  else if (a.dtype === 'float16') data = decodeF16(new Uint16Array(bytes.buffer));
  else if (a.dtype === 'float32') data = new Float32Array(bytes.buffer);
  else data = Float32Array.from(new Float64Array(bytes.buffer));
  return { dtype: a.dtype, shape: a.shape, data };
}

/** A reply that breaks the protocol: a bug of the helper's (or of a program named in its place), exit 3. */
export function protocolError(message: string): ModernBertError {
  return new ModernBertError('INTERNAL', `the Core ML helper broke its protocol: ${message}`);
}

/** What hello answers. */
export interface Hello {
  protocol: number;
  /** The OS, as a person reads it ("Version 14.5 (Build 23F79)"). */
  os: string;
  /** [major, minor, patch]. */
  os_version: [number, number, number];
}

/** What compile answers: whether it compiled now (else the cache held it) and how long that took. */
export interface CompileReply {
  compiled_now: boolean;
  compile_ms?: number;
}

/** What load answers. */
export interface LoadReply {
  model: number;
  load_ms: number;
}

/** What predict answers. */
export interface PredictReply {
  outputs: Record<string, unknown>;
  predict_ms: number;
}

/** One op of MLComputePlan, as plan answers it. */
export interface PlanOp {
  index: number;
  type: string;
  outputs: string[];
  /** 'ane', 'gpu' or 'cpu'; absent when Core ML gives the op no device usage. */
  preferred?: string;
  supported?: string[];
  /** Core ML's estimated share of the model's work; absent when it gives none. */
  cost?: number;
}

/** What plan answers. */
export interface PlanReply {
  function: string;
  ops: PlanOp[];
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Checks a reply to `op` field by field (a reply is read only after this). */
export function checkReply(op: string, r: Record<string, unknown>): void {
  const bad = (field: string) => {
    throw protocolError(`its reply to ${op} has ${field} = ${brief(r[field])}`);
  };
  switch (op) {
    case 'hello':
      if (!isNum(r.protocol)) bad('protocol');
      if (typeof r.os !== 'string') bad('os');
      if (!Array.isArray(r.os_version) || r.os_version.length !== 3 || !r.os_version.every(isNum)) bad('os_version');
      return;
    case 'compile':
      if (typeof r.compiled_now !== 'boolean') bad('compiled_now');
      if (r.compiled_now && !isNum(r.compile_ms)) bad('compile_ms');
      return;
    case 'load':
      if (!Number.isSafeInteger(r.model)) bad('model');
      if (!isNum(r.load_ms)) bad('load_ms');
      return;
    case 'predict':
      if (typeof r.outputs !== 'object' || r.outputs === null || Array.isArray(r.outputs)) bad('outputs');
      if (!isNum(r.predict_ms)) bad('predict_ms');
      return;
    case 'plan': {
      if (typeof r.function !== 'string') bad('function');
      if (!Array.isArray(r.ops)) bad('ops');
      for (const o of r.ops as Record<string, unknown>[]) {
        const ok =
          typeof o === 'object' &&
          o !== null &&
          Number.isSafeInteger(o.index) &&
          typeof o.type === 'string' &&
          Array.isArray(o.outputs) &&
          o.outputs.every((x) => typeof x === 'string') &&
          (o.preferred === undefined || typeof o.preferred === 'string') &&
          (o.supported === undefined ||
            (Array.isArray(o.supported) && o.supported.every((x) => typeof x === 'string'))) &&
          (o.cost === undefined || isNum(o.cost));
        if (!ok) throw protocolError(`its reply to plan has an op ${brief(o)}`);
      }
      return;
    }
    default:
      return;
  }
}
