/**
 * The native file steps (native/fs.c, ADR 0020, 0023) on a real filesystem: what commitFile and
 * makeFolder leave on disk, what readRange reads, their answer when the destination exists, node:fs's kind of error at
 * the first failed step (and nothing done after it), and bad arguments refused before anything
 * is queued. That the syncs happen, in order and before the answer, is watched with strace in
 * test/integration/blob-durability.test.ts.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { commitFile, makeFolder, readRange } from '../../src/storage/native-fs.js';
import { FsBlobStore } from '../../src/storage/index.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'bulwark-native-fs-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let n = 0;
async function fresh(): Promise<{ dir: string; src: string; destDir: string; dest: string }> {
  const dir = join(root, `case-${n++}`);
  const destDir = join(dir, 'store');
  await mkdir(destDir, { recursive: true });
  return { dir, src: join(dir, 'session'), destDir, dest: join(destDir, 'blob') };
}

describe('commitFile', () => {
  test('appends, then renames into place: the destination holds every byte, the old name is gone', async () => {
    const { src, destDir, dest } = await fresh();
    await writeFile(src, 'body|');
    assert.equal(await commitFile(src, dest, destDir, { append: Buffer.from('trailer') }), true);
    assert.equal(await readFile(dest, 'utf8'), 'body|trailer');
    assert.equal(existsSync(src), false);
  });

  test('without bytes to append, renames the file as it is (synced or not)', async () => {
    for (const synced of [false, true]) {
      const { src, destDir, dest } = await fresh();
      await writeFile(src, `as it is, synced=${String(synced)}`);
      assert.equal(await commitFile(src, dest, destDir, { synced }), true);
      assert.equal(await readFile(dest, 'utf8'), `as it is, synced=${String(synced)}`);
    }
  });

  test('an empty append and an empty file are fine', async () => {
    const { src, destDir, dest } = await fresh();
    await writeFile(src, '');
    assert.equal(await commitFile(src, dest, destDir, { append: new Uint8Array(0) }), true);
    assert.equal((await readFile(dest)).length, 0);
  });

  test('a destination that exists is left alone: false, and the file stays where it was', async () => {
    const { src, destDir, dest } = await fresh();
    await writeFile(dest, 'stored before');
    await writeFile(src, 'body|');
    assert.equal(await commitFile(src, dest, destDir, { append: Buffer.from('trailer') }), false);
    assert.equal(await readFile(dest, 'utf8'), 'stored before');
    assert.equal(await readFile(src, 'utf8'), 'body|trailer', 'the append is the first step; it ran');
  });

  test("fails like node:fs at the first failed step, and runs none after it", async () => {
    const missing = await fresh();
    await assert.rejects(commitFile(missing.src, missing.dest, missing.destDir, { append: Buffer.from('x') }), (e: NodeJS.ErrnoException) => {
      assert.equal(e.code, 'ENOENT');
      assert.equal(e.syscall, 'open');
      assert.equal(e.path, missing.src);
      assert.ok(typeof e.errno === 'number' && e.errno < 0);
      assert.match(e.message, /^ENOENT: no such file or directory, open '/);
      return true;
    });
    assert.equal(existsSync(missing.dest), false);

    const noFolder = await fresh();
    await writeFile(noFolder.src, 'body');
    const gone = join(noFolder.dir, 'no-such-folder');
    await assert.rejects(commitFile(noFolder.src, join(gone, 'blob'), gone), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.syscall === 'rename');
    assert.equal(await readFile(noFolder.src, 'utf8'), 'body', 'a failed rename leaves the file where it was');

    const badFolder = await fresh();
    await writeFile(badFolder.src, 'body');
    const notAFolder = join(badFolder.dir, 'not-a-folder');
    await writeFile(notAFolder, '');
    // The folder sync is the last step: here it fails after the rename (destDir names a file).
    await assert.rejects(commitFile(badFolder.src, badFolder.dest, notAFolder), (e: NodeJS.ErrnoException) => e.code === 'ENOTDIR' && e.syscall === 'open');
  });

  test('bad arguments throw before anything is queued', () => {
    const binding = createRequire(import.meta.url)('../../build/Release/bulwark_fs.node') as {
      commitFile: (...args: unknown[]) => void;
      makeFolder: (...args: unknown[]) => void;
    };
    const done = (): void => assert.fail('no job may run');
    assert.throws(() => binding.commitFile('/tmp/a', null, false, '/tmp/b', '/tmp'), TypeError);
    assert.throws(() => binding.commitFile(1, null, false, '/tmp/b', '/tmp', done), TypeError);
    assert.throws(() => binding.commitFile('', null, false, '/tmp/b', '/tmp', done), RangeError);
    assert.throws(() => binding.commitFile('/tmp/a\0b', null, false, '/tmp/b', '/tmp', done), RangeError);
    assert.throws(() => binding.commitFile('/tmp/a', 'bytes', false, '/tmp/b', '/tmp', done), TypeError);
    assert.throws(() => binding.commitFile('/tmp/a', new Uint16Array(2), false, '/tmp/b', '/tmp', done), TypeError);
    assert.throws(() => binding.commitFile('/tmp/a', null, 'yes', '/tmp/b', '/tmp', done), TypeError);
    assert.throws(() => binding.commitFile('/tmp/a', null, false, '/tmp/b', '/tmp', 'done'), TypeError);
    assert.throws(() => binding.commitFile('/tmp/a', null, false, 'x'.repeat(5000), '/tmp', done), RangeError);
    assert.throws(() => binding.makeFolder('/tmp/a', ['/tmp/a/x'], done), TypeError);
    assert.throws(() => binding.makeFolder('/tmp/a', ['/tmp/a/x', 'text'], done), TypeError);
    assert.throws(() => binding.makeFolder('/tmp/a', Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? `/tmp/a/${i}` : Buffer.alloc(1))), done), TypeError);
  });
});

describe('makeFolder', () => {
  test('creates the folder and each file with its bytes', async () => {
    const { dir } = await fresh();
    const session = join(dir, 'session');
    await makeFolder(session, [
      [join(session, 'data'), Buffer.from('first bytes')],
      [join(session, 'info.json'), Buffer.from('{"repository":"a/b"}')],
      [join(session, 'empty'), new Uint8Array(0)],
    ]);
    assert.deepEqual((await readdir(session)).sort(), ['data', 'empty', 'info.json']);
    assert.equal(await readFile(join(session, 'data'), 'utf8'), 'first bytes');
    assert.equal(await readFile(join(session, 'info.json'), 'utf8'), '{"repository":"a/b"}');
    assert.equal((await readFile(join(session, 'empty'))).length, 0);
  });

  test('a folder that exists is an EEXIST from mkdir, and nothing in it is touched', async () => {
    const { dir } = await fresh();
    await mkdir(join(dir, 'taken'));
    await writeFile(join(dir, 'taken', 'data'), 'kept');
    await assert.rejects(makeFolder(join(dir, 'taken'), [[join(dir, 'taken', 'data'), Buffer.from('new')]]), (e: NodeJS.ErrnoException) => e.code === 'EEXIST' && e.syscall === 'mkdir');
    assert.equal(await readFile(join(dir, 'taken', 'data'), 'utf8'), 'kept');
  });
});

describe('readRange', () => {
  test('reads exactly the bytes from the position into the whole buffer, and says how many', async () => {
    const { dir } = await fresh();
    await mkdir(dir, { recursive: true });
    const path = join(dir, 'f');
    const content = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7 + 3) & 0xff));
    await writeFile(path, content);
    for (const [position, length] of [
      [0, content.length],
      [0, 1],
      [1234, 70_000],
      [content.length - 5, 5],
      [17, 0],
    ] as const) {
      const buf = Buffer.alloc(length, 0xaa);
      assert.equal(await readRange(path, position, buf), length, `${position}+${length}`);
      assert.deepEqual(buf, content.subarray(position, position + length), `${position}+${length}`);
    }
  });

  test('a file that ends first: the bytes it has, and their count (never an error, never more)', async () => {
    const { dir } = await fresh();
    const path = join(dir, 'short');
    await writeFile(path, 'abcdef');
    const buf = Buffer.alloc(10, 0x2e);
    assert.equal(await readRange(path, 2, buf), 4);
    assert.equal(buf.toString('latin1'), 'cdef......');
    assert.equal(await readRange(path, 6, Buffer.alloc(3)), 0, 'at the end');
    assert.equal(await readRange(path, 100, Buffer.alloc(3)), 0, 'past the end');
  });

  test("a missing file or a folder: node:fs's kind of error", async () => {
    const { dir, destDir } = await fresh();
    const missing = join(dir, 'nope');
    await assert.rejects(readRange(missing, 0, Buffer.alloc(4)), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.syscall === 'open' && e.path === missing);
    await assert.rejects(readRange(destDir, 0, Buffer.alloc(4)), (e: NodeJS.ErrnoException) => e.code === 'EISDIR' && e.syscall === 'read' && e.path === destDir);
  });

  test('bad arguments are refused before anything is queued', () => {
    const native = createRequire(import.meta.url)('../../build/Release/bulwark_fs.node') as Record<string, (...a: unknown[]) => unknown>;
    const readRangeRaw = native.readRange;
    assert.ok(readRangeRaw !== undefined);
    const done = (): void => assert.fail('done was called');
    assert.throws(() => readRangeRaw('', 0, Buffer.alloc(1), done), RangeError);
    assert.throws(() => readRangeRaw('a\0b', 0, Buffer.alloc(1), done), RangeError);
    for (const position of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) assert.throws(() => readRangeRaw('/x', position, Buffer.alloc(1), done), RangeError, String(position));
    for (const position of ['0', 0n, null]) assert.throws(() => readRangeRaw('/x', position, Buffer.alloc(1), done), TypeError, String(position));
    assert.throws(() => readRangeRaw('/x', 0, new Uint16Array(2), done), TypeError);
    assert.throws(() => readRangeRaw('/x', 0, 'bytes', done), TypeError);
    assert.throws(() => readRangeRaw('/x', 0, Buffer.alloc(1), 'done'), TypeError);
    assert.throws(() => readRangeRaw('/x', 0, Buffer.alloc(1)), TypeError);
  });
});

describe('FsBlobStore fan-out folders', () => {
  test('init creates every blobs/<alg>/<00..ff> folder, and a second init over them is fine', async () => {
    const { dir } = await fresh();
    await (await new FsBlobStore(dir).init()).close();
    const store = await new FsBlobStore(dir).init();
    try {
      for (const alg of ['sha256', 'sha512']) {
        const folders = (await readdir(join(dir, 'blobs', alg))).sort();
        assert.equal(folders.length, 256, alg);
        assert.equal(folders[0], '00');
        assert.equal(folders[255], 'ff');
      }
    } finally {
      await store.close();
    }
  });
});
