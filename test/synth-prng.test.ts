import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fnv1a32, hashU32, splitmix32, synthFill, synthIds, synthTensor } from '../src/numeric/prng.js';
import { randomSigns } from '../src/rotation/random-signs.js';

const probe = JSON.parse(readFileSync('test/fixtures/prng_probe.json', 'utf8')) as Record<string, number[] | number>;

const M = 2n ** 32n;

/** FIXTURES.md's PRNG written out in BigInt arithmetic, independent of the Math.imul port. */
function referenceU32(i: number, seed: bigint): bigint {
  let x = (BigInt(i) + seed * 0x9e3779b9n) % M;
  x ^= x >> 16n;
  x = (x * 0x7feb352dn) % M;
  x ^= x >> 15n;
  x = (x * 0x846ca68bn) % M;
  x ^= x >> 16n;
  return x;
}

function referenceFnv(name: string): bigint {
  let h = 0x811c9dc5n;
  for (const b of Buffer.from(name, 'utf8')) h = ((h ^ BigInt(b)) * 0x01000193n) % M;
  return h;
}

describe('portable PRNG', () => {
  it('matches prng_probe.json bit for bit', () => {
    expect(fnv1a32('model.embeddings.tok_embeddings.weight')).toBe(
      probe["fnv1a32('model.embeddings.tok_embeddings.weight')"],
    );
    expect(Array.from(hashU32(4, 12345))).toEqual(probe['hash_u32(4, 12345)']);
    expect(Array.from(synthTensor('x', [4], 0, 1))).toEqual(probe["synth_tensor('x', (4,), 0.0, 1.0)"]);
    expect(synthIds(5, 'seq300', 0, 50280)).toEqual(probe["synth_ids(5, 'seq300', 0, 50280)"]);
  });

  it('agrees with a BigInt transcription of the spec, including non-ASCII names and large indices', () => {
    for (const name of ['', 'a', 'model.layers.21.mlp.Wo.weight', 'ünïcode→名前']) {
      expect(fnv1a32(name)).toBe(Number(referenceFnv(name)));
    }
    const name = 'model.layers.7.attn.Wqkv.weight';
    const data = synthTensor(name, [3000, 1000], 0.25, 0.5);
    for (const i of [0, 1, 65535, 65536, 1_234_567, 2_999_999]) {
      const u = Number(referenceU32(i, referenceFnv(name)) >> 8n) / 16777216;
      expect(data[i]).toBe(Math.fround(0.25 + (2 * u - 1) * 0.5));
    }
  });

  it('fills a reused buffer with the same values as a fresh tensor', () => {
    const scratch = new Float32Array(64).fill(Number.NaN);
    expect(synthFill(scratch.subarray(0, 10), 'w', 1, 0.1)).toEqual(synthTensor('w', [2, 5], 1, 0.1));
    expect(Number.isNaN(scratch[10]!)).toBe(true);
  });

  it('generates the long inputs of the synth-base goldens: [CLS] + synthIds(n - 2, tag) + [SEP]', () => {
    const buf = readFileSync('test/fixtures/synth-base/golden.safetensors');
    const headerLen = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<
      string,
      { shape: number[]; data_offsets: [number, number] }
    >;
    for (const [name, tag] of [
      ['len300', 'seq300'],
      ['len1024', 'seq1024'],
    ] as const) {
      const t = header[`${name}.input_ids`]!;
      const n = t.shape[1]!;
      const ids = Array.from({ length: n }, (_, i) =>
        Number(buf.readBigInt64LE(8 + headerLen + t.data_offsets[0] + 8 * i)),
      );
      expect(ids).toEqual([50281, ...synthIds(n - 2, tag, 0, 50280), 50282]);
    }
  });

  it('draws ids in [lo, hi)', () => {
    const ids = synthIds(1024, 'seq1024', 5, 50280);
    expect(ids).toHaveLength(1024);
    expect(ids.every((id) => Number.isInteger(id) && id >= 5 && id < 50280)).toBe(true);
    expect(synthIds(300, 'seq300', 0, 50280).slice(0, 5)).toEqual(probe["synth_ids(5, 'seq300', 0, 50280)"]);
  });
});

describe('splitmix32, the one sequential generator (rotation signs, rotation-learning minibatches)', () => {
  it('gives the sequence the learned rotation and the Hadamard signs were made with', () => {
    const next = splitmix32(0x5eed1e55);
    expect([next(), next(), next(), next()]).toEqual([1572048202, 3563666825, 3030200847, 46341037]);
    // randomSigns(64, 7) before it shared this generator (its top bits, 1 = -1):
    const bits = Array.from(randomSigns(64, 7), (s) => (s < 0 ? 1 : 0)).join('');
    expect(bits).toBe('0011001000011111011000010010001100000011011111100001101010010010');
  });
});
