// verify(model, golden): every case of a golden file through the model, the max abs difference of its logits
// and hidden states against the reference's, and whether all stay within the tolerance.

import type { ComputeUnits } from '../run/coreml/session.js';
import { readGolden } from '../eval/golden.js';
import { verify as verifyCases, type VerifyReport } from '../eval/verify.js';
import type { DownloadProgress } from '../hub/resolve.js';
import { chooseExecutor, type AnyRuntime, type ExecutorChoice } from '../run/executor-choice.js';
import { openModel } from '../run/load.js';
import type { Precision } from '../runtime/numerics.js';

export type { VerifyReport, CaseReport } from '../eval/verify.js';

/** How verify runs the model; every option may be left out. */
export interface VerifyOptions {
  /** Tolerance on the max abs difference (default 1e-4). */
  atol?: number;
  /** Arithmetic (default 'fp32'; a float16 emulation runs on our engine). */
  precision?: Precision;
  /** What runs it at float32 (default: onnxruntime when installed, else our engine; 'coreml' on macOS). */
  runtime?: AnyRuntime;
  /** With runtime 'coreml': where Core ML may run it. */
  computeUnits?: ComputeUnits;
  /** A head package (convert's `split`) to run on the model, its body package. */
  headPackage?: string;
  /** A branch, tag or commit of a Hub id. */
  revision?: string;
  /** Told the bytes downloaded so far while a Hub model downloads. */
  download?: DownloadProgress;
  /** Told the cases done. */
  onProgress?: (done: number, total: number) => void;
  /** What runs it, chosen beforehand (the commands choose it to print its note). */
  executor?: ExecutorChoice;
}

/** Runs every case of a golden file (.safetensors) through a checkpoint, package or Hub model and compares. */
export async function verify(model: string, golden: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const cases = readGolden(golden);
  const choice =
    options.executor ??
    (await chooseExecutor({
      runtime: options.runtime,
      precision: options.precision,
      computeUnits: options.computeUnits,
    }));
  try {
    const m = await openModel(model, {
      ...(options.precision === undefined ? {} : { precision: options.precision }),
      ...(options.headPackage === undefined ? {} : { headPackage: options.headPackage }),
      ...(options.revision === undefined ? {} : { revision: options.revision }),
      ...(options.download ? { progress: options.download } : {}),
      ...(choice.factory ? { executor: choice.factory } : {}),
    });
    try {
      return await verifyCases(m.runner, cases, options.atol ?? 1e-4, {}, options.onProgress);
    } finally {
      m.close();
    }
  } finally {
    if (!options.executor) await choice.session?.close();
  }
}
