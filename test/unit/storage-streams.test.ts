/**
 * The two stream pieces under the filesystem store's fast paths: FlushingWriter (background
 * fdatasync while a body arrives) and FileRangeStream (pull chunks handed back for reuse).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, mock, test } from 'node:test';
import { FlushingWriter } from '../../src/storage/flushing-writer.js';
import { FileRangeStream, FsBlobStore, ONE_READ, RecyclePool, isRecycling, readSmallRange, sharedFreeList } from '../../src/storage/index.js';
import { isRegistryError } from '../../src/oci/index.js';
import { collect } from '../testkit/streams.js';
import { EncryptTransform } from '../../src/encryption/segment-streams.js';
import { AsyncSha256 } from '../../src/encryption/native.js';

const MiB = 1024 * 1024;
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bulwark-streams-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** `total` bytes in pieces of `piece` bytes, from a fixed random buffer. */
function pieces(source: Buffer, piece: number): Readable {
  const parts: Buffer[] = [];
  for (let off = 0; off < source.length; off += piece) parts.push(source.subarray(off, off + piece));
  return Readable.from(parts);
}

/** A FileHandle whose datasync() is counted, and fails when told to. */
function instrumented(fh: FileHandle, failSync: boolean): { fh: FileHandle; syncs: () => number } {
  let syncs = 0;
  const proxy = new Proxy(fh, {
    get(target, prop, receiver) {
      if (prop === 'datasync') {
        return async () => {
          syncs++;
          if (failSync) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
          await target.datasync();
        };
      }
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { fh: proxy, syncs: () => syncs };
}

describe('FlushingWriter', () => {
  test('appends every byte in order and flushes in the background while the body arrives', async () => {
    const data = randomBytes(9 * MiB + 123);
    const path = join(dir, 'flush-known');
    await writeFile(path, 'prefix:');
    const raw = await open(path, 'a');
    const { fh, syncs } = instrumented(raw, false);
    await pipeline(pieces(data, 64 * 1024), new FlushingWriter(fh, { flushEvery: 2 * MiB, expectedBytes: data.length }));
    await raw.close();
    assert.deepEqual(await readFile(path), Buffer.concat([Buffer.from('prefix:'), data]));
    assert.ok(syncs() >= 1, 'at least one background flush for a 9 MiB body with a 2 MiB interval');
  });

  test('starts no flush once the declared length has arrived (the caller would only wait for it)', async () => {
    const data = randomBytes(2 * MiB);
    const raw = await open(join(dir, 'flush-exact'), 'w');
    const { fh, syncs } = instrumented(raw, false);
    // one 2 MiB chunk reaches the interval exactly when the body is complete
    await pipeline(Readable.from([data]), new FlushingWriter(fh, { flushEvery: 2 * MiB, expectedBytes: data.length }));
    await raw.close();
    assert.equal(syncs(), 0);
  });

  test('a failed background flush fails the write: the body is never reported as stored', async () => {
    const raw = await open(join(dir, 'flush-fails'), 'w');
    const { fh } = instrumented(raw, true);
    await assert.rejects(
      pipeline(pieces(randomBytes(4 * MiB), 256 * 1024), new FlushingWriter(fh, { flushEvery: MiB })),
      /EIO/,
    );
    await raw.close();
  });
});

describe('EncryptTransform backpressure', () => {
  test('a consumer slower than the body holds the body back, whether or not the ciphertext is hashed', async () => {
    for (const hashed of [false, true]) {
      // A body that trickles in, like one from the network: the hashes are never far behind it,
      // so only the consumer (a disk slower than the network) can make it wait.
      const piece = randomBytes(64 * 1024);
      let sent = 0;
      const source = new Readable({
        read() {
          setImmediate(() => this.push(sent++ < 512 ? piece : null));
        },
      });
      const encrypt = new EncryptTransform({
        key: randomBytes(32),
        objectId: randomBytes(16),
        segmentSize: 256 * 1024,
        firstIndex: 0,
        hash: new AsyncSha256(),
        cipherHash: hashed ? new AsyncSha256() : undefined,
      });
      let written = 0;
      let worst = 0;
      const slow = new Writable({
        highWaterMark: MiB,
        write(chunk: Buffer, _enc, cb) {
          written += chunk.length;
          setTimeout(cb, 8);
        },
      });
      const sampler = setInterval(() => (worst = Math.max(worst, encrypt.bytes - written)), 5);
      await pipeline(source, encrypt, slow);
      clearInterval(sampler);
      assert.ok(worst < 6 * MiB, `${hashed ? 'with' : 'without'} a ciphertext hash, the body ran ${worst} bytes ahead of what was written`);
    }
  });
});

describe('EncryptTransform buffers', () => {
  const options = (hash?: AsyncSha256): ConstructorParameters<typeof EncryptTransform>[0] => ({
    key: randomBytes(32),
    objectId: randomBytes(16),
    segmentSize: 256 * 1024,
    firstIndex: 0,
    hash: hash ?? new AsyncSha256(),
    cipherHash: new AsyncSha256(),
  });

  test('whole-segment buffers go back to the next push, even those the consumer returns after the end', async () => {
    const body = randomBytes(MiB);
    const run = async (late: boolean): Promise<void> => {
      const opts = options();
      const encrypt = new EncryptTransform(opts);
      const returns: Buffer[] = [];
      await pipeline(
        Readable.from([body.subarray(0, MiB / 2), body.subarray(MiB / 2)]),
        encrypt,
        new Writable({
          write(chunk: Buffer, _e, cb) {
            if (late) returns.push(chunk);
            else encrypt.recycle(chunk);
            cb();
          },
        }),
      );
      // Like the file store's writer, whose last writes complete after the stream has ended.
      for (const c of returns) encrypt.recycle(c);
      // Like the commit, which names the object by the ciphertext hash.
      await opts.cipherHash?.digest();
    };
    await run(true);
    const alloc = mock.method(Buffer, 'allocUnsafeSlow');
    try {
      await run(false);
    } finally {
      alloc.mock.restore();
    }
    const segments = alloc.mock.calls.filter((c) => c.arguments[0] >= 256 * 1024);
    assert.equal(segments.length, 0, 'the second push allocated segment buffers of its own');
  });

  test('a sealed segment the consumer hands back at once is not reused before the ciphertext hash has read it', async () => {
    const opts = options();
    const encrypt = new EncryptTransform(opts);
    const copies: Buffer[] = [];
    await pipeline(
      Readable.from(Array.from({ length: 64 }, () => randomBytes(256 * 1024))),
      encrypt,
      new Writable({
        write(chunk: Buffer, _e, cb) {
          copies.push(Buffer.from(chunk));
          encrypt.recycle(chunk); // at once, as a writer whose write completed
          cb();
        },
      }),
    );
    const expected = `sha256:${createHash('sha256').update(Buffer.concat(copies)).digest('hex')}`;
    assert.equal(await opts.cipherHash?.digest(), expected, 'the ciphertext hash read a buffer that was already sealed over');
  });

  test('a stream destroyed while it waits for its hashes copies no plaintext into a buffer', async () => {
    const hash = new AsyncSha256();
    hash.update(randomBytes(32 * MiB)); // still hashing when the body's first chunk arrives
    const encrypt = new EncryptTransform(options(hash));
    const take = mock.method(RecyclePool.prototype, 'take');
    try {
      encrypt.on('error', () => undefined);
      encrypt.write(randomBytes(300 * 1024));
      encrypt.destroy();
      await hash.whenBelow(0);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      take.mock.restore();
    }
    assert.equal(take.mock.callCount(), 0);
  });
});

describe('RecyclePool', () => {
  test('a stream keeps its own buffers; the rest, and all of them at close, go to the shared list, wiped', () => {
    const shared = sharedFreeList('test-wipe', 64, 2, true);
    const a = new RecyclePool(64, 1, shared);
    const [b1, b2, b3] = [a.take(), a.take(), a.take()];
    for (const b of [b1, b2, b3]) {
      b.fill(0x77);
      a.lend(b);
    }
    a.recycle(b1.subarray(0, 10)); // kept by the stream, as it was
    assert.equal(shared.buffers.length, 0);
    assert.equal(a.take().buffer, b1.buffer, 'the stream reuses its own buffer first');
    a.lend(b1);
    a.recycle(b1);
    a.recycle(b2); // beyond the stream's own keep: to the shared list
    assert.equal(shared.buffers.length, 1);
    a.close(); // its own free buffer moves over too
    a.recycle(b3); // the consumer's last chunk, after the end: the list is full, dropped
    assert.equal(shared.buffers.length, 2);
    assert.ok(shared.buffers.every((b) => b.every((x) => x === 0)), 'plaintext left in a shared buffer');
    assert.ok(b3.every((x) => x === 0), 'a dropped buffer keeps its plaintext');
    const next = new RecyclePool(64, 1, sharedFreeList('test-wipe', 64, 2, true));
    assert.ok([b1.buffer, b2.buffer].includes(next.take().buffer), 'the next stream starts with the shared buffers');
    assert.throws(() => sharedFreeList('test-wipe', 64, 2, false), /exists with keep=2, wipe=true/);
    assert.throws(() => new RecyclePool(32, 1, shared), /cannot share/);
  });
});

describe('FlushingWriter recycling', () => {
  test('hands each chunk back only after the file has taken it, and the file holds every byte', async () => {
    const source = randomBytes(3 * MiB + 5);
    const path = join(dir, 'recycled');
    const fh = await open(path, 'w');
    const back: Buffer[] = [];
    const w = new FlushingWriter(fh, {
      flushEvery: 0,
      recycle: (c) => {
        back.push(c);
        c.fill(0); // the producer reuses it at once: the file must already hold its bytes
      },
    });
    const chunks = Array.from({ length: 13 }, (_, i) => Buffer.from(source.subarray(i * 256 * 1024, (i + 1) * 256 * 1024)));
    await pipeline(Readable.from(chunks), w);
    await fh.close();
    assert.deepEqual(await readFile(path), source);
    assert.equal(back.length, chunks.length, 'every chunk came back once');
  });
});

describe('FileRangeStream', () => {
  let path: string;
  let content: Buffer;
  before(async () => {
    content = randomBytes(5 * MiB + 777);
    path = join(dir, 'range-source');
    await writeFile(path, content);
  });

  test('reads the whole file, or exactly the byte range asked for, to an ordinary consumer', async () => {
    assert.deepEqual(await collect(new FileRangeStream(await open(path, 'r'), 0, content.length)), content);
    const cases: [number, number][] = [
      [0, 1],
      [MiB - 1, MiB + 1],
      [123, 3 * MiB + 5],
      [content.length - 10, content.length],
    ];
    for (const [start, end] of cases) {
      assert.deepEqual(await collect(new FileRangeStream(await open(path, 'r'), start, end)), content.subarray(start, end), `${start}-${end}`);
    }
  });

  test('recycled chunks are reused for later reads without corrupting what was already consumed', async () => {
    const s = new FileRangeStream(await open(path, 'r'), 0, content.length);
    assert.ok(isRecycling(s));
    const hash = createHash('sha256');
    const memories = new Set<ArrayBufferLike>();
    for await (const chunk of s as AsyncIterable<Buffer>) {
      memories.add(chunk.buffer);
      hash.update(chunk);
      chunk.fill(0xee); // scribble over it: a reuse that overlapped a live chunk would show
      s.recycle(chunk);
    }
    assert.equal(hash.digest('hex'), createHash('sha256').update(content).digest('hex'));
    assert.ok(memories.size < 6, `6 chunks read through ${memories.size} buffers: recycled memory is reused`);
  });

  test('a chunk the stream did not produce is never taken into its pool', async () => {
    const s = new FileRangeStream(await open(path, 'r'), 0, 3 * MiB);
    const foreign = Buffer.alloc(MiB, 0x55);
    s.recycle(foreign);
    const out = await collect(s);
    assert.deepEqual(out, content.subarray(0, 3 * MiB));
    assert.ok(foreign.every((b) => b === 0x55));
  });

  test('a later stream reuses the buffers an earlier one recycled, and a range just past a chunk is one read', async () => {
    const drain = async (s: FileRangeStream): Promise<number[]> => {
      const sizes: number[] = [];
      for await (const chunk of s as AsyncIterable<Buffer>) {
        sizes.push(chunk.length);
        s.recycle(chunk);
      }
      return sizes;
    };
    await drain(new FileRangeStream(await open(path, 'r'), 0, 2 * MiB));
    const alloc = mock.method(Buffer, 'allocUnsafeSlow');
    let sizes: number[];
    try {
      sizes = await drain(new FileRangeStream(await open(path, 'r'), 0, MiB + 300));
    } finally {
      alloc.mock.restore();
    }
    assert.deepEqual(sizes, [MiB + 300], 'a sliver past 1 MiB was read on its own');
    assert.equal(alloc.mock.callCount(), 0, 'the second stream allocated a buffer of its own');
  });

  test('a file shorter than the range ends the stream with an error, not with short data', async () => {
    await assert.rejects(collect(new FileRangeStream(await open(path, 'r'), 0, content.length + 10)), /ended 10 bytes early/);
  });
});

describe('readSmallRange (one job: open, read, close)', () => {
  let path: string;
  let content: Buffer;
  before(async () => {
    content = randomBytes(3 * MiB + 999);
    path = join(dir, 'small-range-source');
    await writeFile(path, content);
  });

  test('one chunk holding exactly the range, up to a chunk and its slack; more is refused', async () => {
    for (const [start, end] of [
      [0, 1],
      [5, 5],
      [MiB - 3, 2 * MiB + 3],
      [100, 100 + ONE_READ],
      [content.length - 700, content.length],
    ] as const) {
      const s = await readSmallRange(path, start, end);
      const chunks: Buffer[] = [];
      for await (const c of s as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
      assert.ok(chunks.length <= 1, `${start}-${end}: ${chunks.length} chunks`);
      assert.deepEqual(Buffer.concat(chunks), content.subarray(start, end), `${start}-${end}`);
    }
    await assert.rejects(readSmallRange(path, 0, ONE_READ + 1), RangeError);
  });

  /** Reads a small range to its end, recycling its chunks; the memory of each. */
  const drain = async (s: Awaited<ReturnType<typeof readSmallRange>>): Promise<{ bytes: Buffer; memory: ArrayBufferLike[] }> => {
    const parts: Buffer[] = [];
    const memory: ArrayBufferLike[] = [];
    for await (const c of s as AsyncIterable<Buffer>) {
      parts.push(Buffer.from(c));
      memory.push(c.buffer);
      c.fill(0xee); // scribbled over: a buffer handed out again unread would show it
      s.recycle(c);
    }
    return { bytes: Buffer.concat(parts), memory };
  };

  test('its chunk comes back through recycle and the next full-size read takes it instead of allocating', async () => {
    const first = await readSmallRange(path, 0, MiB + 300);
    assert.ok(isRecycling(first));
    const a = await drain(first);
    assert.equal(a.memory.length, 1);
    const alloc = mock.method(Buffer, 'allocUnsafeSlow');
    let b: Awaited<ReturnType<typeof drain>>;
    try {
      b = await drain(await readSmallRange(path, 10, MiB + 10));
    } finally {
      alloc.mock.restore();
    }
    assert.equal(alloc.mock.callCount(), 0, 'the second read allocated a buffer of its own');
    assert.ok(b.memory[0] === a.memory[0], 'the second read did not take the buffer the first one gave back');
    assert.deepEqual(b.bytes, content.subarray(10, MiB + 10), 'the recycled memory was read over, not handed out as it was');
  });

  test('a stream destroyed before it is read, and a read that fails, give their buffer back', async () => {
    // Streams held unread keep their buffers: with three of them the shared free list is empty.
    const held = [await readSmallRange(path, 0, MiB), await readSmallRange(path, 0, MiB), await readSmallRange(path, 0, MiB)];
    const alloc = mock.method(Buffer, 'allocUnsafeSlow');
    try {
      (await readSmallRange(path, 0, MiB)).destroy();
      const allocated = alloc.mock.callCount();
      assert.equal(allocated, 1, 'the list was not empty: the test proves nothing');
      const again = await readSmallRange(path, 0, MiB);
      assert.equal(alloc.mock.callCount(), allocated, 'the stream destroyed unread kept its buffer');
      again.destroy();
      await assert.rejects(readSmallRange(path, content.length - 1, content.length - 1 + MiB), /bytes early/);
      const after = await readSmallRange(path, 0, MiB);
      assert.equal(alloc.mock.callCount(), allocated, 'the read that failed kept its buffer');
      assert.deepEqual(await collect(after), content.subarray(0, MiB));
    } finally {
      alloc.mock.restore();
      for (const h of held) h.destroy();
    }
  });

  test('a file shorter than the range is an error before any byte is handed out; a missing file is ENOENT', async () => {
    await assert.rejects(readSmallRange(path, content.length - 4, content.length + 6), /ended 6 bytes early/);
    await assert.rejects(readSmallRange(join(dir, 'no-such-file'), 0, 10), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  });

  test('FsBlobStore reads a small range of a blob this way; a missing or truncated blob fails before the answer', async () => {
    const store = await new FsBlobStore(join(dir, 'small-range-store')).init();
    try {
      const data = randomBytes(MiB + 4321);
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}` as const;
      await store.put(data, digest);
      assert.deepEqual(await collect(await store.read(digest, { start: 77, end: MiB + 99 })), data.subarray(77, MiB + 100));
      assert.deepEqual(await collect(await store.read(digest, { start: 0, end: data.length - 1 })), data);
      const missing = `sha256:${'0'.repeat(64)}` as const;
      await assert.rejects(store.read(missing, { start: 0, end: 9 }), (e: unknown) => isRegistryError(e) && e.code === 'BLOB_UNKNOWN');
      const file = join(dir, 'small-range-store', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
      await writeFile(file, data.subarray(0, 1000));
      await assert.rejects(store.read(digest, { start: 0, end: 1999 }), /ended 1000 bytes early/);
    } finally {
      await store.close();
    }
  });
});
