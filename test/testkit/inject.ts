/**
 * In-process HTTP testing of the Distribution API: build the app with in-memory stores and drive
 * it with fastify's `inject` (no sockets). Fixture builders for blobs, OCI/Docker manifests and
 * indexes, and push helpers that assert each protocol step succeeded.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { HTTPMethods, LightMyRequestResponse } from 'fastify';
import { buildApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config/index.js';

export type Res = LightMyRequestResponse;

export const MT = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  platform?: { architecture: string; os: string };
}

export interface TestApp {
  readonly app: App;
  readonly dataDir: string;
  req(method: HTTPMethods, url: string, opts?: { headers?: Record<string, string>; payload?: Buffer | string | Readable; remoteAddress?: string }): Promise<Res>;
  close(): Promise<void>;
}

/**
 * An app on in-memory stores, audit off, silent logs, authentication off unless asked for; `overrides` by option key (src/config/schema.ts).
 * BULWARK_TEST_STORAGE=disk runs the same tests on the filesystem blob store and SQLite.
 */
export async function startApp(overrides: Record<string, unknown> = {}): Promise<TestApp> {
  const dataDir = await mkdtemp(join(tmpdir(), 'bulwark-inject-'));
  const disk = process.env.BULWARK_TEST_STORAGE === 'disk';
  const config = loadConfig({
    overrides: {
      'storage.blobDriver': disk ? 'filesystem' : 'memory',
      'storage.metadataDriver': disk ? 'sqlite' : 'memory',
      'audit.file': '',
      'log.level': 'silent',
      // Protocol tests run without authentication; auth tests pass 'auth.enabled': true.
      'auth.enabled': false,
      dataDir,
      ...overrides,
    },
  });
  const app = await buildApp(config);
  return {
    app,
    dataDir,
    req: (method, url, opts = {}) =>
      app.http.inject({
        method,
        url,
        headers: { 'user-agent': 'bulwark-tests/1.0', ...opts.headers },
        ...(opts.payload !== undefined ? { payload: opts.payload } : {}),
        ...(opts.remoteAddress !== undefined ? { remoteAddress: opts.remoteAddress } : {}),
      }),
    close: async () => {
      await app.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export function digestOf(data: Buffer | string, alg: 'sha256' | 'sha512' = 'sha256'): string {
  return `${alg}:${createHash(alg).update(data).digest('hex')}`;
}

export interface Blob {
  readonly data: Buffer;
  readonly digest: string;
}

export function randomBlob(size = 1024, alg: 'sha256' | 'sha512' = 'sha256'): Blob {
  const data = randomBytes(size);
  return { data, digest: digestOf(data, alg) };
}

/** The OCI error envelope's first code, after checking the envelope's shape. */
export function errorCode(res: Res): string {
  const doc = res.json<{ errors?: Array<{ code?: unknown; message?: unknown }> }>();
  assert.ok(Array.isArray(doc.errors) && doc.errors.length > 0, `expected an OCI error envelope, got ${res.body}`);
  const first = doc.errors[0];
  assert.equal(typeof first?.code, 'string');
  assert.equal(typeof first?.message, 'string');
  return first?.code as string;
}

/** Assert status and OCI error code in one go. */
export function assertError(res: Res, status: number, code: string): void {
  assert.equal(res.statusCode, status, `expected ${status} ${code}, got ${res.statusCode}: ${res.body}`);
  assert.equal(errorCode(res), code);
}

export function header(res: Res, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v === undefined ? undefined : String(v);
}

/** Single-POST monolithic push (`POST /blobs/uploads/?digest=`); asserts 201. */
export async function pushBlob(t: TestApp, name: string, blob: Blob): Promise<string> {
  const res = await t.req('POST', `/v2/${name}/blobs/uploads/?digest=${blob.digest}`, {
    headers: { 'content-type': 'application/octet-stream' },
    payload: blob.data,
  });
  assert.equal(res.statusCode, 201, `push blob: ${res.body}`);
  return blob.digest;
}

/** POST to open a session; asserts 202 and returns the Location. */
export async function startUpload(t: TestApp, name: string): Promise<string> {
  const res = await t.req('POST', `/v2/${name}/blobs/uploads/`);
  assert.equal(res.statusCode, 202, `start upload: ${res.body}`);
  const location = header(res, 'location');
  assert.ok(location !== undefined);
  return location;
}

/** Chunked push: PATCH chunks with Content-Range, then an empty PUT with the digest. */
export async function pushBlobChunked(t: TestApp, name: string, blob: Blob, chunkSize: number): Promise<string> {
  let location = await startUpload(t, name);
  for (let start = 0; start < blob.data.length; start += chunkSize) {
    const chunk = blob.data.subarray(start, start + chunkSize);
    const res = await t.req('PATCH', location, {
      headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${start + chunk.length - 1}` },
      payload: chunk,
    });
    assert.equal(res.statusCode, 202, `patch: ${res.body}`);
    location = header(res, 'location') ?? location;
  }
  const res = await t.req('PUT', `${location}?digest=${blob.digest}`);
  assert.equal(res.statusCode, 201, `close upload: ${res.body}`);
  return blob.digest;
}

export interface Built {
  readonly body: Buffer;
  readonly digest: string;
  readonly mediaType: string;
  readonly descriptor: Descriptor;
}

function built(doc: object, mediaType: string, extra: Partial<Descriptor> = {}): Built {
  const body = Buffer.from(JSON.stringify(doc, null, 2)); // indented: proves bytes are kept exactly
  const digest = digestOf(body);
  return { body, digest, mediaType, descriptor: { mediaType, digest, size: body.length, ...extra } };
}

export function descriptorOf(blob: Blob, mediaType: string): Descriptor {
  return { mediaType, digest: blob.digest, size: blob.data.length };
}

export interface ManifestOpts {
  config: Descriptor;
  layers?: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
  /** OCI by default; pass MT.dockerManifest for Docker schema 2 */
  mediaType?: string;
}

export function imageManifest(o: ManifestOpts): Built {
  const mediaType = o.mediaType ?? MT.ociManifest;
  const doc = {
    schemaVersion: 2,
    mediaType,
    ...(o.artifactType !== undefined ? { artifactType: o.artifactType } : {}),
    config: o.config,
    layers: o.layers ?? [],
    ...(o.subject !== undefined ? { subject: o.subject } : {}),
    ...(o.annotations !== undefined ? { annotations: o.annotations } : {}),
  };
  return built(doc, mediaType);
}

export interface IndexOpts {
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
  /** OCI by default; pass MT.dockerList for a Docker manifest list */
  mediaType?: string;
}

export function imageIndex(o: IndexOpts): Built {
  const mediaType = o.mediaType ?? MT.ociIndex;
  const doc = {
    schemaVersion: 2,
    mediaType,
    ...(o.artifactType !== undefined ? { artifactType: o.artifactType } : {}),
    manifests: o.manifests,
    ...(o.subject !== undefined ? { subject: o.subject } : {}),
    ...(o.annotations !== undefined ? { annotations: o.annotations } : {}),
  };
  return built(doc, mediaType);
}

/** PUT a manifest with its media type as Content-Type; returns the raw response. */
export function putManifest(t: TestApp, name: string, reference: string, m: Built, contentType: string = m.mediaType): Promise<Res> {
  return t.req('PUT', `/v2/${name}/manifests/${reference}`, { headers: { 'content-type': contentType }, payload: m.body });
}

/** PUT a manifest and assert 201 with the digest headers. */
export async function pushManifest(t: TestApp, name: string, reference: string, m: Built): Promise<string> {
  const res = await putManifest(t, name, reference, m);
  assert.equal(res.statusCode, 201, `push manifest: ${res.body}`);
  assert.equal(header(res, 'docker-content-digest'), m.digest);
  return m.digest;
}

/** The empty config `{}` every artifact may use (image-spec "Guidance for an Empty Descriptor"). */
export const emptyConfig: Blob = { data: Buffer.from('{}'), digest: digestOf('{}') };

export interface PushedImage {
  readonly manifest: Built;
  readonly config: Blob;
  readonly layer: Blob;
}

/** Push a config, one layer and an image manifest (under `tag` when given, else by digest). */
export async function pushImage(t: TestApp, name: string, tag?: string, o: Partial<ManifestOpts> & { layerSize?: number } = {}): Promise<PushedImage> {
  const docker = o.mediaType === MT.dockerManifest;
  const config = randomBlob(64);
  const layer = randomBlob(o.layerSize ?? 256);
  await pushBlob(t, name, config);
  await pushBlob(t, name, layer);
  const { layerSize: _ignored, ...rest } = o;
  const manifest = imageManifest({
    ...rest,
    config: descriptorOf(config, docker ? MT.dockerConfig : MT.ociConfig),
    layers: [descriptorOf(layer, docker ? MT.dockerLayer : MT.ociLayer)],
  });
  await pushManifest(t, name, tag ?? manifest.digest, manifest);
  return { manifest, config, layer };
}

/** Push an artifact manifest (empty config) whose subject is `subject`. */
export async function pushReferrer(
  t: TestApp,
  name: string,
  subject: Descriptor,
  o: { artifactType?: string; configMediaType?: string; annotations?: Record<string, string> } = {},
): Promise<Built> {
  await pushBlob(t, name, emptyConfig);
  const m = imageManifest({
    config: descriptorOf(emptyConfig, o.configMediaType ?? MT.ociEmpty),
    layers: [descriptorOf(emptyConfig, MT.ociEmpty)],
    subject,
    ...(o.artifactType !== undefined ? { artifactType: o.artifactType } : {}),
    ...(o.annotations !== undefined ? { annotations: o.annotations } : {}),
  });
  const res = await putManifest(t, name, m.digest, m);
  assert.equal(res.statusCode, 201, `push referrer: ${res.body}`);
  assert.equal(header(res, 'oci-subject'), subject.digest);
  return m;
}
