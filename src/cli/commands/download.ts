// `download ID`: fetch a Hub model's checkpoint files into the Hugging Face cache and print its snapshot folder.

import type { Command } from 'commander';
import { downloadModel } from '../../hub/resolve.js';
import { printJson, type Io } from '../context.js';
import { addRevisionOption, hubOptions } from '../model-source.js';

/** Registers the download command. */
export function registerDownload(program: Command, io: Io): void {
  const cmd = program
    .command('download')
    .description(
      'download a Hugging Face Hub model (config, safetensors weights, tokenizer, sentence-transformers pooling; nothing else) into the Hugging Face cache, shared with Python, and print its snapshot folder',
    )
    .argument('<id>', 'Hub id org/name[@revision]')
    .option('--json', 'machine-readable output');
  addRevisionOption(cmd).action(async (id: string, o: { revision?: string; json?: boolean }) => {
    const r = await downloadModel(id, hubOptions(io, o));
    if (o.json)
      return printJson(io, {
        path: r.path,
        id: r.source.id,
        revision: r.source.revision,
        commit: r.source.commit,
        downloaded: r.downloaded,
      });
    io.stdout(`${r.path}\n`);
  });
}
