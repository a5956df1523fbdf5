// Outliers of the residual stream: per layer, the largest |activation| and the channel and token carrying it.

import { floats, type RtTensor } from '../runtime/tensor.js';

export interface LayerOutliers {
  layer: number;
  max: number;
  channel: number;
  /** Index of the sequence (among those run) and position of the token. */
  sequence: number;
  token: number;
  /** The channels with the largest max |activation|, largest first. */
  top_channels: { channel: number; max: number }[];
}

/** Accumulates per-layer outlier statistics over sequences. */
export class OutlierMeter {
  private readonly layers: {
    max: number;
    channel: number;
    sequence: number;
    token: number;
    perChannel: Float64Array;
  }[] = [];

  /** Adds the residual taps (1, C, 1, S) of one sequence; `real` lists the positions of real tokens. */
  add(residuals: RtTensor[], real: number[], sequence: number): void {
    const at = Int32Array.from(real);
    // Real tokens are usually one run of positions (a window packed from the start): read as a range then.
    const run = at.every((p, k) => p === at[0]! + k);
    residuals.forEach((t, layer) => {
      const [C, S] = [t.shape[1]!, t.shape[3]!];
      const data = floats(t, 'a residual stream');
      const l = (this.layers[layer] ??= {
        max: -1,
        channel: 0,
        sequence: 0,
        token: 0,
        perChannel: new Float64Array(C),
      });
      const per = l.perChannel;
      // One channel's row at a time (23 layers x 768 channels x 470 tokens per pass), a NaN counting as
      // infinity; the token is looked for only in a row whose max beats the layer's.
      for (let c = 0; c < C; c++) {
        const row = c * S;
        let m = per[c]!;
        if (run) {
          for (let i = row + at[0]!, end = i + at.length; i < end; i++) {
            const v = Math.abs(data[i]!);
            if (v > m) m = v;
            else if (v !== v) m = Infinity;
          }
        } else {
          for (let k = 0; k < at.length; k++) {
            const v = Math.abs(data[row + at[k]!]!);
            if (v > m) m = v;
            else if (v !== v) m = Infinity;
          }
        }
        if (m > per[c]!) {
          per[c] = m;
          if (m > l.max) {
            const k = at.findIndex((p) =>
              m === Infinity ? !Number.isFinite(data[row + p]!) : Math.abs(data[row + p]!) === m,
            );
            Object.assign(l, { max: m, channel: c, sequence, token: at[k]! });
          }
        }
      }
    });
  }

  /** Per-layer results, with the `topN` strongest channels. */
  result(topN = 3): LayerOutliers[] {
    return this.layers.map((l, layer) => {
      const order = Array.from(l.perChannel.keys()).sort((a, b) => l.perChannel[b]! - l.perChannel[a]!);
      return {
        layer,
        max: l.max,
        channel: l.channel,
        sequence: l.sequence,
        token: l.token,
        top_channels: order.slice(0, topN).map((c) => ({ channel: c, max: l.perChannel[c]! })),
      };
    });
  }
}
