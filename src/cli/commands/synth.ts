// `synth <small|base|large|CONFIG.json> --out DIR`: a synthetic checkpoint from the portable PRNG.

import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { ModernBertError } from '../../errors.js';
import { fsError, withFsErrors } from '../../io/fs-errors.js';
import { kindOf } from '../../io/files.js';
import { parseOverride } from '../../synth/overrides.js';
import { writeSynthCheckpoint } from '../../synth/synth.js';
import { printJson, progress, type Io } from '../context.js';
import { collect } from '../parse.js';

interface SynthOptions {
  out: string;
  override: string[];
  force?: boolean;
  json?: boolean;
}

/** Registers the synth command. */
export function registerSynth(program: Command, io: Io): void {
  program
    .command('synth')
    .description('write a synthetic checkpoint (config.json + float32 model.safetensors) from the portable PRNG')
    .argument('<preset>', 'small (4 layers, 15 M parameters), base, large, or a config.json path')
    .requiredOption('--out <dir>', 'output folder')
    .option(
      '--override <spec>',
      "set elements, e.g. 'model.layers.2.mlp.Wo.weight[100]=2000' (repeatable)",
      collect,
      [],
    )
    .option('--force', 'overwrite an existing checkpoint in the output folder')
    .option('--json', 'machine-readable output')
    .action(async (preset: string, o: SynthOptions) => {
      const overrides = o.override.map(parseOverride);
      const st = withFsErrors(o.out, 'write', () => statSync(o.out, { throwIfNoEntry: false }));
      if (st && !st.isDirectory())
        throw new ModernBertError(
          'BAD_ARGUMENT',
          `--out ${o.out} is ${st.isFile() ? 'a file' : kindOf(st)}, not a folder`,
          { path: o.out },
        );
      const bar = progress(io, 'synth MB', Boolean(o.json));
      const t0 = performance.now();
      try {
        // The folder cannot be made (a file on its path, no permission, a full disk): the user's to fix, so exit 2.
        const info = await writeSynthCheckpoint(
          preset,
          o.out,
          overrides,
          (d, t) => bar.update(Math.round(d / 1e6), Math.round(t / 1e6)),
          { overwrite: o.force },
        ).catch((e: unknown) => {
          throw fsError(e, o.out, 'write');
        });
        bar.stop();
        const seconds = (performance.now() - t0) / 1000;
        const summary = { out: o.out, tensors: info.tensors, bytes: info.bytes, parameters: info.bytes / 4, seconds };
        if (o.json) printJson(io, summary);
        else
          io.stdout(
            `wrote ${o.out}: ${info.tensors} tensors, ${(info.bytes / 4 / 1e6).toFixed(1)} M parameters (float32) in ${seconds.toFixed(1)} s\n`,
          );
      } finally {
        bar.stop();
      }
    });
}
