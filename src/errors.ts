/** Error codes, one per kind of failure a user can act on. */
export type ErrorCode =
  | 'FILE_NOT_FOUND'
  | 'CORRUPT_FILE'
  | 'BAD_CONFIG'
  | 'UNSUPPORTED'
  | 'SHAPE_MISMATCH'
  | 'BAD_INPUT'
  | 'BAD_ARGUMENT'
  | 'OUTPUT_EXISTS'
  | 'FILE_SYSTEM'
  | 'NON_FINITE'
  /** The Hugging Face Hub (or HF_ENDPOINT) could not be reached or answered what no Hub answers. */
  | 'NETWORK'
  /** The Hub refused a model without a valid token (401) or to this token (403). */
  | 'ACCESS_DENIED'
  | 'INTERNAL';

/**
 * An error the CLI reports as one line; `context` says which file, tensor or value. Exit code 2 (the user's to
 * fix), except NON_FINITE: a result that is NaN or infinite, a failed check like verify's, exit 1; and
 * INTERNAL: a broken invariant of ours, exit 3.
 */
export class ModernBertError extends Error {
  readonly code: ErrorCode;
  readonly context: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, context: Record<string, unknown> = {}) {
    // One line, always: messages quote names read from files, which may hold line breaks.
    super(message.replace(/\s*[\r\n]+\s*/g, ' '));
    this.name = 'ModernBertError';
    this.code = code;
    this.context = context;
  }
}

/** The CLI's exit code for an error of `code` (see ModernBertError). */
export function exitCodeFor(code: ErrorCode): number {
  return code === 'NON_FINITE' ? 1 : code === 'INTERNAL' ? 3 : 2;
}
