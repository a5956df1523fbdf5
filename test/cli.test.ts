// The command line through main(argv, io) with captured output, and the real executable in a subprocess.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.js';
import { readGolden } from '../src/eval/golden.js';
import { loadCheckpoint } from '../src/model/checkpoint.js';
import { softmaxColumn, topK } from '../src/tasks/task-table.js';
import { synthTensor } from '../src/numeric/prng.js';
import { SynthWeights } from '../src/synth/synth.js';
import { expectedEmbedding, sentenceTransformers } from './helpers/embedding.js';
import {
  cleanupTempDirs,
  copyFixture,
  FX,
  rawSafetensors,
  readTensors,
  ROOT,
  tempDir,
  writeTinySynthConfig,
} from './helpers/fixtures.js';
import { goldenHidden, goldenRow } from './helpers/run.js';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import type { TokenClassificationItem } from '../src/tasks/results.js';

afterAll(cleanupTempDirs);

const DOOR = 'She opened the [MASK] and walked into the room.';
const TINY_MLM = join(FX, 'tiny-mlm');
const texts = (fixture: string): string[] =>
  (JSON.parse(readFileSync(join(FX, fixture, 'golden.json'), 'utf8')) as { texts: string[] }).texts;

describe('help and version', () => {
  it('--help lists the commands and exits 0', async () => {
    const r = await cli('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: modernbert-ane');
    for (const c of ['predict', 'verify', 'inspect', 'synth']) expect(r.stdout).toContain(c);
    expect(r.stderr).toBe('');
    const sub = await cli('predict', '--help');
    expect(sub.code).toBe(0);
    expect(sub.stdout).toContain('--top-k');
  });

  it('--version prints it', async () => {
    const r = await cli('--version');
    expect(r).toEqual({ code: 0, stdout: '0.1.0\n', stderr: '' });
  });
});

describe('predict', () => {
  it('the default model answers "door", first, with its probability', async () => {
    const r = await cli('predict', DOOR);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('[MASK]:');
    expect(lines).toHaveLength(6); // 5 candidates by default
    expect(lines[1]).toMatch(/^ {2}"door" +0\.1\d{3}$/);
  });

  it('--json is the library\'s fill-mask result: [{"score","token","token_str","sequence","mask"}]', async () => {
    const r = await cli('predict', '--json', DOOR);
    expect(r.code).toBe(0);
    const out = json(r) as Array<{ score: number; token: number; token_str: string; sequence: string; mask: number }>;
    expect(out).toHaveLength(5);
    for (const t of out) {
      expect(Object.keys(t)).toEqual(['score', 'token', 'token_str', 'sequence', 'mask']);
      expect(Number.isInteger(t.token)).toBe(true);
      expect(t.score).toBeGreaterThan(0);
      expect(t.score).toBeLessThan(1);
      expect(t.mask).toBe(0);
      expect(t.sequence).toBe(DOOR.replace('[MASK]', t.token_str.trim()));
    }
    expect(out[0]!.token_str).toBe(' door');
    expect(out.map((t) => t.score)).toEqual([...out.map((t) => t.score)].sort((a, b) => b - a));
    expect(r.stdout.endsWith(']\n')).toBe(true);
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
  });

  it('--top-k N (and -k) lists N tokens; the model may be named explicitly; several masks each get theirs', async () => {
    const r = await cli('predict', 'models/mini-trained', DOOR, '--top-k', '2', '--json');
    expect(r.code).toBe(0);
    const out = json(r) as Array<{ token_str: string }>;
    expect(out.map((t) => t.token_str.trim())).toHaveLength(2);
    expect(out[0]!.token_str.trim()).toBe('door');
    const k1 = await cli('predict', '-k', '1', DOOR);
    expect(k1.stdout.trimEnd().split('\n')).toHaveLength(2);
    const two = await cli('predict', '-k', '2', 'The [MASK] rises in the [MASK].');
    expect(
      two.stdout
        .trimEnd()
        .split('\n')
        .filter((l) => l.startsWith('[MASK]')),
    ).toEqual(['[MASK] 1 of 2:', '[MASK] 2 of 2:']);
  });

  it('the golden prompts through tiny-mlm: top token at each mask is the golden argmax', async () => {
    const gc = readGolden(join(TINY_MLM, 'golden.safetensors')).find((c) => c.name === 'batch_padded')!;
    const text = texts('tiny-mlm')[1]!; // "The capital of France is [MASK]."
    const r = await cli('predict', TINY_MLM, text, '--json', '-k', '3');
    const out = json(r) as Array<{ token: number; score: number }>;
    const [, S, V] = gc.logits!.shape as [number, number, number];
    const position = Array.from(goldenRow(gc, 1).ids).indexOf(1004); // [MASK]
    const gold = softmaxColumn(gc.logits!.data, V, (1 * S + position) * V);
    expect(out.map((t) => t.token)).toEqual(topK(gold, 3));
    for (const t of out) expect(Math.abs(t.score - gold[t.token]!)).toBeLessThan(1e-5);
  });

  it('a sequence classifier prints its labels with probabilities; --json [{"label","score"}] of every label', async () => {
    const gc = readGolden(join(FX, 'tiny-cls-mean', 'golden.safetensors')).find((c) => c.name === 'single')!;
    const gold = softmaxColumn(gc.logits!.data, 3);
    const text = texts('tiny-cls-mean')[0]!;
    const plain = await cli('predict', join(FX, 'tiny-cls-mean'), text);
    expect(plain.code).toBe(0);
    const lines = plain.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    const order = topK(gold, 3);
    lines.forEach((line, i) => {
      const [label, prob] = line.trim().split(/\s+/);
      expect(label).toBe(['neg', 'neu', 'pos'][order[i]!]);
      expect(Number(prob)).toBeCloseTo(gold[order[i]!]!, 4);
    });
    const r = json(await cli('predict', '--json', join(FX, 'tiny-cls-mean'), text)) as Array<{
      label: string;
      score: number;
    }>;
    expect(r.map((l) => Object.keys(l))).toEqual([
      ['label', 'score'],
      ['label', 'score'],
      ['label', 'score'],
    ]);
    for (const l of r) expect(Math.abs(l.score - gold[['neg', 'neu', 'pos'].indexOf(l.label)]!)).toBeLessThan(1e-5);
  });

  it('a token classifier prints a label and span per token (no [CLS]/[SEP]); --json [{"entity","score","index","word","start","end"}]', async () => {
    const gc = readGolden(join(FX, 'tiny-token', 'golden.safetensors')).find((c) => c.name === 'single')!;
    const text = texts('tiny-token')[0]!; // "The sky is [MASK]."
    const { real } = goldenRow(gc, 0);
    const plain = await cli('predict', join(FX, 'tiny-token'), text);
    expect(plain.code).toBe(0);
    const lines = plain.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^"T" +LABEL_\d +0\.\d{4} \[0, 1\)$/);
    const r = json(await cli('predict', '--json', join(FX, 'tiny-token'), text)) as TokenClassificationItem[];
    expect(r).toHaveLength(real.length - 3); // [CLS], [MASK], [SEP]
    expect(lines).toHaveLength(r.length);
    const V = 5;
    for (const [i, t] of r.entries()) {
      const gold = softmaxColumn(gc.logits!.data, V, t.index * V);
      const best = topK(gold, 1)[0]!;
      expect(Object.keys(t)).toEqual(['entity', 'score', 'index', 'word', 'start', 'end']);
      expect(t.entity).toBe(`LABEL_${best}`);
      expect(Math.abs(t.score - gold[best]!)).toBeLessThan(1e-5);
      expect(t.word).toBe(text.slice(t.start, t.end));
      expect(lines[i]).toContain(t.entity);
    }
    expect(r.map((t) => t.word)).toEqual(['T', 'he', 's', 'k', 'y', 'is', '.']);
  });

  it("--aggregation groups a token classifier's tokens into entities, each a span of the text", async () => {
    const text = texts('tiny-token')[3]!;
    const tokens = json(await cli('predict', '--json', join(FX, 'tiny-token'), text)) as Array<{
      entity: string;
      start: number;
      end: number;
    }>;
    for (const strategy of ['simple', 'first', 'average', 'max']) {
      const r = await cli('predict', '--json', '--aggregation', strategy, join(FX, 'tiny-token'), text);
      expect(r.code, r.stderr).toBe(0);
      const groups = json(r) as Array<{ entity_group: string; word: string; start: number; end: number }>;
      expect(groups.length).toBeGreaterThan(0);
      expect(groups.length).toBeLessThanOrEqual(tokens.length);
      for (const g of groups) {
        expect(Object.keys(g)).toEqual(['entity_group', 'score', 'word', 'start', 'end']);
        expect(g.word).toBe(text.slice(g.start, g.end));
      }
      expect(groups[0]!.start).toBe(tokens[0]!.start);
      expect(groups.at(-1)!.end).toBe(tokens.at(-1)!.end);
    }
    expectOneLineError(
      await cli('predict', '--aggregation', 'mean', join(FX, 'tiny-token'), text),
      /--aggregation.*mean/,
    );
  });

  it('--embed on a sentence-transformers folder: --json [...] is the normalised mean of the golden last hidden state', async () => {
    const gc = readGolden(join(TINY_MLM, 'golden.safetensors')).find((c) => c.name === 'single')!;
    const want = expectedEmbedding(goldenHidden(gc, 4, 0), goldenRow(gc, 0).real, 'mean', true);
    const dir = await sentenceTransformers('mean', true);
    for (const args of [['--embed'], []]) {
      const r = await cli('predict', ...args, '--json', dir, texts('tiny-mlm')[0]!);
      expect(r.code).toBe(0);
      const out = json(r) as number[];
      expect(out).toHaveLength(64);
      for (let j = 0; j < 64; j++) expect(Math.abs(out[j]! - want[j]!)).toBeLessThan(1e-4);
    }
    const plain = await cli('predict', '--embed', dir, texts('tiny-mlm')[0]!);
    const values = plain.stdout.trim().split(' ').map(Number);
    expect(values).toHaveLength(64);
    for (let j = 0; j < 64; j++) expect(Math.abs(values[j]! - want[j]!)).toBeLessThan(2e-6 + 1e-4);
  });

  it('cls pooling likewise', async () => {
    const gc = readGolden(join(TINY_MLM, 'golden.safetensors')).find((c) => c.name === 'single')!;
    const want = expectedEmbedding(goldenHidden(gc, 4, 0), goldenRow(gc, 0).real, 'cls', true);
    const out = json(
      await cli('predict', '--embed', '--json', await sentenceTransformers('cls', true), texts('tiny-mlm')[0]!),
    ) as number[];
    for (let j = 0; j < 64; j++) expect(Math.abs(out[j]! - want[j]!)).toBeLessThan(1e-4);
  });
});

describe('verify', () => {
  const golden = join(TINY_MLM, 'golden.safetensors');

  it('passes within the default tolerance: a line per case, PASS, exit 0', async () => {
    const r = await cli('verify', TINY_MLM, '--golden', golden);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^case +logits +hidden$/);
    for (const c of ['single', 'batch_padded', 'long_random'])
      expect(r.stdout).toMatch(new RegExp(`^${c} +\\d\\.\\d\\de-\\d +\\d\\.\\d\\de-\\d$`, 'm'));
    expect(lines.at(-1)).toMatch(/^PASS: max abs difference \d\.\d\de-\d \(tolerance 0\.0001\)$/);
  });

  it('fails above a tiny --atol: FAIL, exit 1, nothing on stderr', async () => {
    const r = await cli('verify', TINY_MLM, '--golden', golden, '--atol', '1e-9');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    expect(r.stdout.trimEnd().split('\n').at(-1)).toMatch(/^FAIL: max abs difference .* \(tolerance 1e-9\)$/);
  });

  it('--json is exactly {"passed","max_abs_diff","cases":[{"name","logits","hidden_states"}]}', async () => {
    for (const [atol, passed, code] of [
      ['1e-4', true, 0],
      ['1e-9', false, 1],
    ] as const) {
      const r = await cli('verify', '--json', TINY_MLM, '--golden', golden, '--atol', atol);
      expect(r.code).toBe(code);
      const out = json(r) as { passed: boolean; max_abs_diff: number; cases: Array<Record<string, unknown>> };
      expect(Object.keys(out)).toEqual(['passed', 'max_abs_diff', 'cases']);
      expect(out.passed).toBe(passed);
      expect(out.max_abs_diff).toBeGreaterThan(0);
      expect(out.max_abs_diff).toBeLessThan(1e-4);
      expect(out.cases.map((c) => c.name).sort()).toEqual(['batch_padded', 'long_random', 'single']);
      for (const c of out.cases) {
        expect(Object.keys(c)).toEqual(['name', 'logits', 'hidden_states']);
        expect(typeof c.logits).toBe('number');
        expect(typeof c.hidden_states).toBe('number');
        expect(Math.max(c.logits as number, c.hidden_states as number)).toBeLessThanOrEqual(out.max_abs_diff);
      }
    }
  });

  it('the default model against the mini-trained golden', async () => {
    const r = await cli(
      'verify',
      'models/mini-trained',
      '--golden',
      join(FX, 'mini-trained', 'golden.safetensors'),
      '--json',
    );
    expect(r.code).toBe(0);
    expect((json(r) as { passed: boolean }).passed).toBe(true);
  });
});

describe('inspect', () => {
  it('describes tiny-mlm in text and --json', async () => {
    const r = await cli('inspect', TINY_MLM);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^architecture +ModernBertForMaskedLM, head mlm$/m);
    expect(r.stdout).toMatch(/^attention +GLLG \(G global, L sliding window of 16\)/m);
    const out = json(await cli('inspect', '--json', TINY_MLM)) as Record<string, unknown>;
    const parameters = [...readTensors(join(TINY_MLM, 'model.safetensors')).values()].reduce(
      (s, t) => s + t.data.length,
      0,
    );
    expect(out).toMatchObject({
      architecture: 'ModernBertForMaskedLM',
      head: 'mlm',
      parameters,
      dtypes: ['F32'],
      hidden: 64,
      intermediate: 96,
      layers: 4,
      heads: 4,
      head_dim: 16,
      vocab: 1024,
      max_positions: 512,
      local_window: 16,
      layer_kinds: 'GLLG',
      rope_theta: { global: 160000, local: 10000 },
      classifier_pooling: 'cls',
      labels: [],
      special_ids: { pad: 1003, cls: 1001, sep: 1002, mask: 1004 },
      tokenizer: true,
    });
  });

  it('shows labels of a classifier and the stored dtype of bf16 weights', async () => {
    const cls = json(await cli('inspect', '--json', join(FX, 'tiny-cls-mean'))) as Record<string, unknown>;
    expect(cls).toMatchObject({ head: 'seqcls', labels: ['neg', 'neu', 'pos'], classifier_pooling: 'mean' });
    const bf = json(await cli('inspect', '--json', join(FX, 'tiny-mlm-bf16'))) as Record<string, unknown>;
    expect(bf.dtypes).toEqual(['BF16']);
    const text = await cli('inspect', join(FX, 'tiny-cls-mean'));
    expect(text.stdout).toMatch(/^labels +neg, neu, pos$/m);
  });
});

describe('synth', () => {
  const tiny = {
    vocab_size: 128,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    max_position_embeddings: 64,
    local_attention: 8,
    pad_token_id: 3,
    cls_token_id: 1,
    sep_token_id: 2,
  };

  it('a tiny CONFIG.json with an override: a loadable checkpoint with the PRNG values', async () => {
    const dir = tempDir();
    const configPath = join(dir, 'tiny.json');
    writeFileSync(configPath, JSON.stringify(tiny));
    const out = join(dir, 'out');
    const r = await cli(
      'synth',
      configPath,
      '--out',
      out,
      '--override',
      'model.layers.1.mlp.Wo.weight[3]=7.5',
      '--override',
      'head.norm.weight[0]=-1',
      '--json',
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const summary = json(r) as { out: string; tensors: number; bytes: number; parameters: number; seconds: number };
    expect(Object.keys(summary)).toEqual(['out', 'tensors', 'bytes', 'parameters', 'seconds']);
    const ckpt = loadCheckpoint(out);
    try {
      expect(ckpt.config).toEqual(
        parseConfig({ architectures: ['ModernBertForMaskedLM'], model_type: 'modernbert', ...tiny }),
      );
      const recipe = new SynthWeights(ckpt.config).recipe;
      expect(summary.tensors).toBe(recipe.length);
      expect(summary.bytes).toBe(4 * recipe.reduce((s, e) => s + e.shape.reduce((a, b) => a * b, 1), 0));
      for (const e of recipe) {
        const want = synthTensor(e.name, e.shape, e.base, e.amp);
        if (e.name === 'model.layers.1.mlp.Wo.weight') want.fill(7.5, 3 * 48, 4 * 48);
        if (e.name === 'head.norm.weight') want[0] = -1;
        expect(ckpt.weights.get(e.name).data, e.name).toEqual(want);
      }
      expect(ckpt.weights.get('decoder.weight').data).toEqual(
        ckpt.weights.get('model.embeddings.tok_embeddings.weight').data,
      );
    } finally {
      ckpt.close();
    }
    // The synthetic checkpoint runs through verify's loader and inspect.
    const inspect = json(await cli('inspect', '--json', out)) as Record<string, unknown>;
    expect(inspect).toMatchObject({ hidden: 32, layers: 2, heads: 2, tokenizer: false });
    // Writing again needs --force.
    expectOneLineError(await cli('synth', configPath, '--out', out), /already exists/);
    expect((await cli('synth', configPath, '--out', out, '--force')).code).toBe(0);
  });

  it('plain output is one summary line', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'c.json'), JSON.stringify(tiny));
    const r = await cli('synth', join(dir, 'c.json'), '--out', join(dir, 'o'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*o: \d+ tensors, 0\.\d M parameters \(float32\) in \d+\.\d s\n$/);
  });
});

describe('bad input: exit 2, one line on stderr, no stack (the stack with --debug)', () => {
  const broken = (edit: (dir: string) => void): string => {
    const dir = copyFixture('tiny-mlm');
    edit(dir);
    return dir;
  };
  const header = (dir: string) => {
    const buf = readFileSync(join(dir, 'model.safetensors'));
    const n = Number(buf.readBigUInt64LE(0));
    return {
      buf,
      n,
      json: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
        string,
        { dtype: string; shape: number[]; data_offsets: [number, number] }
      >,
    };
  };
  /** Rewrites the weight file's header with `f` applied, keeping the data. */
  const rewrite =
    (f: (h: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>) => void) =>
    (dir: string) => {
      const { buf, n, json: h } = header(dir);
      f(h);
      writeFileSync(join(dir, 'model.safetensors'), rawSafetensors(h, buf.subarray(8 + n)));
    };

  const long = `${'The sky is blue. '.repeat(200)}[MASK]`;
  const cases: Array<[string, () => string[], RegExp]> = [
    [
      'a missing model folder',
      () => ['predict', join(FX, 'no-such-model'), 'x [MASK]'],
      /model folder .*no-such-model does not exist/,
    ],
    [
      'an empty weight file',
      () => ['inspect', broken((d) => writeFileSync(join(d, 'model.safetensors'), ''))],
      /too short to be a safetensors file/,
    ],
    [
      'a folder with only config.json',
      () => {
        const d = tempDir();
        copyFileSync(join(TINY_MLM, 'config.json'), join(d, 'config.json'));
        return ['inspect', d];
      },
      /has no model\.safetensors or model\.safetensors\.index\.json$/m,
    ],
    [
      'pytorch_model.bin only',
      () => {
        const d = tempDir();
        copyFileSync(join(TINY_MLM, 'config.json'), join(d, 'config.json'));
        writeFileSync(join(d, 'pytorch_model.bin'), 'PK');
        return ['inspect', d];
      },
      /pytorch_model\.bin is not supported/,
    ],
    ['a folder without config.json', () => ['inspect', tempDir()], /config\.json does not exist/],
    [
      'a truncated weight file (header length past the end)',
      () => [
        'inspect',
        broken((d) => {
          const { buf } = header(d);
          writeFileSync(join(d, 'model.safetensors'), buf.subarray(0, 300));
        }),
      ],
      /header length \d+ runs past the end of the file \(300 bytes\)/,
    ],
    [
      'a weight file cut inside the data',
      () => [
        'inspect',
        broken((d) => {
          const { buf } = header(d);
          writeFileSync(join(d, 'model.safetensors'), buf.subarray(0, buf.length - 100));
        }),
      ],
      /the tensors cover \d+ bytes of data but the file holds \d+ after the header \(MetadataIncompleteBuffer\)/,
    ],
    [
      'offsets out of range',
      () => [
        'inspect',
        broken(
          rewrite((h) => {
            h['head.norm.weight']!.data_offsets = [0, 1 << 30];
          }),
        ),
      ],
      /data_offsets \[\d+, \d+\] .*\(InvalidOffset\)/,
    ],
    [
      'overlapping tensors',
      () => [
        'inspect',
        broken(
          rewrite((h) => {
            const t = h['head.norm.weight']!;
            const other = h['model.final_norm.weight']!;
            t.data_offsets = [other.data_offsets[0], other.data_offsets[0] + 256];
          }),
        ),
      ],
      /data_offsets \[\d+, \d+\] (overlaps the tensor before it|leaves a gap).*\(InvalidOffset\)/,
    ],
    [
      'an unknown dtype',
      () => [
        'inspect',
        broken(
          rewrite((h) => {
            h['head.norm.weight']!.dtype = 'Q4';
          }),
        ),
      ],
      /"head\.norm\.weight" has unknown dtype "Q4"/,
    ],
    [
      'a shape that does not match the data size',
      () => [
        'inspect',
        broken(
          rewrite((h) => {
            h['head.norm.weight']!.shape = [65];
          }),
        ),
      ],
      /"head\.norm\.weight" has 256 bytes but its shape \[65\] x F32 needs 260/,
    ],
    [
      'config and weights disagreeing on the hidden size',
      () => ['predict', copyFixture('tiny-mlm', (c) => ({ ...c, hidden_size: 32 })), 'x [MASK]'],
      /tok_embeddings\.weight" has shape \[1024, 64\] but the config implies \[1024, 32\]/,
    ],
    [
      'a tensor missing from the weights',
      () => [
        'inspect',
        broken(
          rewrite((h) => {
            delete h['model.layers.1.attn_norm.weight'];
          }),
        ),
      ],
      /leaves a gap \(bytes \d+\.\.\d+ belong to no tensor\) \(InvalidOffset\)/,
    ],
    [
      'an unknown config field',
      () => ['inspect', copyFixture('tiny-mlm', (c) => ({ ...c, use_flash_attention: true }))],
      /unknown field "use_flash_attention"/,
    ],
    [
      'an unsupported activation',
      () => ['inspect', copyFixture('tiny-mlm', (c) => ({ ...c, hidden_activation: 'foo' }))],
      /"hidden_activation" = "foo" is not supported/,
    ],
    [
      'a rope_type it does not implement',
      () => [
        'inspect',
        copyFixture('tiny-mlm', (c) => ({
          ...c,
          rope_parameters: { full_attention: { rope_type: 'yarn', rope_theta: 1 } },
        })),
      ],
      /rope_type "yarn" is not supported/,
    ],
    [
      'text without [MASK] for a masked LM',
      () => ['predict', 'Nothing to fill here.'],
      /the text has no \[MASK\] token to fill/,
    ],
    [
      'text longer than max_position_embeddings',
      () => ['predict', TINY_MLM, long],
      /the text is \d+ tokens long but the model allows at most 512/,
    ],
    ['no text', () => ['predict'], /no text given/],
    ['an unknown flag', () => ['predict', '--bogus', DOOR], /unknown option '--bogus'/],
    [
      'an unknown flag close to a known one (commander suggests on a second line)',
      () => ['predict', '--top', '3', DOOR],
      /unknown option '--top' \(Did you mean --top-k\?\)/,
    ],
    ['an unknown command', () => ['predicts', DOOR], /unknown command 'predicts'/],
    ['a non-numeric --top-k', () => ['predict', '--top-k', 'five', DOOR], /--top-k <n>' argument 'five' is invalid/],
    ['a zero --top-k', () => ['predict', '--top-k', '0', DOOR], /argument '0' is invalid/],
    ['a fractional --top-k', () => ['predict', '-k', '2.5', DOOR], /argument '2\.5' is invalid/],
    [
      'a non-numeric --atol',
      () => ['verify', TINY_MLM, '--golden', join(TINY_MLM, 'golden.safetensors'), '--atol', 'tiny'],
      /--atol <x>' argument 'tiny' is invalid/,
    ],
    [
      'a negative --atol',
      () => ['verify', TINY_MLM, '--golden', join(TINY_MLM, 'golden.safetensors'), '--atol', '-1'],
      /--atol/,
    ],
    ['verify without --golden', () => ['verify', TINY_MLM], /required option '--golden <file>' not specified/],
    [
      'a missing golden file',
      () => ['verify', TINY_MLM, '--golden', join(FX, 'nope.safetensors')],
      /nope\.safetensors does not exist/,
    ],
    ['a golden that is a folder', () => ['verify', TINY_MLM, '--golden', FX], /is a folder, not a regular golden file/],
    [
      'a golden of another model',
      () => ['verify', TINY_MLM, '--golden', join(FX, 'tiny-cls-mean', 'golden.safetensors')],
      /golden case "\w+": hidden_states is \[4, \d+, \d+, 64\], but this model .* need \[5, /,
    ],
    [
      'a golden whose classes disagree with the model',
      () => ['verify', join(FX, 'tiny-token'), '--golden', join(FX, 'tiny-cls-mean', 'golden.safetensors')],
      /3 sequence-classification logits per row, the model's output is \[1, 5, 1, \d+\]/,
    ],
    [
      'synth of an unknown preset',
      () => ['synth', 'huge', '--out', join(tempDir(), 'o')],
      /"huge" is neither a preset/,
    ],
    [
      'synth with a malformed override',
      () => ['synth', 'base', '--out', join(tempDir(), 'o'), '--override', 'w[1]'],
      /override "w\[1\]": cannot parse it/,
    ],
    [
      'synth with an override outside the tensor',
      () => {
        const d = tempDir();
        writeTinySynthConfig(d);
        return ['synth', join(d, 'c.json'), '--out', join(d, 'o'), '--override', 'model.final_norm.weight[32]=1'];
      },
      /index 32 is outside dimension 0 of size 32/,
    ],
    [
      'synth --out naming a file',
      () => {
        const d = tempDir();
        writeFileSync(join(d, 'file'), '');
        return ['synth', 'base', '--out', join(d, 'file')];
      },
      /--out .*file is a file, not a folder/,
    ],
    [
      'synth --out under a file',
      () => {
        const d = tempDir();
        writeTinySynthConfig(d);
        writeFileSync(join(d, 'file'), '');
        return ['synth', join(d, 'c.json'), '--out', join(d, 'file', 'sub')];
      },
      /cannot write .*file\/sub: a part of the path is a file, not a folder \(ENOTDIR\)/,
    ],
    ['too many arguments', () => ['inspect', TINY_MLM, 'extra'], /too many arguments for 'inspect'/],
  ];

  for (const [what, argv, pattern] of cases) {
    it(what, async () => {
      const args = argv();
      expectOneLineError(await cli(...args), pattern);
    });
  }

  it('with --debug a library error also prints its stack (before or after the command)', async () => {
    for (const argv of [
      ['--debug', 'predict', join(FX, 'no-such-model'), 'x [MASK]'],
      ['inspect', copyFixture('tiny-mlm', (c) => ({ ...c, hidden_activation: 'foo' })), '--debug'],
    ]) {
      const r = await cli(...argv);
      expect(r.code).toBe(2);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^error: /);
      expect(lines.length).toBeGreaterThan(2);
      expect(lines[1]).toMatch(/^ModernBertError: /);
      expect(lines.slice(2).every((l) => /^\s+at /.test(l))).toBe(true);
    }
  });
});

describe('the installed executable (bin/modernbert-ane.js, built by npm test)', () => {
  // MODERNBERT_ANE_TEST_BIN points at another build when dist/ cannot be rebuilt in place.
  const bin = process.env['MODERNBERT_ANE_TEST_BIN'] ?? join(ROOT, 'bin', 'modernbert-ane.js');
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [bin, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });

  it('is built (run `npm run build`, as `npm test` does, before this test)', () => {
    expect(existsSync(bin), `${bin} missing`).toBe(true);
    if (bin.endsWith(join('bin', 'modernbert-ane.js')))
      expect(existsSync(join(ROOT, 'dist', 'cli', 'main.js')), 'dist/ is not built: run npm run build').toBe(true);
  });

  it('exits 0 with "door" on the default model', () => {
    const r = run('predict', DOOR, '--json');
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as Array<{ token_str: string }>)[0]!.token_str).toBe(' door');
  });

  it('exits 2 with one line and no stack on bad input; with --debug, the stack', () => {
    for (const args of [
      ['predict', join(FX, 'no-such-model'), 'x [MASK]'],
      ['predict', 'no mask here'],
      ['predict', '--top-k', 'x', DOOR],
    ]) {
      const r = run(...args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(/^error: /);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
    const debug = run('--debug', 'predict', join(FX, 'no-such-model'), 'x [MASK]');
    expect(debug.status).toBe(2);
    expect(debug.stderr).toMatch(/^\s+at /m);
  });

  it('exits 1 when verify fails', () => {
    const r = run('verify', TINY_MLM, '--golden', join(TINY_MLM, 'golden.safetensors'), '--atol', '1e-9');
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('FAIL');
  });
});
