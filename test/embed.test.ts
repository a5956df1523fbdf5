// Batch commands (issue 9 part 4): `embed` and `predict --input` pack texts first-fit-decreasing, give each
// text what a run of it alone gives, write JSONL/.npy/.safetensors, and fail in one line with no output file.

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../src/io/safetensors.js';
import { npyBytes } from '../src/io/npy.js';
import { parseBatchInput } from '../src/tasks/batch-input.js';
import { packBlocks, packTexts } from '../src/model/pack-texts.js';
import { sentenceTransformers } from './helpers/embedding.js';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import { cleanupTempDirs, FX, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const TEXTS = [
  'The cat sat on the mat.',
  'A much longer sentence about the weather, which was cold and wet all day long.',
  'Hi.',
  'Paris is a city in France.',
  'One more line for the batch.',
];

function inputFile(lines: string[], name = 'texts.txt'): string {
  const path = join(tempDir('mbane-embed-in-'), name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

const maxDiff = (a: number[], b: number[]): number => {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
};

/** Each text's embedding from `predict --embed --json` (one text, unpacked). */
async function alone(model: string, texts: string[], ...flags: string[]): Promise<number[][]> {
  const out: number[][] = [];
  for (const t of texts) {
    const r = await cli('predict', model, t, '--embed', '--json', ...flags);
    expect(r.code, r.stderr).toBe(0);
    out.push(json(r) as number[]);
  }
  return out;
}

/** An independent .npy reader: the header dict and float32 data. */
function readNpy(path: string): { shape: number[]; data: Float32Array } {
  const b = readFileSync(path);
  expect([...b.subarray(0, 8)]).toEqual([0x93, 78, 85, 77, 80, 89, 1, 0]);
  const hlen = b.readUInt16LE(8);
  expect((10 + hlen) % 64).toBe(0);
  const header = b.subarray(10, 10 + hlen).toString('latin1');
  expect(header).toMatch(/^\{'descr': '<f4', 'fortran_order': False, 'shape': \(\d+, \d+\), \} *\n$/);
  const shape = /\((\d+), (\d+)\)/.exec(header)!.slice(1).map(Number);
  const data = new Float32Array(b.buffer.slice(b.byteOffset + 10 + hlen, b.byteOffset + b.length));
  return { shape, data };
}

describe('first-fit-decreasing packing', () => {
  it('puts the longest texts first, each into the first window with room and a free slot, contiguous and padded', () => {
    const texts = [[1, 1, 1], [2, 2, 2, 2, 2, 2], [3, 3, 3, 3], [4], [5, 5]];
    const w = packTexts(texts, 8, 3, 0);
    // Lengths 6, 4, 3, 2, 1 in turn: 6 opens A, 4 opens B, 3 joins B, 2 fills A, 1 fills B.
    expect(w.map((x) => x.texts)).toEqual([
      [1, 4],
      [2, 0, 3],
    ]);
    expect(w[0]!.ids).toEqual([2, 2, 2, 2, 2, 2, 5, 5]);
    expect(w[0]!.segments).toEqual([1, 1, 1, 1, 1, 1, 2, 2]);
    expect(w[1]!.ids).toEqual([3, 3, 3, 3, 1, 1, 1, 4]);
    expect(w[1]!.segments).toEqual([1, 1, 1, 1, 2, 2, 2, 3]);
    expect(w[1]!.starts).toEqual([0, 4, 7]);
    expect(packTexts(texts, 16, 2, 0).map((x) => x.texts)).toEqual([[1, 2], [0, 4], [3]]); // two texts per window at most
  });
});

describe('packing in blocks', () => {
  it('keeps each text inside one block, fills blocks first fit decreasing, and groups them into windows', () => {
    const lengths = [3, 8, 5, 2, 7, 1, 4, 6, 2];
    const texts = lengths.map((n, t) => Array.from({ length: n }, () => t + 1));
    const windows = packBlocks(texts, 24, 8, 4, 0);
    const seen: number[] = [];
    for (const w of windows) {
      expect(w.texts.length).toBeLessThanOrEqual(4);
      expect(w.ids).toHaveLength(24);
      w.texts.forEach((t, k) => {
        const [from, to] = [w.starts[k]!, w.starts[k]! + lengths[t]!];
        expect(Math.floor(from / 8), `text ${t} crosses a block`).toBe(Math.floor((to - 1) / 8));
        expect(w.ids.slice(from, to)).toEqual(texts[t]);
        expect(w.segments.slice(from, to)).toEqual(new Array(lengths[t]).fill(k + 1));
        seen.push(t);
      });
      // Everything else is padding, segment 0.
      expect(w.segments.filter((g) => g === 0)).toHaveLength(24 - w.texts.reduce((n, t) => n + lengths[t]!, 0));
    }
    expect(seen.sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    // Blocks in the order opened: [8], [7, 1], [6, 2], [5, 3], [4, 2]; three to a window, four texts at most.
    expect(windows.map((w) => w.texts)).toEqual([
      [1, 4, 5],
      [7, 3, 2, 0],
      [6, 8],
    ]);
    expect(() => packBlocks([[1, 2, 3]], 8, 2, 4, 0)).toThrow(/more than the window of 2/);
  });
});

describe('batch input', () => {
  it('reads one text per non-empty line, or JSONL with a "text" field, and names the bad line', () => {
    expect(parseBatchInput('a b\n\n  c  \n', 'x.txt')).toEqual([
      { text: 'a b', line: 1 },
      { text: 'c', line: 3 },
    ]);
    expect(parseBatchInput('{"text": "a"}\n{"text": "b", "id": 7}\n', 'x')).toEqual([
      { text: 'a', line: 1 },
      { text: 'b', line: 2 },
    ]);
    expect(() => parseBatchInput(' \n\n', 'x.txt')).toThrow(/x\.txt holds no text/);
    expect(() => parseBatchInput('{"text": "a"}\n{"text": \n', 'x.jsonl')).toThrow(/x\.jsonl line 2 is not JSON/);
    expect(() => parseBatchInput('{"text": "a"}\n{"txt": "b"}\n', 'x.jsonl')).toThrow(
      /line 2 has no string "text" field/,
    );
  });

  it('.npy: numpy 1.0 header padded to 64 bytes, then the float32 data', () => {
    const path = join(tempDir(), 'm.npy');
    writeFileSync(path, npyBytes(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]));
    expect(readNpy(path)).toEqual({ shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
  });
});

describe('embed', () => {
  it('packed, equals each text embedded alone (within 1e-4), as JSONL, .npy and .safetensors, with --prefix', async () => {
    const model = await sentenceTransformers('mean', true);
    const input = inputFile(TEXTS);
    const dir = tempDir('mbane-embed-out-');
    const r = await cli('embed', model, '--input', input, '--out', join(dir, 'e.jsonl'), '--window', '48', '--json');
    expect(r.code, r.stderr).toBe(0);
    const stats = json(r) as { texts: number; windows: number };
    expect(stats).toMatchObject({ texts: 5, window: 48, textsPerWindow: 48 });
    expect(stats.windows).toBeLessThan(5);
    const rows = readFileSync(join(dir, 'e.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { index: number; embedding: number[] });
    expect(rows.map((x) => x.index)).toEqual([0, 1, 2, 3, 4]);
    const want = await alone(model, TEXTS);
    rows.forEach((x, i) => expect(maxDiff(x.embedding, want[i]!), TEXTS[i]).toBeLessThan(1e-4));

    expect((await cli('embed', model, '--input', input, '--out', join(dir, 'e.npy'))).code).toBe(0);
    const npy = readNpy(join(dir, 'e.npy'));
    expect(npy.shape).toEqual([5, 64]);
    rows.forEach((x, i) =>
      expect(maxDiff(Array.from(npy.data.subarray(i * 64, (i + 1) * 64)), x.embedding)).toBeLessThan(1e-6),
    );

    expect((await cli('embed', model, '--input', input, '--out', join(dir, 'e.safetensors'))).code).toBe(0);
    const st = SafetensorsFile.open(join(dir, 'e.safetensors'));
    try {
      expect(st.tensors.get('embeddings')!.shape).toEqual([5, 64]);
      expect(maxDiff(Array.from(st.readFloat32('embeddings')), Array.from(npy.data))).toBe(0);
    } finally {
      st.close();
    }

    const p = await cli('embed', model, '--input', input, '--out', join(dir, 'p.jsonl'), '--prefix', 'search_query: ');
    expect(p.code, p.stderr).toBe(0);
    const prefixed = readFileSync(join(dir, 'p.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { embedding: number[] }).embedding);
    const wantPrefixed = await alone(
      model,
      TEXTS.slice(0, 2).map((t) => `search_query: ${t}`),
    );
    wantPrefixed.forEach((e, i) => expect(maxDiff(prefixed[i]!, e)).toBeLessThan(1e-4));
    expect(maxDiff(prefixed[0]!, rows[0]!.embedding)).toBeGreaterThan(1e-3);
  }, 60_000);

  it('short texts in blocks (each within the local window), as each text alone; a longer one packs them plainly', async () => {
    const model = await sentenceTransformers('mean', true);
    const dir = tempDir('mbane-embed-blocks-');
    /** embed of `texts` in windows of 64: its --json summary and the embeddings. */
    const run = async (texts: string[], name: string, ...flags: string[]) => {
      const out = join(dir, `${name}.jsonl`);
      const r = await cli(
        'embed',
        model,
        '--input',
        inputFile(texts),
        '--out',
        out,
        '--window',
        '64',
        '--json',
        ...flags,
      );
      expect(r.code, r.stderr).toBe(0);
      const rows = readFileSync(out, 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { embedding: number[] }).embedding);
      return { stats: json(r), rows };
    };
    // 5 to 7 tokens each in tiny-mlm's tokenizer: within its blocks of 8 (local window 16).
    const short = ['Hi.', 'Paris.', 'Yes it is.', 'A dog.', 'No.', 'Go now.'];
    const want = await alone(model, short);
    for (const runtime of ['engine', 'ort']) {
      const { stats, rows } = await run(short, runtime, '--runtime', runtime);
      expect(stats).toMatchObject({ texts: 6, strategy: 'blocks' });
      rows.forEach((e, i) => expect(maxDiff(e, want[i]!), `${runtime}: ${short[i]}`).toBeLessThan(1e-4));
    }
    // 9 tokens: blocks of the whole local window (16), where local layers mask the pairs more than 8 apart.
    const medium = [...short, 'The cat sat.', 'Rain today.'];
    const m = await run(medium, 'medium');
    expect(m.stats).toMatchObject({ texts: 8, strategy: 'blocks' });
    const wantMedium = await alone(model, medium.slice(-2));
    m.rows.slice(-2).forEach((e, i) => expect(maxDiff(e, wantMedium[i]!)).toBeLessThan(1e-4));
    expect((await run([...short, TEXTS[1]!], 'mixed')).stats).toMatchObject({ texts: 7, strategy: 'packed' });
  }, 60_000);

  it('runs a package converted with --pack as the checkpoint runs, in fp32 and in float16 emulation', async () => {
    const model = await sentenceTransformers('cls', false);
    const dir = tempDir('mbane-embed-pkg-');
    const pkg = join(dir, 'e.mlpackage');
    const c = await cli(
      'convert',
      model,
      '--out',
      pkg,
      '--seq-len',
      '48',
      '--pack',
      '4',
      '--weights',
      'fp32',
      '--tokenizer',
      '--no-fidelity',
    );
    expect(c.code, c.stderr).toBe(0);
    const input = inputFile(TEXTS);
    const want = await alone(model, TEXTS);
    // One text through the packed package (predict, verify, diff): it is text 1 and gets row 0.
    (await alone(pkg, TEXTS.slice(0, 2))).forEach((e, i) => expect(maxDiff(e, want[i]!)).toBeLessThan(1e-4));
    for (const [precision, atol] of [
      ['fp32', 1e-4],
      ['fp16', 2e-2],
    ] as const) {
      const out = join(dir, `${precision}.jsonl`);
      const r = await cli('embed', pkg, '--input', input, '--out', out, '--precision', precision, '--json');
      expect(r.code, r.stderr).toBe(0);
      expect(json(r)).toMatchObject({ window: 48, textsPerWindow: 4 });
      readFileSync(out, 'utf8')
        .trim()
        .split('\n')
        .forEach((l, i) =>
          expect(
            maxDiff((JSON.parse(l) as { embedding: number[] }).embedding, want[i]!),
            `${precision} ${i}`,
          ).toBeLessThan(atol),
        );
    }
    expectOneLineError(
      await cli('embed', pkg, '--input', input, '--out', join(dir, 'x.jsonl'), '--pack', '5'),
      /--pack 5: .* was converted with --pack 4/,
    );
    // Unpacked, a package runs one text per pass.
    const one = join(dir, 'one.mlpackage');
    expect(
      (
        await cli(
          'convert',
          model,
          '--out',
          one,
          '--seq-len',
          '48',
          '--weights',
          'fp32',
          '--tokenizer',
          '--no-fidelity',
        )
      ).code,
    ).toBe(0);
    const r = await cli('embed', one, '--input', input, '--out', join(dir, 'one.jsonl'), '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(json(r)).toMatchObject({ windows: 5, textsPerWindow: 1 });
    readFileSync(join(dir, 'one.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .forEach((l, i) =>
        expect(maxDiff((JSON.parse(l) as { embedding: number[] }).embedding, want[i]!)).toBeLessThan(1e-4),
      );
    expectOneLineError(
      await cli('embed', one, '--input', input, '--out', join(dir, 'x.jsonl'), '--pack', '2'),
      /runs one text per window: convert it with --pack 2/,
    );
  }, 60_000);

  it('bad input: one line, exit 2, and no output file (not even a partial one)', async () => {
    const model = await sentenceTransformers('mean', false);
    const dir = tempDir('mbane-embed-bad-');
    const out = join(dir, 'e.jsonl');
    expectOneLineError(await cli('embed', model, '--input', inputFile(['', '  ']), '--out', out), /holds no text/);
    expectOneLineError(
      await cli('embed', model, '--input', inputFile(['{"text": "a"}', '{"text": 3}'], 'in.jsonl'), '--out', out),
      /line 2 has no string "text" field/,
    );
    expectOneLineError(
      await cli('embed', model, '--input', inputFile(['{"text": "a"}', '{oops'], 'in.jsonl'), '--out', out),
      /line 2 is not JSON/,
    );
    const long = inputFile(['short one', 'this text is far too long for a window of only eight tokens, surely']);
    expectOneLineError(
      await cli('embed', model, '--input', long, '--out', out, '--window', '8'),
      /line 2: the text is \d+ tokens long, more than the window of 8 \(give --truncate/,
    );
    expect(readdirSync(dir)).toEqual([]);
    const t = await cli('embed', model, '--input', long, '--out', out, '--window', '8', '--truncate');
    expect(t.code, t.stderr).toBe(0);
    expect(readdirSync(dir)).toEqual(['e.jsonl']);
  }, 60_000);
});

describe('predict --input', () => {
  /** Each line's `predict --json` output alone. */
  async function single(model: string, texts: string[]): Promise<unknown[]> {
    return Promise.all(texts.map(async (t) => json(await cli('predict', model, t, '--json'))));
  }
  /** Same structure, tokens and labels; scores within 1e-4. */
  const close = (a: unknown, b: unknown, at = ''): void => {
    if (typeof a === 'number' && typeof b === 'number' && at.endsWith('.score'))
      return void expect(Math.abs(a - b), at).toBeLessThan(1e-4);
    if (typeof a !== 'object' || a === null) return void expect(a, at).toEqual(b);
    expect(Object.keys(a), at).toEqual(Object.keys(b as object));
    for (const [k, v] of Object.entries(a)) close(v, (b as Record<string, unknown>)[k], `${at}.${k}`);
  };

  it('masked LM, classifier and token classifier: one JSONL line per input line, as each text alone', async () => {
    const dir = tempDir('mbane-predict-in-');
    const cases: [string, string[]][] = [
      ['tiny-mlm', ['the [MASK] sat on the mat.', 'a [MASK] day with [MASK] rain.', 'hello [MASK].']],
      ['tiny-cls-mean', TEXTS],
      ['tiny-token', TEXTS.slice(0, 3)],
    ];
    for (const [fixture, texts] of cases) {
      const model = join(FX, fixture);
      const out = join(dir, `${fixture}.jsonl`);
      const r = await cli('predict', model, '--input', inputFile(texts), '--out', out, '--window', '64', '-k', '3');
      expect(r.code, r.stderr).toBe(0);
      const lines = readFileSync(out, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.map((l) => l.index)).toEqual(texts.map((_, i) => i));
      const want =
        fixture === 'tiny-mlm'
          ? await Promise.all(texts.map(async (t) => json(await cli('predict', model, t, '--json', '-k', '3'))))
          : await single(model, texts);
      lines.forEach(({ index, ...rest }, i) => {
        expect(Object.keys(rest)).toEqual(['result']);
        close(rest.result, want[i]);
      });
    }
  }, 60_000);

  it('a text without [MASK] for a masked LM: one line naming the line, exit 2, no output', async () => {
    const dir = tempDir('mbane-predict-bad-');
    const out = join(dir, 'p.jsonl');
    expectOneLineError(
      await cli('predict', join(FX, 'tiny-mlm'), '--input', inputFile(['a [MASK] b', 'no mask here']), '--out', out),
      /line 2: the text has no \[MASK\] token to fill/,
    );
    expect(existsSync(out)).toBe(false);
    expectOneLineError(
      await cli('predict', join(FX, 'tiny-mlm'), 'a text', '--input', inputFile(['x [MASK]'])),
      /either a text or --input FILE/,
    );
    expectOneLineError(
      await cli('predict', join(FX, 'tiny-mlm'), 'a [MASK] text', '--out', out),
      /--out goes with --input FILE/,
    );
  }, 30_000);
});
