// The command line's rough edges, found by trying every README command (issue 20): each as it was fixed.

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, expectOneLineError, json } from './helpers/cli.js';
import { cleanupTempDirs, FX, ROOT, tempDir } from './helpers/fixtures.js';

afterAll(cleanupTempDirs);

const MINI = join(ROOT, 'models', 'mini-trained');
const TINY = join(FX, 'tiny-mlm');
let dir = '';

beforeAll(() => {
  dir = tempDir('mbane-edges-');
});

describe('convert and the tokenizer', () => {
  it('stores the tokenizer by default, so the package predicts on its own; --no-tokenizer leaves it out', async () => {
    const pkg = join(dir, 'tok.mlpackage');
    expect((await cli('convert', TINY, '--out', pkg, '--seq-len', '16', '--no-fidelity')).code).toBe(0);
    expect(existsSync(join(pkg, 'Data', 'com.github.modernbert-ane', 'tokenizer', 'tokenizer.json'))).toBe(true);
    const p = await cli('predict', pkg, 'The sky is [MASK].', '--json');
    expect(p.code, p.stderr).toBe(0);
    const bare = join(dir, 'bare.mlpackage');
    expect((await cli('convert', TINY, '--out', bare, '--seq-len', '16', '--no-fidelity', '--no-tokenizer')).code).toBe(
      0,
    );
    expect(existsSync(join(bare, 'Data', 'com.github.modernbert-ane'))).toBe(false);
    expectOneLineError(
      await cli('predict', bare, 'The sky is [MASK].'),
      /has no tokenizer\.json, which predict needs: give --tokenizer/,
    );
    // --tokenizer takes the file itself, or its folder.
    for (const t of [join(TINY, 'tokenizer.json'), TINY]) {
      const r = await cli('predict', bare, 'The sky is [MASK].', '--tokenizer', t, '--json');
      expect(r.code, r.stderr).toBe(0);
      expect(json(r)).toEqual(json(p));
    }
    // A checkpoint without a tokenizer converts by default; asking for one is an error naming the flag.
    const synth = join(dir, 'synth-ckpt');
    writeFileSync(
      join(dir, 'c.json'),
      JSON.stringify({
        hidden_size: 64,
        num_attention_heads: 4,
        num_hidden_layers: 1,
        vocab_size: 64,
        intermediate_size: 96,
        pad_token_id: 0,
        cls_token_id: 1,
        sep_token_id: 2,
        bos_token_id: 1,
        eos_token_id: 2,
      }),
    );
    expect((await cli('synth', join(dir, 'c.json'), '--out', synth)).code).toBe(0);
    expect(
      (await cli('convert', synth, '--out', join(dir, 's.mlpackage'), '--seq-len', '16', '--no-fidelity')).code,
    ).toBe(0);
    expectOneLineError(
      await cli(
        'convert',
        synth,
        '--out',
        join(dir, 's2.mlpackage'),
        '--seq-len',
        '16',
        '--no-fidelity',
        '--tokenizer',
      ),
      /--tokenizer: .* has no tokenizer\.json/,
    );
  });

  it('a body package of --split names --head-package as the remedy, and --embed runs it', async () => {
    const body = join(dir, 'body.mlpackage');
    expect((await cli('convert', TINY, '--out', body, '--seq-len', '16', '--no-fidelity', '--split')).code).toBe(0);
    expectOneLineError(
      await cli('predict', body, 'The sky is [MASK].'),
      /is the body package of convert --split\): give one of its head packages with --head-package PATH, or --embed/,
    );
    const e = await cli('predict', body, 'The sky is [MASK].', '--embed', '--json');
    expect(e.code, e.stderr).toBe(0);
    expect(json(e)).toHaveLength(64);
    const head = await cli(
      'predict',
      body,
      'The sky is [MASK].',
      '--head-package',
      join(dir, 'body-mlm.mlpackage'),
      '--json',
    );
    expect(head.code, head.stderr).toBe(0);
  });

  it("the README's package tolerances hold on the built-in model's package: 1e-2 (float16 weights), 5e-2 with --precision fp16", async () => {
    const pkg = join(dir, 'mini.mlpackage');
    expect((await cli('convert', MINI, '--out', pkg, '--no-fidelity')).code).toBe(0);
    const golden = join(FX, 'mini-trained', 'golden.safetensors');
    const weights = await cli('verify', pkg, '--golden', golden, '--atol', '1e-2', '--runtime', 'engine', '--json');
    expect(weights.code, weights.stdout).toBe(0);
    const fp16 = await cli('verify', pkg, '--golden', golden, '--precision', 'fp16', '--atol', '5e-2', '--json');
    expect(fp16.code, fp16.stdout).toBe(0);
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain('--golden golden.safetensors --precision fp16 --atol 5e-2');
    expect(readme).not.toMatch(/--precision fp16 --atol 1e-2/);
  }, 120_000);
});

describe('embed --out', () => {
  it('refuses an extension it does not write (.csv) before any work, writing nothing', async () => {
    const input = join(dir, 'in.txt');
    writeFileSync(input, 'one\ntwo\n');
    const out = join(dir, 'embed-out');
    spawnSync('mkdir', ['-p', out]);
    for (const name of ['e.csv', 'e.json', 'embeddings']) {
      expectOneLineError(
        await cli('embed', MINI, '--input', input, '--out', join(out, name)),
        /--out .*: embeddings are written as \.jsonl, \.npy or \.safetensors/,
      );
    }
    expectOneLineError(
      await cli('embed', MINI, '--input', join(dir, 'missing.txt'), '--out', join(out, 'e.csv')),
      /\.csv is none of them/,
    );
    expect(readdirSync(out)).toEqual([]);
  });
});

describe('help and usage', () => {
  it('convert --help names each default once', async () => {
    const help = (await cli('convert', '--help')).stdout;
    // One entry per option: its line and the indented lines that continue it.
    const entries = help.split(/\n(?= {2}-)/).filter((e) => e.trimStart().startsWith('-'));
    expect(entries.length).toBeGreaterThan(20);
    for (const e of entries) expect(e.match(/default/g)?.length ?? 0, e).toBeLessThanOrEqual(1);
    expect(help).toMatch(
      /--seq-len <n\[,n\.\.\.\]>\s+sequence length, or several for enumerated shapes\s+\(default 512/,
    );
  });

  it("a mistyped flag suggests '--' only where a text is taken, naming the command", async () => {
    const convert = await cli('convert', TINY, '--out', join(dir, 'x.mlpackage'), '--rotaton', 'none');
    expectOneLineError(convert, /unknown option '--rotaton'/);
    expect(convert.stderr).not.toContain('goes after --');
    expectOneLineError(
      await cli('diff', TINY, TINY, '-x'),
      /unknown option '-x' \(a text that starts with '-' goes after --, e\.g\. diff -- "-x"\)/,
    );
    expectOneLineError(await cli('predict', '-5 degrees is [MASK].'), /e\.g\. predict -- "-5 degrees is \[MASK\]\."/);
  });
});

describe('inspect', () => {
  it("shows a package's head once and its fidelity report in words, not JSON", async () => {
    const pkg = join(dir, 'fid.mlpackage');
    expect((await cli('convert', TINY, '--out', pkg, '--seq-len', '16')).code).toBe(0);
    const r = await cli('inspect', pkg);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.match(/^head +/gm)).toHaveLength(1);
    expect(r.stdout).toMatch(
      /^fidelity +of the mlm output \(fp16 emulation vs float32, \d+ tokens of built-in sentences\): KL \d\.\d\de-\d+, top-1 [\d.]+%/m,
    );
    expect(r.stdout).not.toMatch(/\{"/);
    // --json keeps every metadata entry as stored.
    expect(
      JSON.parse((json(await cli('inspect', pkg, '--json')) as { metadata: { fidelity: string } }).metadata.fidelity),
    ).toHaveProperty('kl');
  });
});

describe('outliers --plot', () => {
  it("titles the chart with the model's name, not a path of this machine, and draws float16's limit", async () => {
    const svg = join(dir, 'o.svg');
    const r = await cli('outliers', TINY, 'The sky is blue.', '--plot', svg);
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(svg, 'utf8');
    expect(text).toContain('Residual stream outliers: tiny-mlm</text>');
    expect(text).not.toContain(dir);
    expect(text).toContain("float16's largest value, 65,504");
    expect(text).toMatch(/stroke-dasharray/);
  });
});

describe('progress bars and signals', () => {
  it('an interrupted bar shows the cursor again, and the signal still ends the process', () => {
    const script = `
      import { progress } from ${JSON.stringify(join(ROOT, 'dist', 'cli', 'context.js'))};
      const bar = progress({ stdout: () => {}, stderr: () => {}, isTTY: true }, 'work', false);
      bar.update(1, 10);
      process.kill(process.pid, 'SIGINT');
      setTimeout(() => process.exit(0), 2000);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.signal).toBe('SIGINT');
    expect(r.stderr).toContain('\u001b[?25h');
  });
});

describe('synth small', () => {
  it('writes a few-layer ModernBERT with the released vocabulary and attention pattern', async () => {
    const out = join(dir, 'small');
    const r = await cli('synth', 'small', '--out', out, '--json');
    expect(r.code, r.stderr).toBe(0);
    const info = json(await cli('inspect', out, '--json')) as {
      hidden: number;
      layers: number;
      vocab: number;
      layer_kinds: string;
      parameters: number;
    };
    expect(info).toMatchObject({ hidden: 256, layers: 4, vocab: 50368, layer_kinds: 'GLLG' });
    expect(info.parameters).toBeLessThan(20e6);
  });
});
