/**
 * How the gateway reads a backend's responses (src/gateway/http1.ts): heads parsed strictly, bodies
 * framed as RFC 9112 §6 says, whatever the reads that bring the bytes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BodyDecoder, parseHead, UpstreamProtocolError, type Framing } from '../../src/gateway/http1.js';
import { handedOn, ReadBuffers } from '../../src/gateway/upstream.js';

const head = (...lines: string[]): string => lines.join('\r\n');
const refused = (f: () => unknown, why: RegExp): void => assert.throws(f, (e: unknown) => e instanceof UpstreamProtocolError && why.test(e.message));

/**
 * Feeds `wire` to a decoder in the pieces `cuts` makes; returns the body read and the decoder.
 * With `reuse`, each read is a buffer of its own that is overwritten once its pieces have been
 * taken (copied), as ReadBuffers reads into it again.
 */
function decode(framing: Framing, wire: Buffer, cuts: number[] = [], reuse = false): { body: Buffer; decoder: BodyDecoder } {
  const decoder = new BodyDecoder(framing);
  const out: Buffer[] = [];
  let at = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b).concat(wire.length)) {
    if (reuse) {
      const read = Buffer.from(wire.subarray(at, cut));
      for (const piece of decoder.push(read)) out.push(Buffer.from(piece));
      read.fill(0x30);
    } else out.push(...decoder.push(wire.subarray(at, cut)));
    at = cut;
  }
  return { body: Buffer.concat(out), decoder };
}

function chunked(body: Buffer, sizes: number[], trailer = ''): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (const s of sizes) {
    const piece = body.subarray(at, at + s);
    if (piece.length === 0) break;
    parts.push(Buffer.from(`${piece.length.toString(16)};ext="x"\r\n`), piece, Buffer.from('\r\n'));
    at += piece.length;
  }
  if (at < body.length) parts.push(Buffer.from(`${(body.length - at).toString(16)}\r\n`), body.subarray(at), Buffer.from('\r\n'));
  parts.push(Buffer.from(`0\r\n${trailer}\r\n`));
  return Buffer.concat(parts);
}

describe('upstream response heads', () => {
  test('status, headers (lower-cased, repeats kept in order) and a Content-Length body', () => {
    const h = parseHead(head('HTTP/1.1 200 OK', 'Content-Length: 12', 'Link: <a>', 'link: <b>', 'X-Empty:'), 'GET');
    assert.equal(h.status, 200);
    assert.deepEqual(h.headers, { 'content-length': '12', link: ['<a>', '<b>'], 'x-empty': '' });
    assert.deepEqual(h.framing, { kind: 'length', length: 12 });
    assert.equal(h.reusable, true);
    assert.equal(h.idleTimeoutMs, undefined);
  });

  test('no body for HEAD, 1xx, 204 and 304, whatever the length says; the length a HEAD passes on is checked all the same', () => {
    assert.deepEqual(parseHead(head('HTTP/1.1 200 OK', 'Content-Length: 5'), 'HEAD').framing, { kind: 'none' });
    assert.equal(parseHead(head('HTTP/1.1 200 OK', 'Content-Length: 5', 'Content-Length: 5'), 'HEAD').headers['content-length'], '5');
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'Content-Length: 5', 'Content-Length: 6'), 'HEAD'), /conflicting Content-Length/);
    for (const s of [100, 204, 304]) assert.deepEqual(parseHead(head(`HTTP/1.1 ${s} X`, 'Content-Length: 5'), 'GET').framing, { kind: 'none' });
  });

  test('chunked, or read to the close; a close-delimited body, Connection: close and HTTP/1.0 end the connection', () => {
    assert.deepEqual(parseHead(head('HTTP/1.1 200 OK', 'Transfer-Encoding: Chunked'), 'GET').framing, { kind: 'chunked' });
    const toClose = parseHead('HTTP/1.1 200 OK', 'GET');
    assert.deepEqual(toClose.framing, { kind: 'close' });
    assert.equal(toClose.reusable, false);
    assert.equal(parseHead(head('HTTP/1.1 200 OK', 'Content-Length: 0', 'Connection: keep-alive, close'), 'GET').reusable, false);
    assert.equal(parseHead(head('HTTP/1.0 200 OK', 'Content-Length: 0'), 'GET').reusable, false);
  });

  test('Keep-Alive: timeout=N is how long the backend keeps an idle connection', () => {
    assert.equal(parseHead(head('HTTP/1.1 204 No Content', 'Keep-Alive: max=100, timeout=5'), 'GET').idleTimeoutMs, 5000);
  });

  test('the same length twice is one length; two different ones, or a length beside chunked, are refused', () => {
    const twice = parseHead(head('HTTP/1.1 200 OK', 'Content-Length: 3', 'Content-Length: 3, 3'), 'GET');
    assert.deepEqual(twice.framing, { kind: 'length', length: 3 });
    assert.equal(twice.headers['content-length'], '3', 'passed on once');
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'Content-Length: 3', 'Content-Length: 4'), 'GET'), /conflicting Content-Length/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'Content-Length: -1'), 'GET'), /invalid/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'Content-Length: 3', 'Transfer-Encoding: chunked'), 'GET'), /both Transfer-Encoding and Content-Length/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'Transfer-Encoding: gzip, chunked'), 'GET'), /not supported/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'Transfer-Encoding:', 'Content-Length: 3'), 'GET'), /both Transfer-Encoding and Content-Length/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'Transfer-Encoding: ,'), 'GET'), /not supported/);
  });

  test('malformed heads are refused: status line, folded or nameless lines, space before the colon, bare CR, control characters, never quoting the line', () => {
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'Set-Cookie session=secret'), 'GET'), /^a header line is malformed$/);
    refused(() => parseHead('HTTP/2 200 OK', 'GET'), /status line/);
    refused(() => parseHead('HTTP/1.1 99 Low', 'GET'), /status line/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'X-A: 1', ' folded'), 'GET'), /obs-fold/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', ': nameless'), 'GET'), /malformed/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'Content-Length : 1'), 'GET'), /malformed/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'X-A: 1\rX-B: 2'), 'GET'), /bare CR/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'X-A: a\u0000b'), 'GET'), /control character/);
    refused(() => parseHead(head('HTTP/1.1 200 OK', 'Content-Length: 5\u000b'), 'GET'), /control character/);
  });
});

describe('upstream response bodies', () => {
  test('a Content-Length body ends at its length; bytes after it are surplus, never body', () => {
    const { body, decoder } = decode({ kind: 'length', length: 5 }, Buffer.from('helloHTTP/1.1 200 OK\r\n'), [2]);
    assert.equal(body.toString(), 'hello');
    assert.equal(decoder.done, true);
    assert.equal(decoder.surplus, true);
  });

  test('the body comes back as slices of what was read, not copies', () => {
    const wire = Buffer.from('abcdef');
    const [piece] = new BodyDecoder({ kind: 'length', length: 6 }).push(wire);
    assert.equal(piece?.buffer, wire.buffer);
  });

  test('a read is handed on as a slice of its buffer, unless it fills under an eighth of it: then it is copied out, so it pins no more than itself', () => {
    const buf = Buffer.alloc(64 * 1024, 7);
    const big = handedOn(32 * 1024, buf);
    assert.equal(big.buffer, buf.buffer);
    assert.equal(big.length, 32 * 1024);
    const small = handedOn(100, buf);
    assert.notEqual(small.buffer, buf.buffer);
    assert.ok(small.buffer.byteLength <= 8 * 1024, `${small.buffer.byteLength} bytes behind a 100-byte read (at most the 8 KiB slab Buffer shares among small copies)`);
    assert.deepEqual(small, buf.subarray(0, 100));
  });

  test('a close-delimited body is complete when the connection closes, a length-framed one is not', () => {
    const toClose = decode({ kind: 'close' }, Buffer.from('all of it'));
    assert.equal(toClose.body.toString(), 'all of it');
    assert.equal(toClose.decoder.done, false);
    assert.equal(toClose.decoder.closed(), true);
    assert.equal(decode({ kind: 'length', length: 10 }, Buffer.from('short')).decoder.closed(), false);
  });

  test('chunked: the same body whatever the chunk sizes and wherever the reads split it, trailers dropped', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 8 }), fc.boolean(), (bytes, sizes, cuts, trailer) => {
        const body = Buffer.from(bytes);
        const wire = chunked(body, sizes, trailer ? 'Digest: x\r\nExpires: 0\r\n' : '');
        const out = decode({ kind: 'chunked' }, wire, cuts.map((c) => c % (wire.length + 1)));
        assert.deepEqual(out.body, body);
        assert.equal(out.decoder.done, true);
        assert.equal(out.decoder.surplus, false);
      }),
      { numRuns: 500 },
    );
  });

  test('nothing of a read is kept once its pieces are taken: the same body when each read\'s buffer is overwritten right after (ReadBuffers reuses it)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 8 }), fc.boolean(), (bytes, sizes, cuts, trailer) => {
        const body = Buffer.from(bytes);
        const wire = chunked(body, sizes, trailer ? 'Digest: x\r\nExpires: 0\r\n' : '');
        const out = decode({ kind: 'chunked' }, wire, cuts.map((c) => c % (wire.length + 1)), true);
        assert.deepEqual(out.body, body);
        assert.equal(out.decoder.done, true);
      }),
      { numRuns: 500 },
    );
  });

  test('chunked framing that could be read two ways is refused', () => {
    refused(() => decode({ kind: 'chunked' }, Buffer.from('z\r\n')), /chunk size is malformed/);
    refused(() => decode({ kind: 'chunked' }, Buffer.from('-1\r\n')), /chunk size is malformed/);
    refused(() => decode({ kind: 'chunked' }, Buffer.from('3\nabc\r\n')), /CRLF/);
    refused(() => decode({ kind: 'chunked' }, Buffer.from('3\r\nabcd\r\n0\r\n\r\n')), /longer than its size/);
    refused(() => decode({ kind: 'chunked' }, Buffer.from('3\r\nabc\r\n0\r\nBad Trailer\r\n\r\n')), /malformed/);
    refused(() => decode({ kind: 'chunked' }, Buffer.from(`1;${'x'.repeat(5000)}\r\n`)), /too long/);
  });
});

describe('read buffers of the connections to a backend', () => {
  test('a buffer is read into again only once its read and every piece written from it are done with it', () => {
    const buffers = new ReadBuffers();
    const a = buffers.take(64 * 1024);
    const pieces = [a.subarray(0, 100), a.subarray(100, 5000)];
    for (const p of pieces) assert.equal(buffers.hold(p), true);
    buffers.release(a); // the read has been handed on
    assert.notEqual(buffers.take(64 * 1024).buffer, a.buffer, 'two pieces are still on their way');
    buffers.release(pieces[0] as Buffer);
    assert.notEqual(buffers.take(64 * 1024).buffer, a.buffer, 'one piece is still on its way');
    buffers.release(pieces[1] as Buffer);
    assert.equal(buffers.take(64 * 1024).buffer, a.buffer, 'every holder is done: the next read of its size reuses it');
    assert.notEqual(buffers.take(128 * 1024).buffer, a.buffer, 'a read of another size does not');
  });

  test('memory from elsewhere is not taken in, a buffer comes back once, and at most 4 MiB wait', () => {
    const buffers = new ReadBuffers();
    const foreign = Buffer.alloc(64 * 1024);
    assert.equal(buffers.hold(foreign), false, 'nothing to release');
    buffers.release(foreign);
    assert.notEqual(buffers.take(64 * 1024).buffer, foreign.buffer);
    const b = buffers.take(64 * 1024);
    buffers.release(b);
    buffers.release(b); // a second release of the same buffer changes nothing
    assert.equal(buffers.take(64 * 1024).buffer, b.buffer);
    assert.notEqual(buffers.take(64 * 1024).buffer, b.buffer, 'given back once, taken once');
    const big = Array.from({ length: 6 }, () => buffers.take(1024 * 1024));
    for (const x of big) buffers.release(x);
    const again = new Set(Array.from({ length: 6 }, () => buffers.take(1024 * 1024).buffer));
    assert.equal(big.filter((x) => again.has(x.buffer)).length, 4, 'four 1 MiB buffers were kept, two left to the collector');
  });
});
