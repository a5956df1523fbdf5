import { describe, expect, it } from 'vitest';
import { orthonormalizeRows } from './helpers/orthogonal.js';
import { ModernBertError } from '../src/errors.js';
import {
  DenseRotation,
  FINAL_UNROTATE,
  foldWeights,
  HadamardRotation,
  IdentityRotation,
  LAYER0_RESIDUAL,
  TOK_EMBEDDINGS,
  type Rotation,
} from '../src/rotation/index.js';
import { MemoryWeights, type Tensor, type WeightSource } from '../src/io/weights.js';

const EPS = 1e-5;

/** mulberry32: deterministic uniforms in [0, 1). */
function uniforms(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface TinyModel {
  n: number;
  inter: number;
  vocab: number;
  layers: number;
  weights: Map<string, Tensor>;
}

interface Biases {
  norm: boolean;
  linear: boolean;
}

/** A random ModernBERT-shaped model. Embedding rows get a large mean and one outlier channel, as real ones do. */
function tinyModel(n: number, layers: number, biases: Biases, seed: number): TinyModel {
  const rand = uniforms(seed);
  const inter = 16;
  const vocab = 10;
  const weights = new Map<string, Tensor>();
  const add = (name: string, shape: number[], base: number, amp: number): void => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = base + (2 * rand() - 1) * amp;
    weights.set(name, { shape, data });
  };
  const norm = (prefix: string): void => {
    add(`${prefix}.weight`, [n], 1, 0.5);
    if (biases.norm) add(`${prefix}.bias`, [n], 0, 0.3);
  };
  const linear = (prefix: string, out: number, inp: number): void => {
    add(`${prefix}.weight`, [out, inp], 0, 1 / Math.sqrt(inp));
    if (biases.linear) add(`${prefix}.bias`, [out], 0, 0.1);
  };
  add(TOK_EMBEDDINGS, [vocab, n], 0.7, 1);
  const e = weights.get(TOK_EMBEDDINGS)!.data;
  for (let v = 0; v < vocab; v++) e[v * n + 3] = 40 + v;
  norm('model.embeddings.norm');
  for (let i = 0; i < layers; i++) {
    if (i > 0) norm(`model.layers.${i}.attn_norm`);
    linear(`model.layers.${i}.attn.Wqkv`, 3 * n, n);
    linear(`model.layers.${i}.attn.Wo`, n, n);
    norm(`model.layers.${i}.mlp_norm`);
    linear(`model.layers.${i}.mlp.Wi`, 2 * inter, n);
    linear(`model.layers.${i}.mlp.Wo`, n, inter);
  }
  norm('model.final_norm');
  // head tensors: must pass through untouched
  add('head.dense.weight', [n, n], 0, 0.3);
  add('head.norm.weight', [n], 1, 0.1);
  weights.set('decoder.weight', weights.get(TOK_EMBEDDINGS)!);
  add('decoder.bias', [vocab], 0, 0.1);
  return { n, inter, vocab, layers, weights };
}

type Vec = Float64Array;
type Get = (name: string) => Float32Array | null;

function linear(get: Get, prefix: string, x: Vec): Vec {
  const w = get(`${prefix}.weight`)!;
  const b = get(`${prefix}.bias`);
  const inp = x.length;
  const out = new Float64Array(w.length / inp);
  for (let i = 0; i < out.length; i++) {
    let s = b ? b[i]! : 0;
    for (let j = 0; j < inp; j++) s += w[i * inp + j]! * x[j]!;
    out[i] = s;
  }
  return out;
}

const gelu = (x: number): number => 0.5 * x * (1 + Math.tanh(0.7978845608 * (x + 0.044715 * x ** 3)));

/** Attention stand-in: any function of Wqkv's output; exactness does not depend on which. */
function attention(get: Get, layer: number, x: Vec): Vec {
  const qkv = linear(get, `model.layers.${layer}.attn.Wqkv`, x);
  const n = x.length;
  const z = new Float64Array(n);
  for (let j = 0; j < n; j++) z[j] = gelu(qkv[j]!) * qkv[n + j]! + qkv[2 * n + j]!;
  return linear(get, `model.layers.${layer}.attn.Wo`, z);
}

/** GeGLU MLP: Wo(gelu(input) ⊙ gate). */
function mlp(get: Get, layer: number, x: Vec): Vec {
  const h = linear(get, `model.layers.${layer}.mlp.Wi`, x);
  const inter = h.length / 2;
  const z = new Float64Array(inter);
  for (let j = 0; j < inter; j++) z[j] = gelu(h[j]!) * h[inter + j]!;
  return linear(get, `model.layers.${layer}.mlp.Wo`, z);
}

function layerNorm(get: Get, prefix: string, x: Vec): Vec {
  const n = x.length;
  const mean = x.reduce((a, b) => a + b, 0) / n;
  const variance = x.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
  const g = get(`${prefix}.weight`)!;
  const b = get(`${prefix}.bias`);
  return x.map((v, i) => ((v - mean) / Math.sqrt(variance + EPS)) * g[i]! + (b ? b[i]! : 0));
}

function rmsNorm(x: Vec): Vec {
  const ms = x.reduce((a, b) => a + b * b, 0) / x.length;
  return x.map((v) => v / Math.sqrt(ms + EPS));
}

function addInto(r: Vec, d: Vec): void {
  for (let i = 0; i < r.length; i++) r[i] += d[i]!;
}

function getter(src: WeightSource): Get {
  return (name) => (src.has(name) ? src.get(name).data : null);
}

function embeddingRow(get: Get, token: number, n: number): Vec {
  return Float64Array.from(get(TOK_EMBEDDINGS)!.subarray(token * n, (token + 1) * n));
}

interface Forward {
  /** The residual stream after the embedding norm and after each layer. */
  streams: Vec[];
  /** After the final norm. */
  last: Vec;
}

/** The original model for one token, residual stream only. */
function referenceForward(src: WeightSource, layers: number, n: number, token: number): Forward {
  const get = getter(src);
  const r = layerNorm(get, 'model.embeddings.norm', embeddingRow(get, token, n));
  const streams = [Float64Array.from(r)];
  for (let i = 0; i < layers; i++) {
    addInto(r, attention(get, i, i === 0 ? Float64Array.from(r) : layerNorm(get, `model.layers.${i}.attn_norm`, r)));
    addInto(r, mlp(get, i, layerNorm(get, `model.layers.${i}.mlp_norm`, r)));
    streams.push(Float64Array.from(r));
  }
  return { streams, last: layerNorm(get, 'model.final_norm', r) };
}

/** The folded model: RMS norms without scale, layer 0's residual matrix, unrotate at the end. */
function foldedForward(folded: WeightSource, layers: number, n: number, token: number): Forward {
  const get = getter(folded);
  const n0 = rmsNorm(embeddingRow(get, token, n));
  const r = linear(get, LAYER0_RESIDUAL, n0);
  const streams = [Float64Array.from(r)];
  for (let i = 0; i < layers; i++) {
    addInto(r, attention(get, i, i === 0 ? n0 : rmsNorm(r)));
    addInto(r, mlp(get, i, rmsNorm(r)));
    streams.push(Float64Array.from(r));
  }
  return { streams, last: linear(get, FINAL_UNROTATE, rmsNorm(r)) };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A random orthogonal matrix: Gram–Schmidt on random rows. */
function randomOrthogonal(n: number, seed: number): Float64Array {
  const rand = uniforms(seed);
  return orthonormalizeRows(
    Float64Array.from({ length: n * n }, () => rand() - 0.5),
    n,
  );
}

const rotations: [string, (n: number) => Rotation][] = [
  ['identity', (n) => new IdentityRotation(n)],
  ['random Hadamard', (n) => new HadamardRotation(n, 5)],
  ['random dense orthogonal', (n) => new DenseRotation(n, randomOrthogonal(n, 9))],
];

const biasCases: [string, Biases][] = [
  ['no biases', { norm: false, linear: false }],
  ['all biases', { norm: true, linear: true }],
  ['norm biases only', { norm: true, linear: false }],
  ['linear biases only', { norm: false, linear: true }],
];

describe('foldWeights: the folded model computes the same last hidden state', () => {
  for (const [n, layers] of [
    [12, 2],
    [24, 3],
  ] as const) {
    for (const [biasName, biases] of biasCases) {
      for (const [rotName, makeRotation] of rotations) {
        it(`n = ${n}, ${layers} layers, ${biasName}, ${rotName}`, () => {
          const model = tinyModel(n, layers, biases, n * 100 + layers);
          const src = new MemoryWeights(model.weights);
          const rotation = makeRotation(n);
          const folded = foldWeights(src, { numLayers: layers, hidden: n }, rotation);
          for (let token = 0; token < model.vocab; token++) {
            const want = referenceForward(src, layers, n, token);
            const got = foldedForward(folded, layers, n, token);
            expect(maxAbsDiff(got.last, want.last)).toBeLessThan(1e-5);
            // the invariant r̃ = Qᵀ·C·r after every layer: r̃ᵀ is (r minus its mean)ᵀ·Q
            got.streams.forEach((folded, i) => {
              const r = want.streams[i]!;
              const mean = r.reduce((a, b) => a + b, 0) / n;
              const scale = Math.max(1, ...r.map(Math.abs));
              expect(
                maxAbsDiff(
                  folded,
                  rotation.rightMul(
                    Float64Array.from(r, (v) => v - mean),
                    1,
                    n,
                  ),
                ) / scale,
              ).toBeLessThan(1e-5);
            });
          }
        });
      }
    }
  }
});

describe('foldWeights: names and shapes', () => {
  it('drops the body norms, adds the residual and unrotate tensors, passes the head through', () => {
    const model = tinyModel(12, 2, { norm: true, linear: false }, 1);
    const src = new MemoryWeights(model.weights);
    const folded = foldWeights(src, { numLayers: 2, hidden: 12 }, new HadamardRotation(12, 0));
    const names = folded.names();
    expect(names.filter((x) => /norm\.(weight|bias)$/.test(x))).toEqual(['head.norm.weight']);
    for (const added of [
      `${LAYER0_RESIDUAL}.weight`,
      `${LAYER0_RESIDUAL}.bias`,
      `${FINAL_UNROTATE}.weight`,
      `${FINAL_UNROTATE}.bias`,
      'model.layers.0.attn.Wqkv.bias', // from the embedding norm's β alone
      'model.layers.1.mlp.Wi.bias',
    ]) {
      expect(names).toContain(added);
    }
    expect(names).not.toContain('model.layers.0.attn.Wo.bias');
    for (const name of names) {
      expect(folded.has(name)).toBe(true);
      expect(folded.get(name).shape).toEqual(folded.shape(name));
      expect(folded.get(name).data.length).toBe(folded.shape(name).reduce((a, b) => a * b, 1));
    }
    for (const head of ['head.dense.weight', 'head.norm.weight', 'decoder.weight', 'decoder.bias']) {
      expect(folded.get(head)).toEqual(src.get(head));
    }
    expect(folded.shape(`${LAYER0_RESIDUAL}.weight`)).toEqual([12, 12]);
    expect(folded.shape('model.layers.1.mlp.Wo.weight')).toEqual([12, 16]);
    expect(() => folded.get('model.final_norm.weight')).toThrow(ModernBertError);
  });

  it("without a norm bias, a reader's bias passes through", () => {
    const model = tinyModel(12, 2, { norm: false, linear: true }, 5);
    const src = new MemoryWeights(model.weights);
    const folded = foldWeights(src, { numLayers: 2, hidden: 12 }, new HadamardRotation(12, 0));
    expect(folded.get('model.layers.1.attn.Wqkv.bias')).toEqual(src.get('model.layers.1.attn.Wqkv.bias'));
    expect(folded.get('model.layers.0.mlp.Wi.bias')).toEqual(src.get('model.layers.0.mlp.Wi.bias'));
  });

  it('without norm biases adds no bias tensors', () => {
    const model = tinyModel(12, 2, { norm: false, linear: false }, 2);
    const folded = foldWeights(
      new MemoryWeights(model.weights),
      { numLayers: 2, hidden: 12 },
      new IdentityRotation(12),
    );
    expect(folded.names().filter((x) => x.endsWith('.bias'))).toEqual(['decoder.bias']);
  });
});

/** A WeightSource that records which tensors' data were read. */
class SpyWeights implements WeightSource {
  readonly read: string[] = [];
  constructor(private readonly inner: WeightSource) {}
  has(name: string): boolean {
    return this.inner.has(name);
  }
  get(name: string): Tensor {
    this.read.push(name);
    return this.inner.get(name);
  }
  shape(name: string): number[] {
    return this.inner.shape(name);
  }
  names(): string[] {
    return this.inner.names();
  }
}

describe('foldWeights is lazy', () => {
  const setup = (): { spy: SpyWeights; folded: WeightSource } => {
    const spy = new SpyWeights(new MemoryWeights(tinyModel(24, 3, { norm: true, linear: true }, 3).weights));
    const folded = foldWeights(spy, { numLayers: 3, hidden: 24 }, new HadamardRotation(24, 1));
    return { spy, folded };
  };

  it('reads no tensor data to build, list names or shapes', () => {
    const { spy, folded } = setup();
    for (const name of folded.names()) folded.shape(name);
    expect(spy.read).toEqual([]);
  });

  it('reads only the inputs of the tensor asked for', () => {
    const { spy, folded } = setup();
    folded.get('model.layers.2.mlp.Wi.weight');
    expect(new Set(spy.read)).toEqual(new Set(['model.layers.2.mlp.Wi.weight', 'model.layers.2.mlp_norm.weight']));
    spy.read.length = 0;
    folded.get('model.layers.1.attn.Wqkv.bias');
    expect(new Set(spy.read)).toEqual(
      new Set(['model.layers.1.attn.Wqkv.weight', 'model.layers.1.attn.Wqkv.bias', 'model.layers.1.attn_norm.bias']),
    );
    spy.read.length = 0;
    folded.get('model.layers.0.attn.Wo.weight');
    expect(spy.read).toEqual(['model.layers.0.attn.Wo.weight']);
    spy.read.length = 0;
    folded.get(`${LAYER0_RESIDUAL}.weight`);
    expect(spy.read).toEqual(['model.embeddings.norm.weight']);
  });
});

describe('foldWeights rejects inconsistent inputs', () => {
  const code = (fn: () => unknown): string => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(ModernBertError);
      return (e as ModernBertError).code;
    }
    return 'no error';
  };

  it('a rotation of the wrong order, missing or extra layers, a misshapen tensor', () => {
    const weights = tinyModel(12, 2, { norm: false, linear: false }, 4).weights;
    const src = new MemoryWeights(weights);
    expect(code(() => foldWeights(src, { numLayers: 2, hidden: 12 }, new IdentityRotation(24)))).toBe('SHAPE_MISMATCH');
    expect(code(() => foldWeights(src, { numLayers: 3, hidden: 12 }, new IdentityRotation(12)))).toBe('BAD_CONFIG');
    expect(code(() => foldWeights(src, { numLayers: 1, hidden: 12 }, new IdentityRotation(12)))).toBe('BAD_CONFIG');
    const bad = new Map(weights);
    bad.set('model.layers.1.mlp_norm.weight', { shape: [11], data: new Float32Array(11) });
    expect(
      code(() => foldWeights(new MemoryWeights(bad), { numLayers: 2, hidden: 12 }, new IdentityRotation(12))),
    ).toBe('SHAPE_MISMATCH');
    const layer0Norm = new Map(weights);
    layer0Norm.set('model.layers.0.attn_norm.weight', { shape: [12], data: new Float32Array(12) });
    expect(
      code(() => foldWeights(new MemoryWeights(layer0Norm), { numLayers: 2, hidden: 12 }, new IdentityRotation(12))),
    ).toBe('BAD_CONFIG');
  });
});
