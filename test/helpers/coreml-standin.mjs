#!/usr/bin/env node
// FOR TESTS ONLY: a stand-in for the Core ML helper (src/run/coreml/helper.swift), which cannot run off macOS.
// It speaks the same newline-delimited JSON protocol, with our own engine in place of Core ML: "compile" writes
// a folder that names the package, "load" reads the package, "predict" runs its program in our interpreter at
// fp16, "plan" places every op on the Neural Engine except gathers (made up, for the CLI's bookkeeping only).
// Arrays are encoded and decoded here with Buffer, independently of the CLI's protocol.ts.
// Run it from a built tree (npm run build): it imports dist/.
//
//   node test/helpers/coreml-standin.mjs [--misbehave KIND] [--os 14.3.0]
//   KIND: die-at-start, die-on-load, die-on-predict, hang-on-predict, garbage-on-predict, wrong-id, bad-reply,
//         stray-line (prints a non-reply line before its first reply)

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const dist = new URL('../../dist/', import.meta.url);
const { readMLPackage } = await import(new URL('coreml/mil-read.js', dist).href);
const { Interpreter } = await import(new URL('graph/interpreter.js', dist).href);
const { shutdownRuntime } = await import(new URL('runtime/shutdown.js', dist).href);

const { values: args } = parseArgs({
  options: { misbehave: { type: 'string', default: 'none' }, os: { type: 'string', default: '15.0.0' } },
});
const misbehave = args.misbehave;
if (misbehave === 'die-at-start') process.exit(7);

// --- arrays, little-endian, independently of the CLI's encoder ---
const SIZE = { int32: 4, float16: 2, float32: 4, float64: 8 };
const WIRE = { int32: 'int32', fp16: 'float16', fp32: 'float32' };

function f16ToF32(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function f32ToF16(x) {
  // Round to nearest even through the float16 grid: scale so the grid step is 1, round half to even.
  if (Number.isNaN(x)) return 0x7e00;
  const s = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return s | 0x7c00;
  const e = Math.max(-14, Math.floor(Math.log2(a || 2 ** -24)));
  const step = 2 ** (e - 10);
  let q = a / step;
  const f = Math.floor(q);
  q = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f;
  const v = q * step;
  if (v >= 65520) return s | 0x7c00;
  if (v < 2 ** -14) return s | Math.round(v / 2 ** -24);
  const ve = Math.floor(Math.log2(v));
  return s | ((ve + 15) << 10) | Math.round((v / 2 ** ve - 1) * 1024);
}

function decode(name, w) {
  if (!w || !(w.dtype in SIZE) || !Array.isArray(w.shape) || typeof w.data !== 'string')
    throw new Error(`input "${name}" is not an array`);
  const buf = Buffer.from(w.data, 'base64');
  const n = w.shape.reduce((a, b) => a * b, 1);
  if (buf.length !== n * SIZE[w.dtype])
    throw new Error(`input "${name}": ${buf.length} bytes do not hold shape [${w.shape}] of ${w.dtype}`);
  const out = w.dtype === 'int32' ? new Int32Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] =
      w.dtype === 'int32'
        ? buf.readInt32LE(4 * i)
        : w.dtype === 'float16'
          ? f16ToF32(buf.readUInt16LE(2 * i))
          : w.dtype === 'float32'
            ? buf.readFloatLE(4 * i)
            : buf.readDoubleLE(8 * i);
  }
  return out;
}

function encode(dtype, shape, data) {
  const buf = Buffer.alloc(data.length * SIZE[dtype]);
  for (let i = 0; i < data.length; i++) {
    if (dtype === 'int32') buf.writeInt32LE(data[i], 4 * i);
    else if (dtype === 'float16') buf.writeUInt16LE(f32ToF16(data[i]), 2 * i);
    else buf.writeFloatLE(data[i], 4 * i);
  }
  return { dtype, shape, data: buf.toString('base64') };
}

// --- the ops ---
const models = new Map();
let nextModel = 1;
const UNITS = ['all', 'cpuOnly', 'cpuAndGPU', 'cpuAndNeuralEngine'];
const ms = (t0) => performance.now() - t0;

function packageOf(compiled) {
  const marker = join(compiled, 'standin.json');
  if (!existsSync(marker)) throw new Error(`${compiled} is not a compiled model`);
  return JSON.parse(readFileSync(marker, 'utf8')).package;
}

const ops = {
  hello: () => ({
    protocol: 1,
    os: `stand-in for Core ML (modernbert-ane engine at fp16), macOS ${args.os}`,
    os_version: args.os.split('.').map(Number),
  }),
  compile(r) {
    if (existsSync(r.compiled)) return { compiled_now: false };
    const t0 = performance.now();
    readMLPackage(r.package); // refuses what is no package, as compileModel would
    mkdirSync(r.compiled, { recursive: true });
    writeFileSync(join(r.compiled, 'standin.json'), JSON.stringify({ package: r.package }));
    return { compiled_now: true, compile_ms: ms(t0) };
  },
  load(r) {
    if (misbehave === 'die-on-load') process.kill(process.pid, 'SIGKILL');
    if (!UNITS.includes(r.compute_units)) throw new Error(`unknown compute units "${r.compute_units}"`);
    const t0 = performance.now();
    const path = packageOf(r.compiled);
    const first = readMLPackage(path);
    // Core ML takes a function name only for a multifunction model.
    if (r.function !== undefined && first.functions.length < 2)
      throw new Error(`function "${r.function}" given for a model of one function`);
    const pkg = r.function === undefined ? first : readMLPackage(path, r.function);
    const handle = nextModel++;
    models.set(handle, { pkg, interp: new Interpreter(pkg.graph, 'fp16') });
    return { model: handle, load_ms: ms(t0) };
  },
  async predict(r) {
    if (misbehave === 'die-on-predict') process.kill(process.pid, 'SIGKILL');
    if (misbehave === 'hang-on-predict') return new Promise(() => {});
    const m = models.get(r.model);
    if (!m) throw new Error(`no model ${r.model} is loaded`);
    const inputs = {};
    for (const v of m.pkg.graph.inputs) {
      const w = r.inputs?.[v.name];
      if (!w) throw new Error(`input "${v.name}" is missing`);
      if (w.dtype !== WIRE[v.type.dtype])
        throw new Error(`input "${v.name}" must be ${WIRE[v.type.dtype]}, not ${w.dtype}`);
      if (
        w.shape.length !== v.type.shape.length ||
        v.type.shape.some((d, i) => typeof d === 'number' && d !== w.shape[i])
      )
        throw new Error(`input "${v.name}" has shape [${w.shape}], the model [${v.type.shape}]`);
      inputs[v.name] = { dtype: v.type.dtype, shape: w.shape, data: decode(v.name, w) };
    }
    const t0 = performance.now();
    const res = await m.interp.run(inputs);
    const outputs = {};
    const declared = new Map(m.pkg.graph.ops.flatMap((o) => o.outputs.map((x) => [x.name, x.type.dtype])));
    for (const name of m.pkg.graph.outputs) {
      const t = res.get(name);
      outputs[name] = encode(WIRE[declared.get(name)] ?? 'float32', t.shape, t.data);
    }
    return { outputs, predict_ms: ms(t0) };
  },
  unload(r) {
    models.delete(r.model);
    return {};
  },
  plan(r) {
    const path = packageOf(r.compiled);
    const first = readMLPackage(path);
    if (!first.functions.includes(r.function)) throw new Error(`the program has no function "${r.function}"`);
    const graph = readMLPackage(path, r.function).graph;
    const list = [
      ...[...graph.consts.keys()].map((name) => ({ type: 'const', outputs: [name] })),
      ...graph.ops.map((op) => ({ type: op.op, outputs: op.outputs.map((o) => o.name) })),
    ];
    const weight = (t) => (['conv', 'einsum', 'matmul', 'linear'].includes(t) ? 10 : t === 'const' ? 0 : 1);
    const sum = list.reduce((a, o) => a + weight(o.type), 0);
    return {
      function: r.function,
      ops: list.map((o, index) =>
        o.type === 'const'
          ? { index, ...o }
          : {
              index,
              ...o,
              preferred: o.type === 'gather' ? 'cpu' : 'ane',
              supported: o.type === 'gather' ? ['cpu', 'gpu'] : ['ane', 'cpu', 'gpu'],
              cost: weight(o.type) / sum,
            },
      ),
    };
  },
};

let replied = false;
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  let reply;
  let id = null;
  try {
    const r = JSON.parse(line);
    id = r.id;
    if (!(r.op in ops)) throw new Error(`unknown op "${r.op}"`);
    if (misbehave === 'garbage-on-predict' && r.op === 'predict') {
      process.stdout.write('Loading Neural Engine program... done\n');
      continue;
    }
    reply = { ...(await ops[r.op](r)), ok: true };
    if (misbehave === 'bad-reply' && r.op === 'load') delete reply.load_ms;
  } catch (e) {
    reply = { ok: false, error: e.message };
  }
  if (misbehave === 'stray-line' && !replied) process.stdout.write('{"note": "not a reply"}\n');
  replied = true;
  process.stdout.write(
    `${JSON.stringify({ ...reply, id: misbehave === 'wrong-id' && reply.ok && id > 1 ? id + 100 : id })}\n`,
  );
}
await shutdownRuntime();
process.exit(0);
