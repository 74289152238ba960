/** `/v2/<name>/blobs/<digest>`: HEAD, GET (with a single Range), DELETE. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { parseDigest, type Digest } from '../../oci/index.js';
import type { Registry } from '../../registry/index.js';
import { opContext, requestedRange, sendBody } from './http-util.js';
import type { ResourceHandlers } from './router.js';

/**
 * `redirect`, when the dedicated data endpoint is on (routes/data/): the signed URL
 * a GET is sent to (307) once the blob is known to be in the repository; HEAD is answered here.
 */
export type BlobRedirect = (req: FastifyRequest, name: string, digest: Digest) => string;

export function blobRoutes(registry: Registry, redirect?: BlobRedirect): ResourceHandlers<{ name: string; digest: string }> {
  const send = async (req: FastifyRequest, reply: FastifyReply, name: string, ref: string, head: boolean): Promise<void> => {
    const digest = parseDigest(ref);
    const common = { 'Docker-Content-Digest': digest, ETag: `"${digest}"`, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    if (head) {
      const info = await registry.blobs.stat(name, digest);
      void reply.code(200).headers({ ...common, 'Content-Length': String(info.size) }).send();
      return;
    }
    if (redirect !== undefined) {
      await registry.blobs.stat(name, digest); // BLOB_UNKNOWN here, not a redirect to a 404
      void reply.code(307).headers({ Location: redirect(req, name, digest), 'Docker-Content-Digest': digest, 'Content-Length': '0' }).send();
      return;
    }
    const rangeHeader = req.headers.range;
    const { info, range, stream } = await registry.blobs.open(opContext(req), name, digest, (size) => requestedRange(rangeHeader, size));
    if (range === undefined) {
      void reply.code(200).headers({ ...common, 'Content-Length': String(info.size) });
    } else {
      void reply.code(206).headers({
        ...common,
        'Content-Length': String(range.end - range.start + 1),
        'Content-Range': `bytes ${range.start}-${range.end}/${info.size}`,
      });
    }
    await sendBody(reply, stream);
  };
  return {
    HEAD: (req, reply, p) => send(req, reply, p.name, p.digest, true),
    GET: (req, reply, p) => send(req, reply, p.name, p.digest, false),
    DELETE: async (req, reply, p) => {
      await registry.blobs.delete(opContext(req), p.name, parseDigest(p.digest));
      void reply.code(202).header('Content-Length', '0').send();
    },
  };
}
