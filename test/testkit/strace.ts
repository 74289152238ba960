/**
 * Reading `strace -f -o FILE` output in tests that watch durability (fsync before an answer):
 * one Call per system call that returned, in order of return.
 */

export interface Call {
  readonly tid: number;
  readonly name: string;
  readonly args: string;
  readonly result: string;
}


/** strace -f output, "<unfinished ...>" / "<... resumed>" pairs joined, in order of return. */
export function parse(trace: string): Call[] {
  const open = new Map<number, { name: string; args: string }>();
  const calls: Call[] = [];
  for (const line of trace.split('\n')) {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (m === null) continue;
    const tid = Number(m[1]);
    const rest = m[2] ?? '';
    const unfinished = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest);
    if (unfinished !== null) {
      open.set(tid, { name: unfinished[1] ?? '', args: unfinished[2] ?? '' });
      continue;
    }
    const resumed = /^<\.\.\. (\w+) resumed>(.*)\)\s+= (.*)$/.exec(rest);
    if (resumed !== null) {
      const o = open.get(tid);
      open.delete(tid);
      calls.push({ tid, name: resumed[1] ?? '', args: (o?.args ?? '') + (resumed[2] ?? ''), result: resumed[3] ?? '' });
      continue;
    }
    const whole = /^(\w+)\((.*)\)\s+= (.*)$/.exec(rest);
    if (whole !== null) calls.push({ tid, name: whole[1] ?? '', args: whole[2] ?? '', result: whole[3] ?? '' });
  }
  return calls;
}


/** The first argument of a call (a file descriptor for write, fsync, close, ...). */
export const fdOf = (c: Call): string => c.args.split(',')[0]?.trim() ?? '';
