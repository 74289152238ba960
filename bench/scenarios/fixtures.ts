/** Small images for the manifest and image scenarios: config JSON, layers, OCI manifests. */
import { blobContent, materialize, prng, sha256 } from '../content.js';
import { MediaType } from '../client.js';

export interface Blob {
  digest: string;
  data: Buffer;
}

export interface SmallImage {
  layers: Blob[];
  config: Blob;
  manifest: Buffer;
}

export function layerBlob(label: string, size: number): Blob {
  const data = materialize(blobContent(label, size));
  return { digest: sha256(data), data };
}

export function configBlob(layers: readonly Blob[], created: string): Blob {
  const config = {
    created,
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
    // Not the real diff_ids of gzip'd tars: registries never unpack layers, only clients do.
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
  };
  const data = Buffer.from(JSON.stringify(config));
  return { digest: sha256(data), data };
}

export function imageManifest(config: Blob, layers: readonly Blob[], annotations?: Record<string, string>): Buffer {
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: config.digest, size: config.data.length },
    layers: layers.map((l) => ({ mediaType: MediaType.ociLayerGzip, digest: l.digest, size: l.data.length })),
    ...(annotations === undefined ? {} : { annotations }),
  };
  return Buffer.from(JSON.stringify(manifest));
}

const images = new Map<number, SmallImage>();

/** Image number i: 3 layers of 1-64 KiB, a config and a manifest; the same bytes in every run. */
export function smallImage(i: number): SmallImage {
  let img = images.get(i);
  if (img === undefined) {
    const rand = prng(0x5eed + i);
    const layers = [0, 1, 2].map((k) => layerBlob(`image-${i}-layer-${k}`, 1024 + Math.floor(rand() * 63 * 1024)));
    const config = configBlob(layers, new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString());
    img = { layers, config, manifest: imageManifest(config, layers) };
    images.set(i, img);
  }
  return img;
}
