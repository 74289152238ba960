/**
 * Manifest parsing and validation (image-spec v1.1 manifest.md, image-index.md, descriptor.md;
 * Docker Image Manifest V2 Schema 2). Manifest bytes are attacker-controlled: parse defensively,
 * report every invalid field at once, and never re-serialise (manifests are stored byte-exact).
 */
import { isDigest, type Digest } from './digest.js';
import { registryError } from './errors.js';
import { MediaType, isManifestMediaType, isMediaTypeString, isIndexMediaType, type ManifestMediaType } from './mediatypes.js';

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly artifactType?: string;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface ParsedManifest {
  readonly mediaType: ManifestMediaType;
  /** artifactType, else config.mediaType for image manifests (referrers API rule) */
  readonly artifactType: string | undefined;
  /** blobs that must exist in the repository: config and layers */
  readonly blobs: readonly Descriptor[];
  /** manifests that must exist in the repository: an index's entries */
  readonly manifests: readonly Descriptor[];
  readonly subject: Descriptor | undefined;
  readonly annotations: Readonly<Record<string, string>> | undefined;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkAnnotations(v: unknown, where: string, problems: string[]): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v) || !Object.values(v).every((x) => typeof x === 'string')) {
    problems.push(`${where}.annotations must be a map of strings`);
    return undefined;
  }
  return v as Record<string, string>;
}

function checkDescriptor(v: unknown, where: string, problems: string[]): Descriptor | undefined {
  if (!isObject(v)) {
    problems.push(`${where} must be an object`);
    return undefined;
  }
  const before = problems.length;
  const { mediaType, digest, size, artifactType } = v;
  if (typeof mediaType !== 'string' || !isMediaTypeString(mediaType)) problems.push(`${where}.mediaType must be a media type`);
  if (typeof digest !== 'string' || !isDigest(digest)) problems.push(`${where}.digest must be a sha256 or sha512 digest`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) problems.push(`${where}.size must be a non-negative integer`);
  if (artifactType !== undefined && (typeof artifactType !== 'string' || !isMediaTypeString(artifactType))) {
    problems.push(`${where}.artifactType must be a media type`);
  }
  const annotations = checkAnnotations(v.annotations, where, problems);
  if (problems.length !== before) return undefined;
  return {
    mediaType: mediaType as string,
    digest: digest as Digest,
    size: size as number,
    ...(typeof artifactType === 'string' ? { artifactType } : {}),
    ...(annotations !== undefined ? { annotations } : {}),
  };
}

function checkDescriptorList(v: unknown, where: string, problems: string[]): Descriptor[] {
  if (!Array.isArray(v)) {
    problems.push(`${where} must be an array`);
    return [];
  }
  const out: Descriptor[] = [];
  v.forEach((d, i) => {
    const desc = checkDescriptor(d, `${where}[${i}]`, problems);
    if (desc !== undefined) out.push(desc);
  });
  return out;
}

/** Decide the manifest's media type from the Content-Type header and the document itself. */
function resolveMediaType(contentType: string | undefined, doc: Json, problems: string[]): ManifestMediaType | undefined {
  const header = contentType?.split(';')[0]?.trim();
  const field = doc.mediaType;
  if (field !== undefined && typeof field !== 'string') problems.push('mediaType must be a string');
  const declared = typeof field === 'string' ? field : undefined;
  if (header !== undefined && header !== '' && declared !== undefined && header !== declared) {
    problems.push(`Content-Type ${header} does not match mediaType ${declared}`);
    return undefined;
  }
  const candidate = declared ?? (header === '' ? undefined : header) ?? (Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest);
  if (!isManifestMediaType(candidate)) {
    problems.push(`unsupported manifest media type ${candidate.slice(0, 200)}`);
    return undefined;
  }
  return candidate;
}

/** Throws MANIFEST_INVALID listing every problem found. */
export function parseManifest(body: Buffer, contentType: string | undefined): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {
    throw registryError('MANIFEST_INVALID', 'manifest is not valid JSON');
  }
  if (!isObject(doc)) throw registryError('MANIFEST_INVALID', 'manifest must be a JSON object');
  const problems: string[] = [];
  if (doc.schemaVersion !== 2) problems.push('schemaVersion must be 2');
  const mediaType = resolveMediaType(contentType, doc, problems);
  const annotations = checkAnnotations(doc.annotations, 'manifest', problems);
  const subject = doc.subject === undefined ? undefined : checkDescriptor(doc.subject, 'subject', problems);
  let artifactType: string | undefined;
  if (doc.artifactType !== undefined) {
    if (typeof doc.artifactType !== 'string' || !isMediaTypeString(doc.artifactType)) problems.push('artifactType must be a media type');
    else artifactType = doc.artifactType;
  }
  let blobs: Descriptor[] = [];
  let manifests: Descriptor[] = [];
  if (mediaType !== undefined && isIndexMediaType(mediaType)) {
    manifests = checkDescriptorList(doc.manifests, 'manifests', problems);
  } else if (mediaType !== undefined) {
    const config = checkDescriptor(doc.config, 'config', problems);
    const layers = checkDescriptorList(doc.layers, 'layers', problems);
    blobs = config === undefined ? layers : [config, ...layers];
    artifactType ??= config?.mediaType;
  }
  if (problems.length > 0 || mediaType === undefined) {
    throw registryError('MANIFEST_INVALID', `manifest invalid: ${problems.slice(0, 5).join('; ')}`, { detail: { problems: problems.slice(0, 50) } });
  }
  return { mediaType, artifactType, blobs, manifests, subject, annotations };
}
