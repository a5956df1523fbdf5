// How much of each kind of file we read, and how long we wait on one, stated in one place. Each cap is far
// above what a real file of its kind holds and far below what would exhaust memory: a corrupt, hostile or
// endless file (/dev/zero) is a one-line error, never a process that grows until it dies.

const MiB = 1024 * 1024;

/** The largest file of each kind that is read, in bytes. */
export const READ_LIMITS = {
  /** embed / predict --input: texts, one per line or JSONL (64 MiB is about a million sentences). */
  texts: 64 * MiB,
  /** convert / export-onnx --calibration: every text is run through the model, so a few thousand at most are useful. */
  calibration: 16 * MiB,
  /** verify / diff / outliers --golden: reference outputs, read whole (a real one holds a few cases: megabytes). */
  golden: 1024 * MiB,
  /** config.json and the sentence-transformers configs beside it (a real config.json is about 2 KB). */
  config: 1 * MiB,
  /** model.safetensors.index.json (a 400-billion-parameter model's is under 1 MiB). */
  index: 16 * MiB,
  /** tokenizer.json (ModernBERT's is 3.5 MB; large multilingual vocabularies reach about 35 MB). */
  tokenizer: 64 * MiB,
  /** tokenizer_config.json and special_tokens_map.json (a few KB; with every added token spelled out, a few MB). */
  tokenizerConfig: 16 * MiB,
  /** A package's Manifest.json (a few hundred bytes). */
  manifest: 1 * MiB,
  /** A package's model.mlmodel, the program without its weights (a few MB; weights stay in weight.bin). */
  model: 256 * MiB,
} as const;

/** Texts one batch run (embed, predict --input) takes: each is held with its token ids and its result. */
export const MAX_TEXTS = 1_000_000;

/** Embeddings one embed run may hold before writing them (texts x width x 4 bytes). */
export const MAX_RESULT_BYTES = 1024 * MiB;

/**
 * The longest we wait on a FIFO or device without progress: for a writer (or any data) when reading, for a
 * reader (or room in the pipe) when writing. Past it, a one-line error says what was waited for.
 */
export const DEVICE_WAIT_SECONDS = 10;

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Blocks the thread for `ms` milliseconds (the synchronous readers and writers poll devices with it). */
export function sleepMs(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** A byte count for messages: "64 MiB". */
export function formatBytes(n: number): string {
  return n >= MiB ? `${+(n / MiB).toFixed(1)} MiB` : n >= 1024 ? `${+(n / 1024).toFixed(1)} KiB` : `${n} bytes`;
}
