// Compressed weights against rotations, behind docs/FIDELITY.md's "Compressed weights" table: for each model,
// each rotation and each weight form, `convert --json` (in this process, through the built CLI) and its
// fidelity report (KL against the float32 checkpoint, top-1) and package size. Run after a build:
//
//   npm run build && node bench/compress.mjs --model DIR [--rotations none,hadamard,learned]
//     [--forms fp16,int8,pal8,pal6,pal4,pal4g,int4] [--seq-len 64] [--random 64] [--learn-seconds 10]
//
// Forms pal4g (pal4 with one table per 16 output channels) and int4 (blocks of 32) are iOS 18 forms, so every
// form converts at --target iOS18; 'fp16' is the uncompressed package.

import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    rotations: { type: 'string', default: 'none,hadamard' },
    forms: { type: 'string', default: 'fp16,int8,pal8,pal6,pal4,pal4g,int4' },
    'seq-len': { type: 'string', default: '64' },
    random: { type: 'string', default: '64' },
    'learn-seconds': { type: 'string', default: '10' },
  },
});
if (!values.model) throw new Error('--model DIR is required');
const root = fileURLToPath(new URL('..', import.meta.url));
const { main } = await import(pathToFileURL(join(root, 'dist', 'cli', 'main.js')).href);
const work = mkdtempSync(join(tmpdir(), 'mba-bench-compress-'));

async function convert(args) {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), isTTY: false });
  if (code !== 0) throw new Error(`convert ${args.join(' ')} failed (${code}): ${stderr}`);
  return JSON.parse(stdout);
}

const rows = [];
try {
  for (const rotation of values.rotations.split(',')) {
    for (const form of values.forms.split(',')) {
      const compress =
        form === 'fp16' ? [] : form === 'pal4g' ? ['--compress', 'pal4', '--group-size', '16'] : ['--compress', form];
      const pkg = join(work, `${rotation}-${form}.mlpackage`);
      const t0 = performance.now();
      const out = await convert([
        'convert',
        values.model,
        '--out',
        pkg,
        '--force',
        '--target',
        'iOS18',
        '--rotation',
        rotation,
        '--seq-len',
        values['seq-len'],
        '--random',
        values.random,
        ...(rotation === 'learned' ? ['--learn-seconds', values['learn-seconds']] : []),
        ...compress,
        '--json',
      ]);
      rmSync(pkg, { recursive: true, force: true });
      rows.push({
        rotation: rotation === 'none' ? 'folded' : rotation,
        form,
        kl: out.fidelity.kl,
        top1: out.fidelity.top1,
        mb: out.stats.bytesWritten / 1e6,
        tokens: out.fidelity.tokens,
        inputs: out.fidelity.inputs,
        s: (performance.now() - t0) / 1000,
      });
      process.stderr.write(
        `${rotation} ${form}: KL ${out.fidelity.kl.toExponential(2)} (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`,
      );
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

console.log(
  `${basename(values.model)}: ${rows[0]?.tokens} tokens of ${rows[0]?.inputs}, fp16 emulation, --seq-len ${values['seq-len']}, target iOS18; ${cpus().length} cores, load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
console.log('| rotation | weights | KL | top-1 | package MB |');
console.log('| --- | --- | ---: | ---: | ---: |');
for (const r of rows)
  console.log(
    `| ${r.rotation} | ${r.form} | ${r.kl.toExponential(2)} | ${(100 * r.top1).toFixed(1)}% | ${r.mb.toFixed(2)} |`,
  );
