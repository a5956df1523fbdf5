// What a user waits for: wall time, CPU seconds and peak RSS of whole commands, each in a fresh process, on
// our engine (--runtime engine), onnxruntime (--runtime ort) and the default (the runtime the command picks
// for its work, runtime-cost.ts), interleaved so that the machine's load falls on all three alike. Then
// `embed` against the way sentence-transformers encodes a list on onnxruntime-node (texts sorted by length,
// batches of 32 padded to the longest, a plain export with a batch axis: bench/plain-modernbert.mjs), on
// short texts (5-60 tokens) and long ones (100-500). Run after a build:
//
//   npm run build && node bench/commands.mjs [--dir DIR] [--runs 2] [--only predict,verify,embed,convert,st] [--write-docs]
//
// --write-docs puts the tables, the goals and the machine's load (with the date, the machine and this command)
// into docs/PERFORMANCE.md between the markers `<!-- bench/commands.mjs -->` and `<!-- end bench/commands.mjs -->`,
// replacing what an earlier run put there; without it, the same Markdown goes to stdout only.
//
// DIR: synth-base (ModernBERT-base's shape, 599 MB of float32 weights) with the fixture tokenizer; written
// there with `synth base` when it holds no checkpoint (default: a temporary folder, removed after). Each
// command runs --runs times per runtime; run 1 is the first call (our engine and onnxruntime keep no model
// cache: onnxruntime reads the checkpoint's weights in place, so later runs differ only by the operating
// system's page cache, which a run cannot empty without root), the others are repeats. Peak RSS is the
// child's maximum resident set (/usr/bin/time's %M). The goals of the command-level issue are printed
// under the tables, with the load average.

import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'modernbert-ane.js');
const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    runs: { type: 'string', default: '2' },
    only: { type: 'string' },
    st: { type: 'string' }, // child mode: embed FILE the sentence-transformers way, write OUT
    out: { type: 'string' },
    short: { type: 'string', default: '300' },
    long: { type: 'string', default: '100' },
    'write-docs': { type: 'boolean', default: false },
  },
});

if (values.st !== undefined) {
  await sentenceTransformersChild(values.dir, values.st, values.out);
  process.exit(0);
}

const RUNTIMES = ['default', 'engine', 'ort'];
const only = values.only?.split(',');
const want = (k) => !only || only.includes(k);
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), 'mbane-bench-commands-'));
let dir = values.dir ?? join(work, 'synth-base');
const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
// The section of docs/PERFORMANCE.md that --write-docs replaces (above the code that runs, for the module's top-level await).
const BEGIN = '<!-- bench/commands.mjs -->';
const END = '<!-- end bench/commands.mjs -->';
/** The report, as Markdown: printed as it comes, and written into the docs with --write-docs. */
const report = [];
const say = (line = '') => {
  console.log(line);
  report.push(line);
};

try {
  if (!existsSync(join(dir, 'model.safetensors'))) {
    mkdirSync(dir, { recursive: true });
    execFileSync(process.execPath, [BIN, 'synth', 'base', '--out', dir, '--force'], { stdio: 'inherit' });
  }
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    if (!existsSync(join(dir, f))) copyFileSync(join(ROOT, 'test', 'fixtures', 'tokenizer', f), join(dir, f));
  const golden = join(ROOT, 'test', 'fixtures', 'synth-base', 'golden.safetensors');
  const short = join(work, 'short.txt');
  const long = join(work, 'long.txt');
  const shortInfo = await writeTexts(dir, short, Number(values.short), 5, 60, 9);
  const longInfo = await writeTexts(dir, long, Number(values.long), 100, 500, 10);
  const startLoad = load();
  const argv = process.argv.slice(2).filter((a) => a !== '--write-docs');
  say(
    `\`node bench/commands.mjs${argv.length ? ` ${argv.join(' ')}` : ''}\`, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC: synth-base (${dir === values.dir ? dir : 'a temporary folder'}); ${cpus()[0]?.model ?? 'cpu'}, ${cpus().length} cores, Node ${process.version}; load average (1, 5, 15 min) ${startLoad} at the start.`,
  );
  say(`Texts: ${shortInfo}; ${longInfo}.`);
  say();

  const out = (name) => join(work, name);
  const commands = [
    want('predict') && {
      name: 'predict one short text',
      args: ['predict', dir, 'The capital of France is [MASK].', '--json'],
    },
    want('verify') && {
      name: 'verify golden (9, 300, 1,024 tokens)',
      args: ['verify', dir, '--golden', golden, '--json'],
    },
    want('embed') && {
      name: `embed ${Number(values.short)} texts of 5-60 tokens`,
      args: ['embed', dir, '--input', short, '--out', out('e.npy'), '--json'],
      clean: out('e.npy'),
    },
    want('convert') && {
      name: 'convert (fidelity report)',
      args: ['convert', dir, '--out', out('c.mlpackage'), '--json'],
      clean: out('c.mlpackage'),
    },
    want('convert') && {
      name: 'convert --no-fidelity',
      args: ['convert', dir, '--out', out('n.mlpackage'), '--no-fidelity', '--json'],
      clean: out('n.mlpackage'),
      runtimes: ['default'],
    },
  ].filter(Boolean);

  const results = new Map(); // `${command}|${runtime}` -> [{ wall, cpu, rss, load }]
  for (let r = 0; r < runs; r++) {
    for (const c of commands) {
      for (const rt of c.runtimes ?? RUNTIMES) {
        if (c.clean) rmSync(c.clean, { recursive: true, force: true });
        const m = timed([BIN, ...c.args, ...(rt === 'default' ? [] : ['--runtime', rt])]);
        const key = `${c.name}|${rt}`;
        results.set(key, [...(results.get(key) ?? []), m]);
        process.stderr.write(
          `run ${r + 1}/${runs} ${c.name} [${rt}]: ${m.wall.toFixed(2)} s, ${m.cpu.toFixed(2)} CPU s, ${m.rss} MB (load ${m.load})\n`,
        );
      }
    }
  }
  if (commands.length > 0) printCommands(commands, results);

  if (want('st')) await embedAgainstSentenceTransformers(dir, short, long, work, runs);
  say();
  say(`Load average (1, 5, 15 min) ${startLoad} at the start, ${load()} at the end.`);
  if (values['write-docs']) writeDocs(report);
} finally {
  rmSync(work, { recursive: true, force: true });
}

// ---- measuring one command -------------------------------------------------------------------------------

/** Runs node with args under /usr/bin/time: wall seconds, CPU seconds (user + system), peak RSS (MB). */
function timed(args) {
  const stats = join(work, 'time.txt');
  const t0 = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S %M', '-o', stats, process.execPath, ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${args.slice(1, 3).join(' ')} failed (${r.status}): ${r.stderr}`);
  const [user, sys, kb] = readFileSync(stats, 'utf8').trim().split('\n').at(-1).split(' ').map(Number);
  return { wall, cpu: user + sys, rss: Math.round(kb / 1024), load: loadavg()[0].toFixed(1), stdout: r.stdout };
}

function median(xs) {
  return [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
}

function printCommands(commands, results) {
  say(
    '| command | runtime | first call: wall s | peak RSS MB | repeats: wall s (median) | peak RSS MB | CPU s (median) | 1-min load during the runs |',
  );
  say('| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const c of commands) {
    for (const rt of c.runtimes ?? RUNTIMES) {
      const ms = results.get(`${c.name}|${rt}`);
      const rest = ms.length > 1 ? ms.slice(1) : ms;
      say(
        `| ${c.name} | ${rt} | ${ms[0].wall.toFixed(2)} | ${ms[0].rss} | ${median(rest.map((m) => m.wall)).toFixed(2)} | ${Math.max(...rest.map((m) => m.rss))} | ${median(ms.map((m) => m.cpu)).toFixed(2)} | ${ms.map((m) => m.load).join(', ')} |`,
      );
    }
  }
  say();
  say('Goals (medians over every run, first calls included; wall time and peak RSS):');
  say();
  const med = (key, f) => median(results.get(key).map(f));
  for (const c of commands.filter((x) => !x.runtimes)) {
    const wall = Object.fromEntries(RUNTIMES.map((rt) => [rt, med(`${c.name}|${rt}`, (m) => m.wall)]));
    const rss = Object.fromEntries(RUNTIMES.map((rt) => [rt, med(`${c.name}|${rt}`, (m) => m.rss)]));
    const fast = Math.min(wall.engine, wall.ort);
    const small = Math.min(rss.engine, rss.ort);
    const ok = (b) => (b ? 'met' : 'NOT met');
    const cpu = Object.fromEntries(RUNTIMES.map((rt) => [rt, med(`${c.name}|${rt}`, (m) => m.cpu)]));
    say(
      `- ${c.name}: default ${wall.default.toFixed(2)} s = ${(wall.default / fast).toFixed(2)}x the faster runtime (goal <= 1.15: ${ok(wall.default <= 1.15 * fast)}); peak RSS ${rss.default} MB = ${(rss.default / small).toFixed(2)}x the smaller (goal <= 1.3: ${ok(rss.default <= 1.3 * small)}); CPU seconds ${(cpu.default / Math.min(cpu.engine, cpu.ort)).toFixed(2)}x the lower (steadier than wall time on a busy machine)`,
    );
  }
  const predict = results.get('predict one short text|default');
  if (predict)
    say(
      `- predict of one short text, first call: ${predict[0].wall.toFixed(2)} s (goal <= 1.5 s: ${predict[0].wall <= 1.5 ? 'met' : 'NOT met'})`,
    );
  const withF = results.get('convert (fidelity report)|default');
  const without = results.get('convert --no-fidelity|default');
  if (withF && without) {
    const ratio = median(withF.map((m) => m.wall)) / median(without.map((m) => m.wall));
    const cpuRatio = median(withF.map((m) => m.cpu)) / median(without.map((m) => m.cpu));
    say(
      `- convert with the fidelity report: ${ratio.toFixed(2)}x convert --no-fidelity (goal <= 2: ${ratio <= 2 ? 'met' : 'NOT met'}); CPU seconds ${cpuRatio.toFixed(2)}x`,
    );
  }
}

// ---- the texts ---------------------------------------------------------------------------------------------

/** Writes n texts of lo..hi tokens (the fixture tokenizer's) made of seeded random words; returns a summary. */
async function writeTexts(model, file, n, lo, hi, seed) {
  const { loadTokenizer } = await import('../dist/tokenizer/tokenizer.js');
  const { splitmix32 } = await import('../dist/numeric/prng.js');
  const tok = await loadTokenizer(model);
  const next = splitmix32(seed);
  const letters = 'etaoinshrdlucmfwypvbgkjqxz';
  const word = () => Array.from({ length: 2 + (next() % 7) }, () => letters[next() % 26]).join('');
  const lines = [];
  let tokens = 0;
  while (lines.length < n) {
    const target = lo + (next() % (hi - lo + 1));
    let text = word();
    // Words are added while the text stays within its target length (one encode per word).
    for (let w = word(); tok.encode(`${text} ${w}`).ids.length <= target; w = word()) text += ` ${w}`;
    const len = tok.encode(text).ids.length;
    if (len < lo) continue;
    lines.push(text);
    tokens += len;
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
  return `${n} texts of ${lo}-${hi} tokens (${(tokens / n).toFixed(1)} on average)`;
}

// ---- embed against the sentence-transformers way ----------------------------------------------------------

async function embedAgainstSentenceTransformers(model, short, long, work, runs) {
  const { readFileSync: read } = await import('node:fs');
  const npy = (file) => {
    const b = read(file);
    const headerLen = b.readUInt16LE(8);
    return new Float32Array(b.buffer.slice(b.byteOffset + 10 + headerLen, b.byteOffset + b.length));
  };
  const sets = [
    ['short (5-60 tokens)', short],
    ['long (100-500 tokens)', long],
  ];
  const rows = [];
  for (let r = 0; r < runs; r++) {
    for (const [label, file] of sets) {
      const n = read(file, 'utf8').split('\n').filter(Boolean).length;
      const stOut = join(work, 'st.npy');
      const st = timed([fileURLToPath(import.meta.url), '--st', file, '--dir', model, '--out', stOut]);
      const stStats = JSON.parse(st.stdout);
      for (const rt of ['default', 'ort']) {
        const ourOut = join(work, `ours-${rt}.npy`);
        rmSync(ourOut, { force: true });
        const ours = timed([
          BIN,
          'embed',
          model,
          '--input',
          file,
          '--out',
          ourOut,
          '--json',
          ...(rt === 'default' ? [] : ['--runtime', rt]),
        ]);
        const stats = JSON.parse(ours.stdout);
        const [a, b] = [npy(stOut), npy(ourOut)];
        let diff = 0;
        for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
        rows.push({ label, rt, run: r + 1, n, st, stStats, ours, stats, diff });
        process.stderr.write(
          `run ${r + 1}/${runs} embed ${label} [${rt}]: ours ${ours.wall.toFixed(1)} s, sorted batches ${st.wall.toFixed(1)} s\n`,
        );
      }
    }
  }
  say();
  say(
    "`embed` against sentence-transformers' way (sorted by length, batches of 32 padded to the longest, plain export with a batch axis, onnxruntime-node, 2 intra-op threads):",
  );
  say();
  say(
    '| texts | run | ours: runtime, strategy | ours: texts/s (whole command) | texts/s (encoding) | peak RSS MB | sorted batches: texts/s (whole) | texts/s (encoding) | peak RSS MB | fill: ours / batches | ours / batches (whole) | ours / batches (encoding) | max abs diff | 1-min load |',
  );
  say('| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |');
  const ratio = (x) => ({ whole: x.st.wall / x.ours.wall, enc: x.stStats.seconds / x.stats.seconds });
  for (const x of rows) {
    const r = ratio(x);
    const rate = (seconds) => (x.n / seconds).toPrecision(3);
    say(
      `| ${x.label} | ${x.run} | ${x.rt}, ${x.stats.strategy} | ${rate(x.ours.wall)} | ${rate(x.stats.seconds)} | ${x.ours.rss} | ${rate(x.st.wall)} | ${rate(x.stStats.seconds)} | ${x.st.rss} | ${(100 * x.stats.fill).toFixed(0)}% / ${(100 * x.stStats.fill).toFixed(0)}% | ${r.whole.toFixed(2)}x | ${r.enc.toFixed(2)}x | ${x.diff.toExponential(1)} | ${x.ours.load} |`,
    );
  }
  say();
  say('Goals (the default runtime; medians over the runs; ours / sorted batches in texts per second):');
  say();
  for (const [label, goal, want] of [
    ['short (5-60 tokens)', 2, 'at least 2x'],
    ['long (100-500 tokens)', 1, 'at least 1x'],
  ]) {
    const mine = rows.filter((x) => x.label === label && x.rt === 'default');
    if (mine.length === 0) continue;
    const [whole, enc] = [median(mine.map((x) => ratio(x).whole)), median(mine.map((x) => ratio(x).enc))];
    say(
      `- embed ${label}: ${whole.toFixed(2)}x whole command, ${enc.toFixed(2)}x encoding alone (goal ${want}: ${whole >= goal ? 'met' : 'NOT met'} for the command, ${enc >= goal ? 'met' : 'NOT met'} for the encoding); strategy ${[...new Set(mine.map((x) => x.stats.strategy))].join(', ')}`,
    );
  }
}

/** Replaces the text between the markers in docs/PERFORMANCE.md with the report (fails if they are absent). */
function writeDocs(lines) {
  const file = join(ROOT, 'docs', 'PERFORMANCE.md');
  const text = readFileSync(file, 'utf8');
  const [a, b] = [text.indexOf(BEGIN), text.indexOf(END)];
  if (a < 0 || b < a) throw new Error(`docs/PERFORMANCE.md has no ${BEGIN} ... ${END} section`);
  writeFileSync(file, `${text.slice(0, a + BEGIN.length)}\n${lines.join('\n')}\n${text.slice(b)}`);
  console.error(`wrote the report into ${file}`);
}

/** Child: embeds FILE's texts the sentence-transformers way; writes OUT (.npy) and prints its encoding stats. */
async function sentenceTransformersChild(model, file, out) {
  const { loadCheckpoint } = await import('../dist/model/checkpoint.js');
  const { loadTokenizer } = await import('../dist/tokenizer/tokenizer.js');
  const { kernelThreads } = await import('../dist/runtime/kernels/gemm.js');
  const { npyBytes } = await import('../dist/io/npy.js');
  const { plainModel, embedSortedBatches } = await import('./plain-modernbert.mjs');
  const ort = (await import('onnxruntime-node')).default;
  const ckpt = loadCheckpoint(model);
  const tok = await loadTokenizer(model);
  const texts = readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((t) => tok.encode(t).ids);
  const maxLen = Math.max(...texts.map((t) => t.length));
  // onnxruntime's defaults but the thread count (left at 0 it ran one thread on this 2-core machine).
  const session = await ort.InferenceSession.create(await plainModel(ckpt, maxLen), {
    intraOpNumThreads: kernelThreads(),
    graphOptimizationLevel: 'all',
  });
  const t0 = performance.now();
  const { embeddings, fill } = await embedSortedBatches(ort, session, texts, 32, ckpt.config.padTokenId);
  const seconds = (performance.now() - t0) / 1000;
  const C = embeddings[0].length;
  const matrix = new Float32Array(embeddings.length * C);
  embeddings.forEach((e, i) => matrix.set(e, i * C));
  writeFileSync(out, npyBytes(matrix, [embeddings.length, C]));
  console.log(JSON.stringify({ seconds, fill }));
}
