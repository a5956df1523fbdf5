#!/usr/bin/env node
// The screenshot of `report` in docs/: converts the built-in model (with its fidelity report), writes its
// report page, and photographs the top of the page in headless Chromium.
//
//   npm run build && node scripts/report-screenshot.mjs [--out docs/report.png]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { browserMissing, withPage } from './browser.mjs';

const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..');
const { values } = parseArgs({ options: { out: { type: 'string', default: join(ROOT, 'docs', 'report.png') } } });
const missing = browserMissing();
if (missing) {
  console.error(`error: ${missing}`);
  process.exit(2);
}
const { main } = await import(join(ROOT, 'dist', 'cli', 'main.js'));
const quiet = { stdout: () => {}, stderr: (t) => process.stderr.write(t), isTTY: false };
const dir = mkdtempSync(join(tmpdir(), 'mbane-shot-'));
const out = resolve(values.out);
const cwd = process.cwd();
// Relative names inside the temporary folder, so that the page shows no path of this machine.
process.chdir(dir);
try {
  const pkg = 'mini-trained.mlpackage';
  const page = join(dir, 'report.html');
  if ((await main(['convert', join(ROOT, 'models', 'mini-trained'), '--out', pkg, '--seq-len', '128'], quiet)) !== 0)
    process.exit(1);
  if ((await main(['report', pkg, '--out', page], quiet)) !== 0) process.exit(1);
  const problems = await withPage(page, async (p, found) => {
    await p.screenshot({ path: out, clip: { x: 0, y: 0, width: 1280, height: 1150 } });
    return found;
  });
  if (problems.length) {
    console.error(problems.join('\n'));
    process.exit(1);
  }
  console.log(`wrote ${values.out}`);
} finally {
  process.chdir(cwd);
  rmSync(dir, { recursive: true, force: true });
}
