/**
 * The native crypto module (native/crypto.c, ADR 0007), checked against node:crypto, which uses
 * the same OpenSSL: AES-256-GCM into caller buffers must produce and accept exactly what
 * node:crypto does, refuse anything that does not authenticate without leaving plaintext behind,
 * and refuse bad arguments without writing; SHA-256 on the thread pool must equal createHash, and
 * sealing a batch of segments on the thread pool must equal both, and wipe what it sealed.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { AsyncSha256, aesGcm, sealSegments, type SegmentToSeal } from '../../src/encryption/native.js';

function nodeSeal(key: Buffer, nonce: Buffer, aad: Buffer, plain: Buffer): { ct: Buffer; tag: Buffer } {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return { ct, tag: c.getAuthTag() };
}

function nativeSeal(key: Buffer, nonce: Buffer, aad: Buffer, plain: Buffer): { ct: Buffer; tag: Buffer } {
  const ct = Buffer.alloc(plain.length);
  const tag = Buffer.alloc(16);
  aesGcm.seal(key, nonce, aad, plain, ct, tag);
  return { ct, tag };
}

describe('native AES-256-GCM', () => {
  const sizes = [1, 15, 16, 17, 4096, 65_537, 256 * 1024, 1024 * 1024 + 3];

  test('seals exactly what node:crypto seals, and each opens what the other sealed', () => {
    for (const size of sizes) {
      const key = randomBytes(32);
      const nonce = randomBytes(12);
      const aad = randomBytes(size % 2 === 0 ? 37 : 0);
      const plain = randomBytes(size);
      const mine = nativeSeal(key, nonce, aad, plain);
      const theirs = nodeSeal(key, nonce, aad, plain);
      assert.ok(mine.ct.equals(theirs.ct), `ciphertext of ${size} bytes differs from node:crypto's`);
      assert.ok(mine.tag.equals(theirs.tag), `tag of ${size} bytes differs from node:crypto's`);
      const out = Buffer.alloc(size);
      assert.equal(aesGcm.open(key, nonce, aad, theirs.ct, theirs.tag, out), true, `open of ${size} bytes`);
      assert.ok(out.equals(plain), `plaintext of ${size} bytes`);
      const d = createDecipheriv('aes-256-gcm', key, nonce);
      d.setAAD(aad);
      d.setAuthTag(mine.tag);
      assert.ok(Buffer.concat([d.update(mine.ct), d.final()]).equals(plain), `node:crypto opens ours (${size} bytes)`);
    }
  });

  test('opens in place, into an output longer than the input, and from views into larger buffers', () => {
    const key = randomBytes(32);
    const nonce = randomBytes(12);
    const plain = randomBytes(10_000);
    const { ct, tag } = nodeSeal(key, nonce, Buffer.alloc(0), plain);
    const inPlace = Buffer.from(ct);
    assert.equal(aesGcm.open(key, nonce, Buffer.alloc(0), inPlace, tag, inPlace), true);
    assert.ok(inPlace.equals(plain));
    const big = Buffer.alloc(20_000, 0x77);
    assert.equal(aesGcm.open(key, nonce, Buffer.alloc(0), ct, tag, big.subarray(5, 15_000)), true);
    assert.ok(big.subarray(5, 10_005).equals(plain));
    assert.ok(big.subarray(10_005, 15_000).every((b) => b === 0x77), 'bytes past the plaintext are untouched');
  });

  test('anything that does not authenticate is refused, and no plaintext is left in the output', () => {
    const key = randomBytes(32);
    const nonce = randomBytes(12);
    const aad = randomBytes(37);
    const plain = randomBytes(300_000);
    const { ct, tag } = nodeSeal(key, nonce, aad, plain);
    const flip = (b: Buffer, i: number): Buffer => {
      const c = Buffer.from(b);
      c[i] = (c[i] as number) ^ 1;
      return c;
    };
    const cases: [string, Buffer, Buffer, Buffer, Buffer, Buffer][] = [
      ['a flipped ciphertext byte', key, nonce, aad, flip(ct, 12_345), tag],
      ['the last ciphertext byte flipped', key, nonce, aad, flip(ct, ct.length - 1), tag],
      ['a flipped tag byte', key, nonce, aad, ct, flip(tag, 15)],
      ['other authenticated data', key, nonce, flip(aad, 0), ct, tag],
      ['another nonce', key, flip(nonce, 11), aad, ct, tag],
      ['another key', flip(key, 31), nonce, aad, ct, tag],
      ['a truncated ciphertext', key, nonce, aad, ct.subarray(0, ct.length - 1), tag],
    ];
    for (const [what, k, n, a, c, t] of cases) {
      const out = Buffer.alloc(ct.length, 0x55);
      assert.equal(aesGcm.open(k, n, a, c, t, out), false, `${what} was accepted`);
      assert.ok(out.subarray(0, c.length).every((b) => b === 0), `${what}: unauthenticated plaintext left in the output`);
    }
  });

  test('bad arguments throw and write nothing', () => {
    const key = randomBytes(32);
    const nonce = randomBytes(12);
    const plain = randomBytes(1000);
    const out = Buffer.alloc(1000, 0x33);
    const tag = Buffer.alloc(16, 0x33);
    const untouched = (): void => {
      assert.ok(out.every((b) => b === 0x33) && tag.every((b) => b === 0x33), 'an output was written');
    };
    const bad: [string, () => unknown, RegExp][] = [
      ['short key', () => aesGcm.seal(key.subarray(1), nonce, Buffer.alloc(0), plain, out, tag), /key must be 32 bytes/],
      ['long nonce', () => aesGcm.seal(key, randomBytes(16), Buffer.alloc(0), plain, out, tag), /nonce must be 12 bytes/],
      ['short tag', () => aesGcm.seal(key, nonce, Buffer.alloc(0), plain, out, tag.subarray(1)), /tag must be 16 bytes/],
      ['short output', () => aesGcm.seal(key, nonce, Buffer.alloc(0), plain, out.subarray(1), tag), /shorter than the plaintext/],
      ['overlap', () => aesGcm.seal(key, nonce, Buffer.alloc(0), out.subarray(0, 500), out.subarray(1, 600), tag), /overlap/],
      ['a string', () => aesGcm.seal(key, nonce, Buffer.alloc(0), 'text' as unknown as Buffer, out, tag), /plaintext/],
      ['a Uint16Array', () => aesGcm.open(key, nonce, Buffer.alloc(0), new Uint16Array(4) as unknown as Buffer, tag, out), /ciphertext/],
      ['too few arguments', () => (aesGcm.open as unknown as (...a: unknown[]) => boolean)(key, nonce), /expected 6 arguments/],
      ['a tag inside the output', () => aesGcm.open(key, nonce, Buffer.alloc(0), plain, out.subarray(984, 1000), out), /overlaps the output/],
    ];
    for (const [what, call, message] of bad) {
      assert.throws(call, message, what);
      untouched();
    }
  });
});

describe('AsyncSha256 (thread pool)', () => {
  const hex = (h: string): string => h.slice('sha256:'.length);

  test('equals createHash over many chunks of any size, hashed in order', async () => {
    const chunks = Array.from({ length: 300 }, (_, i) => randomBytes(i % 7 === 0 ? 0 : Math.floor(Math.random() * 40_000)));
    chunks.push(randomBytes(3 * 1024 * 1024));
    const h = new AsyncSha256();
    const done: number[] = [];
    chunks.forEach((c, i) => h.update(c, () => done.push(i)));
    const want = createHash('sha256');
    for (const c of chunks) want.update(c);
    assert.equal(hex(await h.digest()), want.digest('hex'));
    assert.deepEqual(
      done,
      chunks.map((_, i) => i),
      'every chunk reported done, in order',
    );
  });

  test('the digest of nothing, and no update after the digest', async () => {
    const h = new AsyncSha256();
    assert.equal(await h.digest(), `sha256:${createHash('sha256').digest('hex')}`);
    assert.throws(() => h.update(Buffer.from('late')), /finished/);
  });

  test('whenBelow waits for queued bytes to be hashed, and a chunk below the batch size still completes', async () => {
    const h = new AsyncSha256();
    let done = false;
    h.update(Buffer.from('small'), () => (done = true));
    await h.whenBelow(0);
    assert.equal(done, true);
    assert.equal(h.pendingBytes, 0);
    assert.equal(hex(await h.digest()), createHash('sha256').update('small').digest('hex'));
  });

  test('chunks stay alive while hashed even when the caller lets go of them', async () => {
    // The native job holds its own references: a caller that drops its array and its chunks,
    // followed by a full collection, must not leave the thread pool reading freed memory.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const h = new AsyncSha256();
    const want = createHash('sha256');
    for (let i = 0; i < 8; i++) {
      const chunk = randomBytes(8 * 1024 * 1024);
      want.update(chunk);
      h.update(chunk);
    }
    gc();
    gc();
    assert.equal(hex(await h.digest()), want.digest('hex'));
  });

  test('the event loop keeps turning while a large update is hashed', async () => {
    const h = new AsyncSha256();
    const big = randomBytes(64 * 1024 * 1024);
    let turns = 0;
    const timer = setInterval(() => turns++, 0);
    h.update(big);
    const digest = await h.digest();
    clearInterval(timer);
    assert.equal(hex(digest), createHash('sha256').update(big).digest('hex'));
    assert.ok(turns > 2, `the event loop turned ${turns} times during 64 MiB of hashing`);
  });
});

describe('sealSegments (thread pool)', () => {
  const hex = (h: string): string => h.slice('sha256:'.length);
  const seal = (key: Buffer, plain: AsyncSha256 | undefined, cipher: AsyncSha256 | undefined, segments: SegmentToSeal[]): Promise<void> =>
    new Promise((resolve, reject) => sealSegments(key, plain, cipher, segments, (err) => (err === undefined ? resolve() : reject(err))));

  function segment(n: number, hashFrom = 0): SegmentToSeal & { copy: Buffer } {
    const plain = randomBytes(n);
    const out = Buffer.alloc(n + 28);
    randomBytes(12).copy(out);
    return { plain, hashed: plain.subarray(hashFrom), out, aad: randomBytes(40), copy: Buffer.from(plain) };
  }

  test('seals each segment as node:crypto does, feeds both hashes in order, and wipes the plaintext', async () => {
    const key = randomBytes(32);
    const segments = [segment(256 * 1024, 1000), segment(17), segment(256 * 1024), segment(0)];
    const plainHash = new AsyncSha256();
    const cipherHash = new AsyncSha256();
    plainHash.update(Buffer.from('before'));
    await plainHash.whenBelow(0);
    await seal(key, plainHash, cipherHash, segments);
    const wantPlain = createHash('sha256').update('before');
    const wantCipher = createHash('sha256');
    for (const s of segments) {
      const n = s.copy.length;
      const out = s.out as Buffer;
      const theirs = nodeSeal(key, out.subarray(0, 12), s.aad as Buffer, s.copy);
      assert.ok(out.subarray(12, 12 + n).equals(theirs.ct), `ciphertext of ${n} bytes`);
      assert.ok(out.subarray(12 + n).equals(theirs.tag), `tag of ${n} bytes`);
      assert.ok((s.plain as Buffer).equals(Buffer.alloc(n)), `plaintext of ${n} bytes wiped`);
      wantPlain.update(s.copy.subarray(n - s.hashed.length));
      wantCipher.update(out);
    }
    assert.equal(hex(await plainHash.digest()), wantPlain.digest('hex'));
    assert.equal(hex(await cipherHash.digest()), wantCipher.digest('hex'));
  });

  test('without hashes it only seals; with them, they are busy until the job is done', async () => {
    const key = randomBytes(32);
    const s = segment(1000);
    await seal(key, undefined, undefined, [s]);
    const out = s.out as Buffer;
    const d = createDecipheriv('aes-256-gcm', key, out.subarray(0, 12));
    d.setAAD(s.aad);
    d.setAuthTag(out.subarray(1012));
    assert.ok(Buffer.concat([d.update(out.subarray(12, 1012)), d.final()]).equals(s.copy), 'opens with node:crypto');

    const h = new AsyncSha256();
    const job = seal(key, h, undefined, [segment(64 * 1024)]);
    assert.throws(() => h.update(Buffer.from('x')), /lent/);
    assert.throws(() => sealSegments(key, h, undefined, [segment(10)], () => undefined), /not idle/);
    await job;
    h.update(Buffer.from('x'));
    await h.digest();
  });

  test('refuses bad arguments before anything is queued, leaving the hashes usable', async () => {
    const key = randomBytes(32);
    const h = new AsyncSha256();
    const s = segment(100);
    const shared = Buffer.alloc(200);
    const cases: [string, () => void, RegExp][] = [
      ['a short key', () => sealSegments(key.subarray(1), h, undefined, [s], () => undefined), /key must be 32 bytes/],
      ['a short output', () => sealSegments(key, h, undefined, [{ ...s, out: (s.out as Buffer).subarray(1) }], () => undefined), /28 bytes longer/],
      ['a hashed part outside the plaintext', () => sealSegments(key, h, undefined, [{ ...s, hashed: randomBytes(10) }], () => undefined), /within the plaintext/],
      ['the plaintext inside the output', () => sealSegments(key, h, undefined, [{ ...s, plain: (s.out as Buffer).subarray(0, 100), hashed: (s.out as Buffer).subarray(0, 0) }], () => undefined), /overlaps/],
      ['two outputs that overlap', () => sealSegments(key, undefined, undefined, [{ ...segment(10), out: shared.subarray(0, 38) }, { ...segment(10), out: shared.subarray(30, 68) }], () => undefined), /two outputs overlap/],
      ['a plaintext inside another segment\'s output', () => {
        const a = segment(10);
        return sealSegments(key, undefined, undefined, [a, { ...segment(10), plain: (a.out as Buffer).subarray(0, 10), hashed: (a.out as Buffer).subarray(0, 0) }], () => undefined);
      }, /overlaps another's output/],
      ['two plaintexts that overlap', () => {
        const a = segment(10);
        return sealSegments(key, undefined, undefined, [a, { ...segment(10), plain: (a.plain as Buffer).subarray(0, 10) }], () => undefined);
      }, /two plaintexts overlap/],
      ['more than 64 segments', () => sealSegments(key, undefined, undefined, Array.from({ length: 65 }, () => segment(1)), () => undefined), /items/],
      ['the same hash twice', () => sealSegments(key, h, h, [s], () => undefined), /not idle|must differ/],
      ['no segments', () => sealSegments(key, h, undefined, [], () => undefined), /items/],
    ];
    for (const [what, call, error] of cases) assert.throws(call, error, what);
    assert.ok((s.plain as Buffer).equals(s.copy), 'nothing was wiped');
    h.update(Buffer.from('still usable'));
    assert.equal(hex(await h.digest()), createHash('sha256').update('still usable').digest('hex'));
  });
});
