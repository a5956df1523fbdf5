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
      // Typed loops over one channel's row at a time: 23 layers x 768 channels x 470 tokens per pass.
      for (let c = 0; c < C; c++) {
        const row = c * S;
        let m = per[c]!;
        for (let k = 0; k < at.length; k++) {
          const raw = data[row + at[k]!]!;
          const v = Number.isNaN(raw) ? Infinity : Math.abs(raw);
          if (v <= m) continue;
          m = v;
          // The channel's max never exceeds the layer's, so a new layer max is a new channel max.
          if (v > l.max) Object.assign(l, { max: v, channel: c, sequence, token: at[k]! });
        }
        per[c] = m;
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
