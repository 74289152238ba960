/**
 * Direct I/O for large bodies and reads (native/fs.c appendDirect and readDirect, DirectWriter,
 * FileRangeStream's direct mode, FsBlobStore's choice; ADR 0024), on a real file system: the bytes
 * that land and come back are exactly the ones given, wherever a write or read starts and ends
 * against the 4 KiB blocks, and bad arguments are refused before anything is queued. That the
 * large body really is opened with O_DIRECT is watched with strace in
 * test/integration/blob-durability.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { DirectWriter } from '../../src/storage/direct-writer.js';
import { FileRangeStream } from '../../src/storage/file-range-stream.js';
import { FsBlobStore } from '../../src/storage/index.js';
import { appendDirect, readDirect } from '../../src/storage/native-fs.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'bulwark-direct-io-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let n = 0;
const fresh = (): string => join(root, `file-${n++}`);
const DIRECT = constants.O_RDWR | constants.O_CREAT | constants.O_DIRECT;

/** `bytes` cut into pieces of the given sizes, repeated, as separate buffers. */
function cut(bytes: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const k = Math.min(sizes[i % sizes.length] as number, bytes.length - at);
    out.push(Buffer.from(bytes.subarray(at, at + k)));
    at += k;
  }
  return out;
}

async function withDirect<T>(path: string, use: (fd: number) => Promise<T>): Promise<T> {
  const fh = await open(path, DIRECT, 0o600);
  try {
    return await use(fh.fd);
  } finally {
    await fh.close();
  }
}

describe('appendDirect', () => {
  test('writes chunks of any sizes from an aligned or unaligned position, the bytes before it kept', async () => {
    for (const head of [0, 1, 4095, 4096, 5000, 70000]) {
      const path = fresh();
      const before = randomBytes(head);
      await writeFile(path, before);
      // More than one bounce buffer's worth (1 MiB and 8 KiB), in uneven pieces.
      const body = randomBytes(3 * (1 << 20) + 777);
      const written = await withDirect(path, (fd) => appendDirect(fd, head, cut(body, [1, 65536, 300001, 4096, 17]), true));
      assert.equal(written, body.length, `head ${head}: all written`);
      assert.ok((await readFile(path)).equals(Buffer.concat([before, body])), `head ${head}: the file holds exactly the bytes before and the body`);
    }
  });

  test('not final: only whole blocks are written, and it says how many of the bytes given that was', async () => {
    const path = fresh();
    await writeFile(path, Buffer.alloc(100, 7));
    const body = randomBytes(10000);
    const written = await withDirect(path, (fd) => appendDirect(fd, 100, [body], false));
    assert.equal(written, 8192 - 100, 'up to the last whole block');
    const file = await readFile(path);
    assert.equal(file.length, 8192);
    assert.ok(file.subarray(100).equals(body.subarray(0, 8192 - 100)));
    // Fewer bytes than complete a block: nothing is written.
    assert.equal(await withDirect(path, (fd) => appendDirect(fd, 8192, [Buffer.alloc(10)], false)), 0);
    assert.equal((await readFile(path)).length, 8192);
  });

  test('an empty final append of nothing writes nothing', async () => {
    const path = fresh();
    await writeFile(path, 'abc');
    assert.equal(await withDirect(path, (fd) => appendDirect(fd, 3, [], true)), 0);
    assert.equal(await readFile(path, 'utf8'), 'abc');
  });

  test('a position past the end of the file fails (it would leave a hole), and writes nothing', async () => {
    const path = fresh();
    await writeFile(path, Buffer.alloc(10));
    for (const position of [20, 4096]) {
      await assert.rejects(
        withDirect(path, (fd) => appendDirect(fd, position, [Buffer.alloc(5000)], true)),
        (e: NodeJS.ErrnoException) => e.code === 'EINVAL' && e.syscall === 'fstat',
        `position ${position}`,
      );
    }
    assert.equal((await readFile(path)).length, 10);
  });

  test('a descriptor without O_DIRECT, or with O_APPEND, is refused, and nothing is written', async () => {
    const path = fresh();
    await writeFile(path, 'abc');
    for (const flags of [constants.O_RDWR, constants.O_RDWR | constants.O_APPEND | constants.O_DIRECT]) {
      const fh = await open(path, flags);
      try {
        await assert.rejects(appendDirect(fh.fd, 3, [Buffer.alloc(8192, 1)], true), (e: NodeJS.ErrnoException) => e.code === 'EINVAL');
        await assert.rejects(readDirect(fh.fd, 0, Buffer.alloc(3)), (e: NodeJS.ErrnoException) => e.code === 'EINVAL');
      } finally {
        await fh.close();
      }
    }
    assert.equal(await readFile(path, 'utf8'), 'abc');
  });

  test('refuses bad arguments before queueing anything', async () => {
    const path = fresh();
    await writeFile(path, '');
    await withDirect(path, async (fd) => {
      await assert.rejects(appendDirect(-1, 0, [], true), TypeError);
      await assert.rejects(appendDirect(1.5, 0, [], true), TypeError);
      await assert.rejects(appendDirect(fd, -1, [], true), RangeError);
      await assert.rejects(appendDirect(fd, 0.5, [], true), RangeError);
      await assert.rejects(appendDirect(fd, 0, ['text' as unknown as Uint8Array], true), TypeError);
      await assert.rejects(appendDirect(fd, 0, Array.from({ length: 1025 }, () => new Uint8Array(1)), true), TypeError);
    });
    assert.equal((await readFile(path)).length, 0);
  });
});

describe('readDirect', () => {
  test('reads any range exactly, wherever it starts and ends against the blocks', async () => {
    const path = fresh();
    const content = randomBytes(3 * (1 << 20) + 123);
    await writeFile(path, content);
    const cases: [number, number][] = [
      [0, 10],
      [1, 4095],
      [4095, 2],
      [4097, 1 << 20],
      [(1 << 20) + 3, (2 << 20) + 100],
      [content.length - 100, 100],
    ];
    await withDirect(path, async (fd) => {
      for (const [at, length] of cases) {
        const buf = Buffer.alloc(length);
        assert.equal(await readDirect(fd, at, buf), length, `${at}+${length}: all read`);
        assert.ok(buf.equals(content.subarray(at, at + length)), `${at}+${length}: the right bytes`);
      }
      // At and past the end: fewer, then none.
      const buf = Buffer.alloc(5000);
      assert.equal(await readDirect(fd, content.length - 10, buf), 10);
      assert.ok(buf.subarray(0, 10).equals(content.subarray(content.length - 10)));
      assert.equal(await readDirect(fd, content.length + 5, buf), 0);
    });
  });

  test('refuses bad arguments', async () => {
    const path = fresh();
    await writeFile(path, 'x');
    await withDirect(path, async (fd) => {
      await assert.rejects(readDirect(fd, -2, Buffer.alloc(1)), RangeError);
      await assert.rejects(readDirect(fd, 0, 'x' as unknown as Uint8Array), TypeError);
    });
  });
});

describe('DirectWriter', () => {
  test('appends a body in uneven chunks after the bytes a file has, and hands every chunk back', async () => {
    const path = fresh();
    const before = randomBytes(12345);
    await writeFile(path, before);
    const body = randomBytes(5 * (1 << 20) + 4321);
    const chunks = cut(body, [65536, 1000, 262172, 3, 4096]);
    const back = new Set<Buffer>();
    const fh = await open(path, DIRECT);
    const writer = new DirectWriter(fh, { position: before.length, recycle: (c) => back.add(c) });
    try {
      await pipeline(Readable.from(chunks), writer);
    } finally {
      await writer.idle();
      await fh.close();
    }
    assert.ok((await readFile(path)).equals(Buffer.concat([before, body])));
    assert.equal(back.size, chunks.length, 'every chunk came back');
    for (const c of chunks) assert.ok(back.has(c));
  });

  test('destroyed while a write runs, it closes only once the write is done (the file may be closed then)', async () => {
    const path = fresh();
    await writeFile(path, '');
    const fh = await open(path, DIRECT);
    const writer = new DirectWriter(fh, { position: 0 });
    const body = randomBytes((8 << 20) + 100);
    writer.write(body);
    const closed = new Promise<void>((resolve) => writer.once('close', resolve));
    writer.destroy();
    await closed;
    // Without the wait, 'close' came before the pool thread had written the 8 MiB.
    const size = (await fh.stat()).size;
    await fh.close();
    assert.equal(size, 8 << 20, 'the whole blocks of the write were on the file when it closed (the partial one waits for more)');
    assert.ok((await readFile(path)).equals(body.subarray(0, 8 << 20)));
  });
});

describe('FileRangeStream, direct', () => {
  test('streams exactly the range, in order, with reads running ahead', async () => {
    const path = fresh();
    const content = randomBytes(6 * (1 << 20) + 999);
    await writeFile(path, content);
    for (const [start, end] of [
      [0, content.length],
      [4097, content.length - 3],
      [(1 << 20) - 1, (3 << 20) + 1],
    ] as const) {
      const fh = await open(path, constants.O_RDONLY | constants.O_DIRECT);
      const stream = new FileRangeStream(fh, start, end, true);
      const got: Buffer[] = [];
      for await (const c of stream) {
        got.push(Buffer.from(c as Buffer));
        stream.recycle(c as Buffer);
      }
      assert.ok(Buffer.concat(got).equals(content.subarray(start, end)), `${start}-${end}`);
    }
  });

  test('a file shorter than the range is an error, never a short answer', async () => {
    const path = fresh();
    await writeFile(path, randomBytes(3 << 20));
    const fh = await open(path, constants.O_RDONLY | constants.O_DIRECT);
    const stream = new FileRangeStream(fh, 0, 5 << 20, true);
    await assert.rejects(
      (async () => {
        for await (const c of stream) stream.recycle(c as Buffer);
      })(),
      /file ended \d+ bytes early/,
    );
  });

  test('destroyed with reads running, it closes its file once they are done', async () => {
    const path = fresh();
    await writeFile(path, randomBytes(8 << 20));
    const fh = await open(path, constants.O_RDONLY | constants.O_DIRECT);
    const stream = new FileRangeStream(fh, 0, 8 << 20, true);
    await new Promise<void>((resolve) => stream.once('readable', resolve));
    const closed = new Promise<void>((resolve) => stream.once('close', resolve));
    stream.destroy();
    await closed;
    await assert.rejects(fh.stat(), (e: NodeJS.ErrnoException) => e.code === 'EBADF', 'the file is closed');
  });
});

describe('FsBlobStore with direct I/O', () => {
  const digestOf = (b: Buffer): `sha256:${string}` => `sha256:${createHash('sha256').update(b).digest('hex')}`;

  test('an upload of small (page cache) and large (direct) chunks commits the exact bytes, read back both ways', async () => {
    const dir = await mkdtemp(join(root, 'store-'));
    const store = await new FsBlobStore(dir, { directMinBytes: 64 << 10 }).init();
    assert.equal(store.usesDirectIo(64 << 10), true, 'this file system takes direct I/O');
    assert.equal(store.usesDirectIo((64 << 10) - 1), false);
    const parts = [randomBytes(1000), randomBytes((1 << 20) + 5), randomBytes(333), randomBytes(3 << 20)];
    const id = randomUUID();
    await store.startUpload(id, 'direct/test');
    for (const p of parts) await store.appendUpload(id, Readable.from(cut(p, [65536, 7])), { length: p.length });
    const whole = Buffer.concat(parts);
    const info = await store.commitUpload(id, digestOf(whole));
    assert.equal(info.size, whole.length);
    const read = async (start: number, end: number): Promise<Buffer> => {
      const chunks: Buffer[] = [];
      for await (const c of await store.read(info.digest, { start, end })) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    };
    assert.ok((await read(0, whole.length - 1)).equals(whole), 'the whole blob (a direct read)');
    assert.ok((await read(5, 2000)).equals(whole.subarray(5, 2001)), 'a small range (through the page cache)');
    assert.equal((await store.verify(info.digest)).ok, true);
    await store.close();
  });

  test('a large append that fails midway rolls back to where it started; the session goes on', async () => {
    const dir = await mkdtemp(join(root, 'store-'));
    const store = await new FsBlobStore(dir, { directMinBytes: 64 << 10 }).init();
    const first = randomBytes(5000);
    const id = randomUUID();
    await store.startUpload(id, 'direct/test');
    await store.appendUpload(id, Readable.from([first]), { length: first.length });
    const failing = Readable.from(
      (async function* () {
        yield randomBytes(2 << 20);
        throw new Error('cut off');
      })(),
    );
    await assert.rejects(store.appendUpload(id, failing, { length: 4 << 20 }));
    assert.equal((await store.getUpload(id))?.size, first.length);
    const second = randomBytes(300000);
    await store.appendUpload(id, Readable.from([second]), { length: second.length });
    const whole = Buffer.concat([first, second]);
    assert.equal((await store.commitUpload(id, digestOf(whole))).size, whole.length);
    await store.close();
  });

  test('directMinBytes 0 turns it off', async () => {
    const store = await new FsBlobStore(await mkdtemp(join(root, 'store-')), { directMinBytes: 0 }).init();
    assert.equal(store.usesDirectIo(1 << 30), false);
    await store.close();
  });
});
