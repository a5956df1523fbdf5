// --runtime coreml and the Core ML commands' shared session: one helper process per CLI run, closed when the
// command ends (main.ts). A build of the helper is announced on a terminal, as runtime notes are.

import { requireCoreML, processHelperEnv } from '../run/coreml/build.js';
import { CoreMLSession } from '../run/coreml/session.js';
import type { Io } from './context.js';

let shared: CoreMLSession | undefined;

/** The CLI run's Core ML session (started on first use); `what` names the command for the "needs macOS" error. */
export function coremlSession(what: string, io: Io, json: boolean): CoreMLSession {
  requireCoreML(what);
  // A closed session (the previous command's, in a process that runs several) is replaced.
  if (!shared || shared.closed)
    shared = new CoreMLSession(processHelperEnv(io.isTTY && !json ? (line) => io.stderr(`${line}\n`) : undefined));
  return shared;
}
