/** Media types the registry understands as manifests (image-spec v1.1, Docker image manifest v2.2). */

export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
} as const;

export type ManifestMediaType =
  | typeof MediaType.OciManifest
  | typeof MediaType.OciIndex
  | typeof MediaType.DockerManifest
  | typeof MediaType.DockerManifestList;

export const MANIFEST_MEDIA_TYPES: readonly ManifestMediaType[] = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
];

export function isManifestMediaType(s: string): s is ManifestMediaType {
  return (MANIFEST_MEDIA_TYPES as readonly string[]).includes(s);
}

export function isIndexMediaType(s: string): boolean {
  return s === MediaType.OciIndex || s === MediaType.DockerManifestList;
}

/** RFC 6838 type/subtype, as the image spec requires for mediaType and artifactType. */
const MEDIA_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

export function isMediaTypeString(s: string): boolean {
  return MEDIA_TYPE_RE.test(s);
}
