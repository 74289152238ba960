/**
 * fast-check arbitraries for malformed requests to an OCI registry: hostile repository names
 * (traversal, percent-encoded dots, uppercase, very long, unicode, empty segments), references,
 * digests, upload ids, query strings, headers (Content-Range, Range, Accept garbage) and bodies
 * (broken or mutated manifests, wrong media types, random bytes), mixed with real names, digests,
 * tags and upload ids so that the requests reach deep into the handlers. Requests node:http
 * cannot send (raw unicode, broken framing, bodies cut short) are built as raw bytes.
 */
import fc from 'fast-check';

/** Real state the requests may point at. */
export interface KnownState {
  readonly repos: readonly string[];
  readonly digests: readonly string[];
  readonly tags: readonly string[];
  readonly uploadIds: readonly string[];
  readonly manifests: readonly Buffer[];
  readonly blobs: readonly Buffer[];
}

export type MalformedRequest =
  | { kind: 'http'; method: string; path: string; headers: Record<string, string>; body: Buffer | undefined; chunked: boolean }
  | { kind: 'raw'; label: string; bytes: Buffer };

const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
];

const printable = (maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength });
const pathChar = fc.constantFrom(...'abcxyzAZ0189._-/%:@;~!$&()*+,=é名'.split(''));
const hex = (maxLength: number): fc.Arbitrary<string> => fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEFg'.split('')), maxLength });

export function nameArb(k: KnownState): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...k.repos) },
    fc.constantFrom('..', '../..', 'a/../b', '../../../../etc/passwd', '%2e%2e', '%2E%2E/%2e%2e/x', 'a/%2e%2e/%2e%2e/b', '.', './a', 'a/.', '...'),
    fc.constantFrom('UPPER', 'Fuzz/Target', 'fuzz/TARGET', 'A'.repeat(30)),
    fc.constantFrom('a'.repeat(255), 'a'.repeat(256), `${'a/'.repeat(150)}a`, 'x'.repeat(2000), 'y'.repeat(7000)),
    fc.constantFrom('ünï', '名前/タグ', 'caf%C3%A9', 'e%F0%9F%98%80', '%ff%fe', '%00', 'a%00b', 'a%2fb', '%', '%zz', 'a%'),
    fc.constantFrom('', '/', 'a//b', '/a', 'a/', '//', 'a/b/'),
    fc.constantFrom('a;b', 'a?b', 'a#b', 'a+b', 'a\\b', '-a', 'a-', 'a__b', 'a___b', 'a..b', '_catalog', 'v2', 'blobs', 'manifests/x'),
    fc.string({ unit: pathChar, maxLength: 40 }),
  );
}

export function refArb(k: KnownState): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...k.digests, ...k.tags, ...k.uploadIds) },
    fc
      .tuple(fc.constantFrom('sha256', 'sha512', 'SHA256', 'md5', 'sha256+b64', 'sha384', ''), fc.constantFrom(':', '%3A', '::', '='), hex(140))
      .map(([a, s, h]) => `${a}${s}${h}`),
    fc.constantFrom(...k.digests).map((d) => `${d.slice(0, -1)}0`),
    fc.constantFrom(...k.digests).map((d) => d.toUpperCase()),
    fc.uuid().map((u) => u),
    fc.uuid().map((u) => u.toUpperCase()),
    fc.constantFrom(...k.uploadIds).map((u) => `${u}/..`),
    fc.constantFrom('..', '%2e%2e', '%2E%2E', '.', '', 'latest', '-bad', '_ok', 'a'.repeat(128), 'a'.repeat(129), 't'.repeat(6000), 'ünï', '%00', '%'),
    fc.string({ unit: pathChar, maxLength: 30 }),
  );
}

function queryArb(k: KnownState): fc.Arbitrary<string> {
  const r = refArb(k);
  const d = fc.constantFrom(...k.digests);
  return fc.oneof(
    { weight: 4, arbitrary: fc.constant('') },
    r.map((x) => `?digest=${x}`),
    fc.tuple(d, d).map(([a, b]) => `?digest=${a}&digest=${b}`),
    fc.tuple(r, nameArb(k)).map(([x, n]) => `?mount=${x}&from=${n}`),
    d.map((x) => `?mount=${x}`),
    fc.constantFrom('-1', '0', '1', 'abc', '99999999999', '1e3', '', '2&n=3').map((n) => `?n=${n}`),
    r.map((x) => `?last=${x}`),
    fc.oneof(fc.constantFrom(...MANIFEST_TYPES, 'x', '', '%'), printable(30)).map((t) => `?artifactType=${encodeURIComponent(t)}`),
    fc.constantFrom('?', '??', '?&&', '?digest', '?digest=', '?=x', '?a=%zz', '?n=1&last='),
    fc.string({ unit: pathChar, maxLength: 40 }).map((q) => `?${q}`),
  );
}

export function pathArb(k: KnownState): fc.Arbitrary<string> {
  const n = nameArb(k);
  const r = refArb(k);
  const resource = fc.oneof(
    fc.tuple(n, r).map(([a, b]) => `/v2/${a}/blobs/${b}`),
    n.map((a) => `/v2/${a}/blobs/uploads/`),
    n.map((a) => `/v2/${a}/blobs/uploads`),
    fc.tuple(n, r).map(([a, b]) => `/v2/${a}/blobs/uploads/${b}`),
    fc.tuple(n, r).map(([a, b]) => `/v2/${a}/manifests/${b}`),
    n.map((a) => `/v2/${a}/tags/list`),
    fc.tuple(n, r).map(([a, b]) => `/v2/${a}/referrers/${b}`),
    fc.constantFrom('/v2/', '/v2', '/v2/_catalog', '/', '/v1/', '/v2//', '//v2/', '/v2/../', '/v3/x', '/v2/%', '/v2/./_catalog', '/V2/'),
  );
  return fc.tuple(resource, queryArb(k)).map(([p, q]) => p + q);
}

function headersArb(k: KnownState): fc.Arbitrary<Record<string, string>> {
  const mt = fc.oneof(fc.constantFrom(...MANIFEST_TYPES, 'application/octet-stream', 'text/plain', '', 'application/json', `${MANIFEST_TYPES[0]}; charset=utf-8`, '*/*'), printable(40));
  return fc.record(
    {
      'content-type': mt,
      'content-range': fc.oneof(fc.constantFrom('0-0', '0-9', 'bytes=0-9', 'bytes 0-9/10', '5-2', '-1-3', 'abc', '0-99999999999999999', '0--1', '', '1-2/3', '*/10', '0-'), printable(20)),
      range: fc.oneof(
        fc.constantFrom('bytes=0-0', 'bytes=-10', 'bytes=10-', 'bytes=0-1,2-3', 'bytes=99999999999-', 'bytes=-0', 'items=0-1', 'bytes=5-2', 'bytes=', 'bytes=-'),
        printable(20),
      ),
      accept: fc.oneof(mt, fc.constant(Array.from({ length: 400 }, (_, i) => `application/x${i}+json;q=0.${i % 10}`).join(', ')), fc.constantFrom(',,,;;;', 'a'.repeat(8000), '*/*;q=abc')),
      'docker-content-digest': refArb(k),
      'x-forwarded-for': printable(40),
    },
    { requiredKeys: [] },
  );
}

export function bodyArb(k: KnownState): fc.Arbitrary<Buffer | undefined> {
  const manifest = fc.constantFrom(...k.manifests);
  const mutated = fc
    .tuple(
      manifest,
      fc.constantFrom('schemaVersion', 'mediaType', 'config', 'layers', 'manifests', 'subject', 'annotations', 'artifactType', 'config.digest', 'config.size', 'layers.0.digest', 'layers.0.size'),
      fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom(-1, 1.5, 1e20, '1', null, [], {}, 'sha256:0', ...k.digests)),
    )
    .map(([m, path, v]) => {
      const doc = JSON.parse(m.toString()) as Record<string, unknown>;
      const keys = path.split('.');
      let node: Record<string, unknown> = doc;
      for (const key of keys.slice(0, -1)) {
        const next = node[key];
        if (typeof next !== 'object' || next === null) return Buffer.from(JSON.stringify(doc));
        node = next as Record<string, unknown>;
      }
      node[keys[keys.length - 1] ?? path] = v;
      return Buffer.from(JSON.stringify(doc));
    });
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: manifest },
    { weight: 3, arbitrary: mutated },
    fc.constantFrom(...k.blobs),
    manifest.map((m) => m.subarray(0, Math.floor(m.length / 2))),
    fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)),
    fc.constantFrom('[]', '"x"', 'null', '1e999', '{}', '{"schemaVersion":2}', '\uFEFF{}', '['.repeat(20000), '{"a":'.repeat(5000)).map((s) => Buffer.from(s)),
    fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
    fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)),
    fc.constant(Buffer.alloc(5 * 1024 * 1024, 0x61)),
  );
}

const METHODS = ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO'];

/** Framing node:http will not produce: each is a byte string, sent and followed by FIN. */
function rawArb(k: KnownState): fc.Arbitrary<MalformedRequest> {
  const line = fc.tuple(fc.constantFrom(...METHODS, 'get', 'CONNECT', 'G ET', ''), pathArb(k));
  const body = bodyArb(k).map((b) => b ?? Buffer.from('0123456789'));
  const req = (m: string, p: string, headers: string[], b: Buffer | string = ''): Buffer =>
    Buffer.concat([Buffer.from(`${m} ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`), Buffer.from(b)]);
  const raw = (label: string, bytes: Buffer): MalformedRequest => ({ kind: 'raw', label, bytes });
  return fc.oneof(
    fc.tuple(line, body, fc.integer({ min: 1, max: 1 << 20 })).map(([[m, p], b, extra]) => raw('truncated', req(m, p, [`Content-Length: ${b.length + extra}`], b))),
    fc.tuple(line, body).map(([[m, p], b]) => raw('overlong', req(m, p, [`Content-Length: ${Math.floor(b.length / 2)}`], b))),
    fc
      .tuple(line, fc.constantFrom('-1', '99999999999999999999', '1e3', ' 5 ', '+5', '0x10', '5\r\nContent-Length: 6', '5, 5', ''))
      .map(([[m, p], cl]) => raw('content-length', req(m, p, [`Content-Length: ${cl}`], '01234'))),
    fc
      .tuple(line, fc.constantFrom('zz\r\nab\r\n0\r\n\r\n', '5\r\nabc\r\n0\r\n\r\n', '3\r\nabc\r\n', 'ffffffffffffffff\r\na\r\n', '0\r\n'), fc.boolean())
      .map(([[m, p], chunks, withCl]) =>
        raw('chunked', req(m, p, ['Transfer-Encoding: chunked', ...(withCl ? ['Content-Length: 3'] : [])], chunks)),
      ),
    fc
      .tuple(line, fc.constantFrom('X-A', 'X A', 'X-A\x00', 'Bad:', ' folded', 'Content-Type: \x01\x7f', 'X-Utf8: é名', 'NoColon', 'Accept: a\x00b'))
      .map(([[m, p], h]) => raw('header', req(m, p, [`${h}: v`]))),
    fc
      .tuple(fc.constantFrom(...METHODS), fc.constantFrom('/v2/名前/tags/list', '/v2/a b/tags/list', '/v2/\x01/blobs/x', '/v2/ünï/manifests/ü', 'http://evil/v2/', '*', '/v2/\t'))
      .map(([m, p]) => raw('request-target', req(m, p, []))),
    fc.constantFrom('GET /v2/ HTTP/9.9\r\n\r\n', 'GET /v2/\r\n\r\n', 'GET  /v2/  HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /v2/ HTTP/1.1\r\n\r\n', '\r\n\r\n\r\n').map((s) => raw('request-line', Buffer.from(s))),
    fc.uint8Array({ minLength: 1, maxLength: 512 }).map((a) => raw('bytes', Buffer.from(a))),
  );
}

export function malformedRequestArb(k: KnownState): fc.Arbitrary<MalformedRequest> {
  const http = fc
    .record({ method: fc.constantFrom(...METHODS), path: pathArb(k), headers: headersArb(k), body: bodyArb(k), chunked: fc.boolean() })
    .map((r): MalformedRequest => ({ kind: 'http', ...r }));
  // Counterexamples print as one short line, not as megabytes of generated bytes.
  return fc
    .oneof({ weight: 6, arbitrary: http }, { weight: 1, arbitrary: rawArb(k) })
    .map((r) => Object.assign(r, { [fc.toStringMethod]: () => describeRequest(r) }));
}

/** One line, truncated: what a failure message shows of a request. */
export function describeRequest(r: MalformedRequest): string {
  if (r.kind === 'raw') return `raw ${r.label}: ${JSON.stringify(r.bytes.subarray(0, 300).toString('latin1'))}`;
  const headers = JSON.stringify(r.headers);
  return `${r.method} ${r.path.slice(0, 300)} headers=${headers.slice(0, 300)} body=${r.body === undefined ? 'none' : `${r.body.length} bytes ${JSON.stringify(r.body.subarray(0, 120).toString('latin1'))}`}${r.chunked ? ' chunked' : ''}`;
}

type HttpRequest = Extract<MalformedRequest, { kind: 'http' }>;

/** Whether node:http accepts the path and header values (it refuses characters above U+00FF). */
export function nodeCanSend(r: HttpRequest): boolean {
  return !/[^\u0021-\u00ff]/.test(r.path) && Object.values(r.headers).every((v) => !/[^\t\x20-\x7e\x80-\xff]/.test(v));
}

/** The same request as raw UTF-8 bytes, for what node:http refuses to send. */
export function asRaw(r: HttpRequest): MalformedRequest {
  const headers = Object.entries(r.headers).map(([k, v]) => `${k}: ${v}\r\n`);
  if (r.body !== undefined) headers.push(`Content-Length: ${r.body.length}\r\n`);
  const head = `${r.method} ${r.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers.join('')}\r\n`;
  return { kind: 'raw', label: 'utf8', bytes: Buffer.concat([Buffer.from(head, 'utf8'), r.body ?? Buffer.alloc(0)]) };
}
