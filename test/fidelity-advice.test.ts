// A conversion that overflows float16 writes nothing (exit 1): its one error line names the first op with a
// NaN/inf, and its advice addresses that cause only (a rotation for the residual stream, and never when one
// is already on).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { partOf, type ModelPart } from '../src/eval/fidelity.js';
import { nonFiniteAdvice } from '../src/eval/fidelity-text.js';
import { cli } from './helpers/cli.js';
import { cleanupTempDirs, FX, tempDir } from './helpers/fixtures.js';
import { withOutlier } from './helpers/outlier.js';

afterAll(cleanupTempDirs);

const TRY_HADAMARD = /try --rotation hadamard/;

describe('a conversion that overflows float16', () => {
  const tmp = tempDir();
  const warning = async (dir: string, ...args: string[]) => {
    const out = join(tmp, `${args.join('')}-${dir.slice(-6)}.mlpackage`);
    const r = await cli('convert', dir, '--out', out, '--seq-len', '32', ...args);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: the converted model gives NaN or infinity .*; nothing was written$/m);
    expect(existsSync(out)).toBe(false);
    return r.stderr;
  };

  it('in the residual stream, unrotated: names the op and suggests Hadamard', async () => {
    const dir = await withOutlier(join(FX, 'tiny-mlm'), 'model.layers.1.mlp.Wo.weight', 7, 3000, tmp);
    expect(await warning(dir)).toMatch(
      /after layer 2, at op conv "layers_1_mlp_out" .*: the residual stream exceeds float16 \(65504\): try --rotation hadamard/,
    );
  }, 30_000);

  it('in the residual stream, already rotated: says no rotation fixes it, never "try --rotation hadamard"', async () => {
    const dir = await withOutlier(join(FX, 'tiny-mlm'), 'model.layers.1.mlp.Wo.weight', 7, 30000, tmp);
    const w = await warning(dir, '--rotation', 'hadamard');
    expect(w).toMatch(/at op conv "layers_1_mlp_out" .*even with the hadamard rotation; no rotation fixes it/);
    expect(w).not.toMatch(TRY_HADAMARD);
  }, 30_000);

  it('inside the MLP, where no rotation reaches: says so', async () => {
    const dir = await withOutlier(join(FX, 'tiny-mlm'), 'model.layers.1.mlp.Wi.weight', 7, 30000, tmp);
    const w = await warning(dir);
    expect(w).toMatch(
      /at op \w+ "layers_1_mlp_(in|act|glu)" .*the MLP's inner activations exceed float16; no rotation or other conversion option changes them/,
    );
    expect(w).not.toMatch(TRY_HADAMARD);
  }, 30_000);
});

describe('nonFiniteAdvice', () => {
  it('suggests Hadamard only for the residual stream of an unrotated folded model; norms get the norm fix', () => {
    const parts: ModelPart[] = ['embedding', 'norm', 'residual', 'attention', 'mlp', 'head'];
    for (const part of parts) {
      for (const rotation of ['none', 'hadamard', 'learned']) {
        for (const norm of ['l2', 'rms'] as const) {
          const a = nonFiniteAdvice(part, { fold: true, rotation, norm });
          expect(TRY_HADAMARD.test(a), `${part} ${rotation} ${norm}: ${a}`).toBe(
            rotation === 'none' && (part === 'residual' || part === 'embedding'),
          );
        }
      }
    }
    expect(nonFiniteAdvice('norm', { fold: true, rotation: 'hadamard', norm: 'rms' })).toMatch(/use --norm l2/);
    expect(nonFiniteAdvice('norm', { fold: false, rotation: 'none', norm: 'l2' })).toMatch(/without --no-fold/);
    expect(nonFiniteAdvice('residual', { fold: false, rotation: 'none', norm: 'l2' })).toMatch(/without --no-fold/);
  });

  it('parts from op names', () => {
    const names: Record<string, ModelPart> = {
      embed: 'embedding',
      embed_norm_sq: 'norm',
      layers_0_residual: 'residual',
      layers_3_attn_res: 'residual',
      layers_1_mlp_out: 'residual',
      layers_2_h0_scores: 'attention',
      layers_2_qkv: 'attention',
      layers_1_mlp_in: 'mlp',
      layers_1_mlp_act: 'mlp',
      layers_0_mlp_norm: 'norm',
      final_norm: 'norm',
      head_dense: 'head',
      decoder: 'head',
    };
    for (const [name, part] of Object.entries(names)) expect(partOf(name), name).toBe(part);
  });
});
