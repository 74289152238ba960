/**
 * A blob is acknowledged only once durable (ADR 0002), now that a commit is one native job
 * (ADR 0020). Watched with strace, a tool nobody here wrote: a child process pushes through the
 * built FsBlobStore (no trailer; a trailer it hashes; a trailer under a vouched digest, as the
 * encrypting store commits) and prints one line per acknowledged commit. Before each
 * acknowledgement the trace must show, by threads other than the main one: every byte of the
 * session's file written, then an fsync of that file, then the rename to the blob's path, then an
 * fsync of the blob's folder. A second commit of stored content renames nothing.
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

const CHILD = `
import { createHash, randomUUID } from 'node:crypto';
import { writeSync } from 'node:fs';
import { Readable } from 'node:stream';
import { FsBlobStore } from './dist/storage/fs-blob-store.js';
const [root] = process.argv.slice(-1);
const store = await new FsBlobStore(root, { directMinBytes: 1 << 20 }).init();
const digestOf = (b) => 'sha256:' + createHash('sha256').update(b).digest('hex');
writeSync(1, 'BEGIN\\n');
const cases = [
  { body: Buffer.alloc(300000, 1) },
  { body: Buffer.alloc(300001, 2), trailer: Buffer.from('the hashed trailer') },
  { body: Buffer.alloc(300002, 3), trailer: Buffer.from('the vouched trailer'), vouched: true },
  { body: Buffer.alloc(300000, 1) },
  // At least directMinBytes: written with O_DIRECT (ADR 0024), and as durable as the others.
  { body: Buffer.alloc((2 << 20) + 123, 4), trailer: Buffer.from('after a direct body') },
  { body: Buffer.alloc((2 << 20) + 77, 5) },
];
for (const c of cases) {
  const id = randomUUID();
  await store.startUpload(id, 'durability/test');
  await store.appendUpload(id, Readable.from([c.body]), { length: c.body.length });
  const whole = c.trailer === undefined ? c.body : Buffer.concat([c.body, c.trailer]);
  const info = await store.commitUpload(id, digestOf(whole), { trailer: c.trailer, vouched: c.vouched });
  writeSync(1, 'ACK ' + info.digest + ' ' + info.size + '\\n');
}
// A small put: written and synced to a file in tmp/, then committed with it.
const small = Buffer.from('a small put');
const put = await store.put(small, digestOf(small));
writeSync(1, 'ACK ' + put.digest + ' ' + put.size + '\\n');
// What is stored hashes to its name, the vouched trailer included.
for await (const d of store.list()) writeSync(1, 'STORED ' + d + ' ' + (await store.verify(d)).ok + '\\n');
await store.close();
`;

async function traced(): Promise<{ calls: Call[]; main: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'bulwark-durability-'));
  try {
    const out = join(dir, 'trace');
    await run(strace as string, ['-f', '-s', '128', '-o', out, '-e', 'trace=openat,write,writev,pwrite64,fsync,fdatasync,rename,renameat,renameat2,close', '-e', 'signal=none', process.execPath, '--input-type=module', '-e', CHILD, join(dir, 'store')], {
      cwd: process.cwd(),
      timeout: 60_000,
    });
    const calls = parse(await readFile(out, 'utf8'));
    return { calls, main: calls[0]?.tid ?? -1 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The quoted path arguments of a call, in order. */
const paths = (c: Call): string[] => [...c.args.matchAll(/"([^"]*)"/g)].map((m) => m[1] ?? '');

test('every acknowledged blob was written, synced, renamed into place and its folder synced first, off the main thread', { skip, timeout: 120_000 }, async () => {
  const { calls, main } = await traced();
  const begin = calls.findIndex((c) => c.name === 'write' && c.args.startsWith('1, "BEGIN'));
  assert.ok(begin >= 0, 'the child marked where its commits begin');
  const acks = calls.filter((c) => c.name === 'write' && c.args.startsWith('1, "ACK '));
  assert.equal(acks.length, 7, 'every commit and the put were acknowledged');
  const stored = calls.filter((c) => c.name === 'write' && c.args.startsWith('1, "STORED ')).map((c) => c.args);
  assert.equal(stored.length, 6, 'six blobs are stored');
  for (const s of stored) assert.match(s, / true\\n/, `${s}: hashes to its name`);

  // What each file descriptor names at each point of the trace.
  const named = new Map<string, string>();
  const lastWrite = new Map<string, number>(); // session file -> index of its last write
  const synced = new Map<string, number>(); // path -> index of its last successful fsync
  const renamed = new Map<string, { at: number; from: string }>(); // blob path -> its rename
  const acked = new Set<string>();
  let checked = 0;
  for (const [i, c] of calls.entries()) {
    if (i <= begin) continue;
    if (c.name === 'openat' && /^\d+$/.test(c.result)) named.set(c.result, paths(c)[0] ?? '');
    const path = named.get(fdOf(c));
    if ((c.name === 'write' || c.name === 'writev' || c.name === 'pwrite64') && (path?.includes('/uploads/') === true || path?.includes('/store/tmp/') === true)) lastWrite.set(path, i);
    if ((c.name === 'fsync' || c.name === 'fdatasync') && path !== undefined && c.result === '0') {
      assert.notEqual(c.tid, main, `the main thread never syncs (${path})`);
      synced.set(path, i);
    }
    if (c.name === 'close') named.delete(fdOf(c));
    if (c.name.startsWith('rename') && c.result === '0') {
      const [from, to] = paths(c);
      assert.notEqual(c.tid, main, 'the main thread never renames a blob into place');
      renamed.set(to ?? '', { at: i, from: from ?? '' });
    }
    const ack = /^1, "ACK (sha256:([0-9a-f]{2})([0-9a-f]{62})) (\d+)/.exec(c.args);
    if (c.name !== 'write' || ack === null) continue;
    const [, digest, prefix, rest] = ack;
    const blob = [...renamed.keys()].find((p) => p.endsWith(`/blobs/sha256/${prefix ?? ''}/${prefix ?? ''}${rest ?? ''}`));
    if (acked.has(digest ?? '')) {
      assert.equal(blob, undefined, `${digest ?? ''}: stored already, so not renamed again`);
      continue;
    }
    acked.add(digest ?? '');
    assert.ok(blob !== undefined, `${digest ?? ''}: renamed into the store before it was acknowledged`);
    const move = renamed.get(blob) as { at: number; from: string };
    const written = lastWrite.get(move.from);
    assert.ok(written !== undefined && written < move.at, `${digest ?? ''}: the session's bytes were written before the rename`);
    const fileSync = synced.get(move.from);
    assert.ok(fileSync !== undefined && fileSync > written && fileSync < move.at, `${digest ?? ''}: the session's file was synced after its last write and before the rename`);
    const folder = blob.slice(0, blob.lastIndexOf('/'));
    const folderSync = synced.get(folder);
    assert.ok(folderSync !== undefined && folderSync > move.at && folderSync < i, `${digest ?? ''}: the blob's folder was synced after the rename and before the acknowledgement`);
    checked++;
    renamed.delete(blob);
  }
  // The fourth commit repeats the first content: acknowledged with no rename of its own.
  assert.equal(checked, 6, 'five pushed blobs and the put were renamed into place');
  assert.equal(acked.size, 6);
  // The large bodies, and only they, went to their session files with O_DIRECT, in positioned writes
  // (before `begin`: the store's check at init that the file system takes direct I/O).
  const directOpens = calls.filter((c, i) => i > begin && c.name === 'openat' && /\bO_DIRECT\b/.test(c.args) && /^\d+$/.test(c.result));
  assert.equal(directOpens.length, 2, 'two session files were opened for direct I/O');
  for (const open of directOpens) {
    assert.match(paths(open)[0] ?? '', /\/uploads\/[^/]+\/data$/);
    const at = calls.indexOf(open);
    const closed = calls.findIndex((c, i) => i > at && c.name === 'close' && fdOf(c) === open.result);
    const pwrites = calls.slice(at, closed).filter((c) => c.name === 'pwrite64' && fdOf(c) === open.result);
    assert.ok(pwrites.length >= 2, 'the body went out in positioned writes');
  }
});
