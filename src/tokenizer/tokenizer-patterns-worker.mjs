// The worker of tokenizer-patterns.ts: runs one regular-expression operation at a time for the main thread,
// which waits for it with a time budget. Each reply is posted, then its id is stored in the shared flag, so
// the main thread (blocked in Atomics.wait) finds the reply on the port when it wakes.
import { workerData } from 'node:worker_threads';

const { port, flag } = workerData;
const compiled = new Map();

function regex(source, flags) {
  const key = `${flags}/${source}`;
  let re = compiled.get(key);
  if (!re) {
    re = new RegExp(source, flags);
    compiled.set(key, re);
  }
  re.lastIndex = 0;
  return re;
}

function run(m) {
  const re = regex(m.source, m.flags);
  switch (m.op) {
    case 'match':
      return m.text.match(re);
    case 'split':
      return m.text.split(re, m.limit);
    case 'matchAll':
      return Array.from(m.text.matchAll(re), (x) => ({ m: [...x], index: x.index }));
    case 'replace':
      return m.text.replace(re, m.replacement);
    case 'exec': {
      re.lastIndex = m.lastIndex;
      const x = re.exec(m.text);
      return x && { m: [...x], index: x.index, lastIndex: re.lastIndex };
    }
    default:
      throw new Error(`unknown operation ${m.op}`);
  }
}

port.on('message', (m) => {
  let reply;
  try {
    reply = { id: m.id, value: run(m) };
  } catch (e) {
    reply = { id: m.id, error: String(e?.message ?? e) };
  }
  port.postMessage(reply);
  Atomics.store(flag, 0, m.id);
  Atomics.notify(flag, 0);
});
Atomics.store(flag, 1, 1);
Atomics.notify(flag, 1);
