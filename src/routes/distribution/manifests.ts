/** `/v2/<name>/manifests/<reference>`: HEAD, GET (Accept negotiation), PUT, DELETE. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { registryError } from '../../oci/index.js';
import type { Registry, ManifestService } from '../../registry/index.js';
import type { ManifestRecord } from '../../storage/index.js';
import { opContext, readBounded } from './http-util.js';
import type { ResourceHandlers } from './router.js';

/** Whether the client's Accept header admits the stored media type (absent = anything). */
function acceptable(accept: string | undefined, mediaType: string): boolean {
  if (accept === undefined || accept.trim() === '') return true;
  return accept.split(',').some((part) => {
    const [type, ...params] = part.split(';');
    // RFC 9110 §12.4.2: q=0 means "not acceptable"
    if (params.some((p) => /^\s*q\s*=\s*0(?:\.0{0,3})?\s*$/i.test(p))) return false;
    const t = type?.trim().toLowerCase();
    return t === mediaType || t === '*/*' || t === 'application/*' || t === 'application/json';
  });
}

function negotiate(req: FastifyRequest, record: ManifestRecord): void {
  if (!acceptable(req.headers.accept, record.mediaType)) {
    throw registryError('MANIFEST_UNKNOWN', `manifest exists as ${record.mediaType}, which the Accept header does not allow`, {
      detail: { mediaType: record.mediaType },
    });
  }
}

function headers(reply: FastifyReply, record: ManifestRecord): FastifyReply {
  return reply.code(200).headers({
    'Content-Type': record.mediaType,
    'Content-Length': String(record.size),
    'Docker-Content-Digest': record.digest,
    ETag: `"${record.digest}"`,
  });
}

export function manifestRoutes(registry: Registry, manifestMaxBytes: number, base: string): ResourceHandlers<{ name: string; reference: string }> {
  const svc: ManifestService = registry.manifests;
  return {
    HEAD: async (req, reply, { name, reference }) => {
      const record = await svc.resolve(name, reference);
      negotiate(req, record);
      void headers(reply, record).send();
    },
    GET: async (req, reply, { name, reference }) => {
      const { record, body } = await svc.get(opContext(req), name, reference);
      negotiate(req, record);
      void headers(reply, record).send(body);
    },
    PUT: async (req, reply, { name, reference }) => {
      const body = await readBounded(req.raw, manifestMaxBytes);
      const { digest, subject } = await svc.put(opContext(req), name, reference, body, req.headers['content-type']);
      void reply.code(201).header('Location', `${base}/v2/${name}/manifests/${digest}`).header('Docker-Content-Digest', digest).header('Content-Length', '0');
      if (subject !== undefined) void reply.header('OCI-Subject', subject);
      void reply.send();
    },
    DELETE: async (req, reply, { name, reference }) => {
      await svc.delete(opContext(req), name, reference);
      void reply.code(202).header('Content-Length', '0').send();
    },
  };
}
