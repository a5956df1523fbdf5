// Conversion of synth-base (150M parameters) and synth-large (396M) from disk into .mlpackage: seconds split
// into reading the checkpoint, transforming (folding, rotating), and encoding + writing; peak RSS against the
// float32 checkpoint size; with and without the fidelity report. Run after a build:
//
//   npm run build && node bench/convert.mjs [--models base,large] [--dir DIR] [--rotation none|hadamard]
//     [--compress fp16,pal4,int8,...] [--target iOS17|iOS18] [--fidelity both|no|yes]
//
// --compress lists weight forms (fp16: uncompressed; else a `convert --compress` mode, 'pal4g' for pal4 with
// --group-size 16); each is converted with and/or without the report as --fidelity says (default: both for
// fp16 alone, else without: the report's time does not depend on the form).
// Each conversion runs in a fresh child process (`node bin/modernbert-ane.js convert ... --json`), whose peak
// RSS is read from its own resource usage, so one measurement does not inherit another's memory. Without
// --dir the synthetic checkpoints are written to a temporary folder first (and removed after).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'base,large' },
    dir: { type: 'string' },
    rotation: { type: 'string', default: 'none' },
    compress: { type: 'string', default: 'fp16' },
    target: { type: 'string', default: 'iOS17' },
    fidelity: { type: 'string' },
  },
});
const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'bin', 'modernbert-ane.js');
const work = values.dir ?? mkdtempSync(join(tmpdir(), 'mba-bench-convert-'));

/** Runs the CLI in a child that reports its own peak RSS (kB) on stderr after the command. */
function run(args) {
  // A script file, not --eval: worker threads inherit the parent's exec flags.
  const wrapper = join(work, 'run-cli.mjs');
  writeFileSync(
    wrapper,
    `const { main } = await import(${JSON.stringify(pathToFileURL(join(root, 'dist', 'cli', 'main.js')).href)});
const code = await main(process.argv.slice(2));
const u = process.resourceUsage();
process.stderr.write('MAXRSS ' + u.maxRSS + ' CPU ' + (u.userCPUTime + u.systemCPUTime) + '\\n');
process.exit(code);
`,
  );
  const r = spawnSync(process.execPath, [wrapper, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`convert failed (${r.status}): ${r.stderr}`);
  const [, rss, cpu] = /MAXRSS (\d+) CPU (\d+)/.exec(r.stderr);
  // CPU seconds of the process and its worker threads: steadier than wall time on a shared machine.
  return { out: JSON.parse(r.stdout), maxRss: Number(rss) * 1024, cpu: Number(cpu) / 1e6 };
}

const rows = [];
try {
  for (const model of values.models.split(',')) {
    const dir = join(work, `synth-${model}`);
    try {
      statSync(join(dir, 'model.safetensors'));
    } catch {
      const s = spawnSync(process.execPath, [cli, 'synth', model, '--out', dir], { encoding: 'utf8' });
      if (s.status !== 0) throw new Error(s.stderr);
    }
    const bytes = statSync(join(dir, 'model.safetensors')).size;
    const forms = values.compress.split(',');
    const reports = { both: [false, true], no: [false], yes: [true] }[
      values.fidelity ?? (forms.length === 1 && forms[0] === 'fp16' ? 'both' : 'no')
    ];
    for (const form of forms) {
      const compress =
        form === 'fp16' ? [] : form === 'pal4g' ? ['--compress', 'pal4', '--group-size', '16'] : ['--compress', form];
      for (const fidelity of reports) {
        const pkg = join(work, `synth-${model}-${form}-${fidelity}.mlpackage`);
        const args = [
          'convert',
          dir,
          '--out',
          pkg,
          '--force',
          '--rotation',
          values.rotation,
          '--target',
          values.target,
          ...compress,
          '--json',
          ...(fidelity ? [] : ['--no-fidelity']),
        ];
        const { out, maxRss, cpu } = run(args);
        rmSync(pkg, { recursive: true, force: true });
        const s = out.seconds;
        rows.push({
          model,
          form,
          report: fidelity,
          ...s,
          cpu,
          mb: out.stats.bytesWritten / 1e6,
          ratio: maxRss / bytes,
          rss: maxRss / 1e6,
          kl: out.fidelity?.kl,
        });
      }
    }
  }
} finally {
  if (!values.dir) rmSync(work, { recursive: true, force: true });
}

const f = (x, d = 1) => x.toFixed(d);
console.log(
  `convert --rotation ${values.rotation} --target ${values.target}, ${cpus().length} cores (${cpus()[0].model}), Node ${process.version}, load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
console.log(
  '| model | weights | fidelity report | read s | transform s | encode+write s | fidelity s | total s | CPU s | package MB | peak RSS MB | RSS / float32 checkpoint |',
);
console.log('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(
    `| synth-${r.model} | ${r.form} | ${r.report ? 'yes' : 'no'} | ${f(r.read)} | ${f(r.transform)} | ${f(r.write)} | ${f(r.fidelity)} | ${f(r.total)} | ${f(r.cpu)} | ${f(r.mb, 0)} | ${f(r.rss, 0)} | ${f(r.ratio, 2)}x |`,
  );
}
