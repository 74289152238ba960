/**
 * SQLite commits are acknowledged only once durable, and their fsync runs off the event loop
 * (ADR 0008). Watched with strace, a tool nobody here wrote: a child process writes through
 * GroupCommit and prints one line per acknowledged write; the trace must show, before every
 * acknowledgement, an fdatasync of the WAL by a thread other than the main one, after the WAL
 * write holding that commit, and the main thread must never sync the WAL. A reader that asks
 * `durable()` about a commit whose sync is still running is answered only after that sync.
 *
 * strace comes from Debian (.ci/run installs it); missing locally it skips, in CI it fails.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { findTool } from '../e2e/tools.js';
import { fdOf, parse, type Call } from '../testkit/strace.js';

const run = promisify(execFile);
const strace = findTool('strace');
const skip = strace === undefined && process.env.CI !== 'true' ? 'strace is not installed (apt-get install strace)' : false;

/** The child: `mode` walSync or full, writes in 3 turns of the event loop, 4 writes each. */
const CHILD = `
import Database from 'better-sqlite3';
import { writeSync } from 'node:fs';
import { GroupCommit } from './dist/storage/group-commit.js';
const [path, mode] = process.argv.slice(-2);
const db = new Database(path);
db.pragma('journal_mode = WAL');
const commits = new GroupCommit(db, { walSync: mode === 'wal' });
db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)');
const insert = db.prepare('INSERT INTO t (k, v) VALUES (?, ?)');
// Creating the table starts the WAL, whose header SQLite syncs itself: the checks begin here.
writeSync(1, 'BEGIN\\n');
for (let turn = 0; turn < 3; turn++) {
  const acks = [];
  for (let i = 0; i < 4; i++) {
    const k = turn * 4 + i;
    acks.push(commits.write(() => insert.run(k, 'x'.repeat(3000))).then(() => writeSync(1, 'ACK ' + k + '\\n')));
  }
  await Promise.all(acks);
}
// A reader of a committed row that is not synced yet: durable() answers only once it is on disk.
const late = commits.write(() => insert.run(99, 'late'));
setImmediate(() => void commits.durable().then(() => writeSync(1, 'ACK 99\\n')));
await late;
await commits.close();
db.close();
`;

async function traced(mode: 'wal' | 'full'): Promise<{ calls: Call[]; main: number; walFds: Set<string> }> {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-durability-'));
  try {
    const out = join(dir, 'trace');
    const db = join(dir, 'meta.db');
    await run(strace as string, ['-f', '-o', out, '-e', 'trace=openat,pwrite64,write,fsync,fdatasync', '-e', 'signal=none', process.execPath, '--input-type=module', '-e', CHILD, db, mode], {
      cwd: process.cwd(),
      timeout: 60_000,
    });
    const calls = parse(await readFile(out, 'utf8'));
    const main = calls[0]?.tid ?? -1;
    const walFds = new Set(calls.filter((c) => c.name === 'openat' && c.args.includes('meta.db-wal"') && /^\d+$/.test(c.result)).map((c) => c.result));
    return { calls, main, walFds };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('every acknowledged write was synced to the WAL first, by a thread-pool thread, never by the main thread', { skip, timeout: 120_000 }, async () => {
  const { calls, main, walFds } = await traced('wal');
  assert.ok(walFds.size > 0, 'the WAL file was opened');
  const acks = calls.filter((c) => c.name === 'write' && c.args.startsWith('1, "ACK '));
  assert.equal(acks.length, 13, 'every write, and the durable() of a reader, was acknowledged');
  let lastWalWrite = -1;
  let syncedSince = -1;
  // From the first write to the last acknowledgement: creating the table before and closing the
  // database after sync on the main thread, as SQLite may when the WAL starts or is checkpointed.
  const begin = calls.findIndex((c) => c.name === 'write' && c.args.startsWith('1, "BEGIN'));
  const lastAck = calls.lastIndexOf(acks[acks.length - 1] as Call);
  assert.ok(begin >= 0 && lastAck > begin, 'the child marked where its writes begin');
  for (const [i, c] of calls.entries()) {
    if (i <= begin || i > lastAck) continue;
    const onWal = walFds.has(fdOf(c));
    if (c.name === 'pwrite64' && onWal) lastWalWrite = i;
    if ((c.name === 'fdatasync' || c.name === 'fsync') && onWal) {
      assert.notEqual(c.tid, main, 'the main thread never syncs the WAL');
      if (c.result === '0') syncedSince = i;
    }
    if (c.name === 'write' && c.args.startsWith('1, "ACK ')) {
      assert.ok(lastWalWrite >= 0, `${c.args}: a commit was written to the WAL`);
      assert.ok(syncedSince > lastWalWrite, `${c.args}: acknowledged after an fdatasync of the WAL that followed its commit`);
    }
  }
});

test('the control: with synchronous=FULL, SQLite syncs the WAL on the main thread', { skip, timeout: 120_000 }, async () => {
  const { calls, main, walFds } = await traced('full');
  const begin = calls.findIndex((c) => c.name === 'write' && c.args.startsWith('1, "BEGIN'));
  const mainSyncs = calls.filter((c, i) => i > begin && (c.name === 'fdatasync' || c.name === 'fsync') && walFds.has(fdOf(c)) && c.tid === main);
  assert.ok(mainSyncs.length >= 3, `the main thread synced the WAL ${mainSyncs.length} times`);
});
