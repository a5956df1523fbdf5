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
  | 'NUMERIC'
  | 'INTERNAL';

/** An error the CLI reports as one line (exit code 2); `context` says which file, tensor or value. */
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

/** Throw a ModernBertError unless `cond` holds. */
export function check(
  cond: unknown,
  code: ErrorCode,
  message: string | (() => string),
  context: Record<string, unknown> = {},
): asserts cond {
  if (!cond) throw new ModernBertError(code, typeof message === 'string' ? message : message(), context);
}
