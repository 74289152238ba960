/**
 * Fixture builders: OCI image layouts on disk (image-spec `image-layout.md`), generated offline
 * so that e2e tests never pull from the internet.
 *
 *   DIR/
 *   ├── oci-layout               {"imageLayoutVersion":"1.0.0"}
 *   ├── index.json               one descriptor per tag (annotation org.opencontainers.image.ref.name)
 *   └── blobs/sha256/<hex>       layers (gzip'd tar), configs, manifests, indexes
 *
 * Layers are real gzip'd tar archives built by streaming, so a layer of several hundred MiB
 * never sits in memory. The config's rootfs.diff_ids are the sha256 of the *uncompressed* tar
 * (image-spec config.md), which clients such as podman verify when they unpack.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import { createGunzip, createGzip } from 'node:zlib';
import * as tar from 'tar-stream';

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  // Docker v2 schema 2: what `skopeo copy --format v2s2` produces from our OCI images.
  // (containers/image only reads OCI media types from an OCI layout, so we never write these.)
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export interface LayerSpec {
  /** bytes of random content in the layer's one big file (0 gives a layer with only small files) */
  sizeBytes: number;
  /** small text files to add, path → content; checked by tests that unpack the layer */
  files?: Record<string, string>;
}

export interface ImageSpec {
  layers: LayerSpec[];
  /** tag recorded in index.json; default "latest" */
  tag?: string;
  platform?: Platform;
}

export interface BuiltImage {
  tag: string;
  manifestDigest: string;
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  diffIds: string[];
}

const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blobPath = (dir: string, digest: string): string => join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length));

/** Create the two fixed files and the blob folder. index.json is rewritten by writeIndexJson. */
export async function initLayout(dir: string): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

/** Store a small blob (config, manifest, index) and return its descriptor. */
export async function writeBlob(dir: string, mediaType: string, data: Buffer | string): Promise<Descriptor> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const digest = sha256(bytes);
  await writeFile(blobPath(dir, digest), bytes);
  return { mediaType, digest, size: bytes.length };
}

/** A pass-through stream that hashes and counts what flows through it. */
class HashTap extends Transform {
  readonly hash: Hash = createHash('sha256');
  size = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    cb(null, chunk);
  }
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/** Write `size` random bytes into a tar entry, 1 MiB at a time, honouring backpressure. */
async function writeRandom(entry: NodeJS.WritableStream, size: number): Promise<void> {
  const chunkSize = 1024 * 1024;
  for (let left = size; left > 0; left -= chunkSize) {
    if (!entry.write(randomBytes(Math.min(chunkSize, left)))) await once(entry, 'drain');
  }
  entry.end();
  await once(entry, 'finish');
}

async function addEntry(pack: tar.Pack, name: string, size: number, fill: (e: NodeJS.WritableStream) => Promise<void>): Promise<void> {
  const done = new Promise<void>((res, rej) => {
    const entry = pack.entry({ name, size, mode: 0o644, mtime: new Date(0) }, (err) => (err ? rej(err) : res()));
    fill(entry).catch(rej);
  });
  await done;
}

/**
 * Stream a gzip'd tar layer into the layout. Returns the layer descriptor and its diff_id.
 * Random content does not compress, so the blob is slightly larger than sizeBytes; gzip level 1
 * keeps a 100+ MiB layer to a few seconds on a small CI machine.
 */
export async function writeLayer(dir: string, spec: LayerSpec, mediaType: string = MediaType.ociLayerGzip): Promise<{ descriptor: Descriptor; diffId: string }> {
  const pack = tar.pack();
  const uncompressed = new HashTap();
  const compressed = new HashTap();
  const tmp = join(dir, 'blobs', `.tmp-${randomBytes(8).toString('hex')}`);
  const piped = pipeline(pack, uncompressed, createGzip({ level: 1 }), compressed, createWriteStream(tmp));
  const fill = async (): Promise<void> => {
    for (const [name, content] of Object.entries(spec.files ?? {})) {
      await new Promise<void>((res, rej) => pack.entry({ name, mode: 0o644, mtime: new Date(0) }, content, (e) => (e ? rej(e) : res())));
    }
    if (spec.sizeBytes > 0) {
      await addEntry(pack, `data/${randomBytes(6).toString('hex')}.bin`, spec.sizeBytes, (e) => writeRandom(e, spec.sizeBytes));
    }
    pack.finalize();
  };
  // On a failed fill, destroy the pack so the pipeline rejects instead of waiting forever.
  await Promise.all([piped, fill().catch((e: unknown) => { pack.destroy(e as Error); throw e; })]);
  const digest = compressed.digest();
  await rename(tmp, blobPath(dir, digest));
  return { descriptor: { mediaType, digest, size: compressed.size }, diffId: uncompressed.digest() };
}

/** Write layers, config and manifest of one image; does not touch index.json. */
export async function writeImage(dir: string, spec: ImageSpec): Promise<BuiltImage> {
  const platform = spec.platform ?? { architecture: 'amd64', os: 'linux' };
  const layers: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const l of spec.layers) {
    const { descriptor, diffId } = await writeLayer(dir, l);
    layers.push(descriptor);
    diffIds.push(diffId);
  }
  const configJson = {
    created: '2024-01-01T00:00:00Z',
    ...platform,
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/true'] },
    rootfs: { type: 'layers', diff_ids: diffIds },
    // A random history entry makes every config unique, so repeated runs never collide on digests.
    history: diffIds.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: `bulwark-fixture ${randomBytes(4).toString('hex')}` })),
  };
  const config = await writeBlob(dir, MediaType.ociConfig, JSON.stringify(configJson));
  const manifestJson = { schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers };
  const manifest = await writeBlob(dir, manifestJson.mediaType, JSON.stringify(manifestJson));
  return { tag: spec.tag ?? 'latest', manifestDigest: manifest.digest, manifest, config, layers, diffIds };
}

/** Replace index.json with one descriptor per tag. */
export async function writeIndexJson(dir: string, tagged: { tag: string; descriptor: Descriptor }[]): Promise<void> {
  const manifests = tagged.map(({ tag, descriptor }) => ({
    ...descriptor,
    annotations: { ...descriptor.annotations, 'org.opencontainers.image.ref.name': tag },
  }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }));
}

/** Build a layout holding one tagged single-platform image. */
export async function buildImageLayout(dir: string, spec: ImageSpec): Promise<BuiltImage> {
  await initLayout(dir);
  const image = await writeImage(dir, spec);
  await writeIndexJson(dir, [{ tag: image.tag, descriptor: image.manifest }]);
  return image;
}

export interface BuiltIndex {
  tag: string;
  indexDigest: string;
  index: Descriptor;
  images: BuiltImage[];
}

/**
 * Build a layout whose tag points at an image index (image-spec image-index.md) with one image
 * per platform; default linux/amd64 and linux/arm64 with one small layer each.
 */
export async function buildMultiArchLayout(
  dir: string,
  opts: { tag?: string; platforms?: Platform[]; layers?: LayerSpec[] } = {},
): Promise<BuiltIndex> {
  await initLayout(dir);
  const tag = opts.tag ?? 'latest';
  const platforms = opts.platforms ?? [
    { architecture: 'amd64', os: 'linux' },
    { architecture: 'arm64', os: 'linux', variant: 'v8' },
  ];
  const images: BuiltImage[] = [];
  for (const platform of platforms) {
    images.push(await writeImage(dir, { layers: opts.layers ?? [{ sizeBytes: 64 * 1024 }], platform, tag }));
  }
  const indexJson = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: images.map((img, i) => ({ ...img.manifest, platform: platforms[i] })),
  };
  const index = await writeBlob(dir, MediaType.ociIndex, JSON.stringify(indexJson));
  await writeIndexJson(dir, [{ tag, descriptor: index }]);
  return { tag, indexDigest: index.digest, index, images };
}

// ---- reading layouts back (e.g. one that skopeo wrote) ----

export interface OciIndexJson {
  manifests: Descriptor[];
}

/** The descriptor index.json records for `tag` (throws if absent). */
export async function layoutDescriptor(dir: string, tag: string): Promise<Descriptor> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as OciIndexJson;
  const found = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (found === undefined) throw new Error(`tag ${tag} not in ${dir}/index.json`);
  return found;
}

export async function readBlobJson<T>(dir: string, digest: string): Promise<T> {
  return JSON.parse(await readFile(blobPath(dir, digest), 'utf8')) as T;
}

/** Recompute a stored blob's digest: the layout, not our bookkeeping, is what a client wrote. */
export async function hashBlob(dir: string, digest: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(blobPath(dir, digest))) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

/** Read the small regular files of a gzip'd tar layer, path → content; big files are skipped. */
export async function readLayerFiles(dir: string, digest: string, maxBytes = 1024 * 1024): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  const consume = async (): Promise<void> => {
    for await (const entry of extract) {
      const keep = entry.header.type === 'file' && (entry.header.size ?? 0) <= maxBytes;
      const chunks: Buffer[] = [];
      for await (const c of entry) if (keep) chunks.push(c as Buffer);
      if (keep) files.set(entry.header.name.replace(/^\.?\//, ''), Buffer.concat(chunks));
    }
  };
  await Promise.all([pipeline(createReadStream(blobPath(dir, digest)), createGunzip(), extract), consume()]);
  return files;
}
