/**
 * Reading a running server's audit log (JSON lines) in tests. The log is written after the answer
 * a test has just received, so a reader polls until what it expects is there (bounded).
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** Every whole line of the file, parsed; a line still being appended (or a missing file) gives none. */
export async function auditEvents<T>(file: string): Promise<T[]> {
  const text = await readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return '';
    throw e;
  });
  return text.split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line) as T];
    } catch {
      return [];
    }
  });
}

/**
 * The events of the file once `done(events)` holds, reading it every 50 ms for at most
 * `timeoutMs`; the last reading if it never does (the caller's assertions then say what is missing).
 */
export async function auditEventsWhen<T>(file: string, done: (events: T[]) => boolean, timeoutMs = 2_000): Promise<T[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const events = await auditEvents<T>(file);
    if (done(events) || Date.now() >= until) return events;
    await sleep(50);
  }
}
