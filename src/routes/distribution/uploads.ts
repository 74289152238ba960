/**
 * `/v2/<name>/blobs/uploads/` and `/v2/<name>/blobs/uploads/<id>` (spec "Pushing blobs"):
 * POST opens a session, mounts, or takes a monolithic body; PATCH appends a chunk; PUT closes
 * the session with the digest; GET reports progress; DELETE cancels.
 */
import { clientAddressOf } from '../../http/index.js';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { assertRepositoryName, registryError, type Digest } from '../../oci/index.js';
import type { AppendRequest, Registry } from '../../registry/index.js';
import { isUploadId } from '../../storage/index.js';
import { contentLength, contentRange, digestParam, hasBody, opContext, query, sendUploadState, single } from './http-util.js';
import type { ResourceHandlers } from './router.js';
import type { AuthService } from '../../auth/index.js';
import { claimsOf } from './access-gate.js';

/** With auth on, whether the caller may pull a repository (a mount reads its source); undefined when auth is off. */
function readable(auth: AuthService | undefined, req: FastifyRequest): ((name: string) => Promise<boolean>) | undefined {
  const claims = claimsOf(req);
  if (auth === undefined || claims === undefined) return undefined;
  const ctx = { principal: claims.sub, clientAddress: clientAddressOf(req), amr: claims.amr, now: Date.now() };
  return async (name) => (await auth.policy.decide(ctx, [{ type: 'repository', name, actions: ['pull'] }])).length > 0;
}

function appendRequest(req: FastifyRequest, chunked: boolean): AppendRequest {
  const length = contentLength(req.raw);
  const range = chunked ? contentRange(req.raw) : undefined;
  if (range !== undefined && length !== undefined && range.end - range.start + 1 !== length) {
    throw registryError('RANGE_INVALID', 'Content-Range does not match Content-Length');
  }
  return {
    body: req.raw,
    offset: range?.start,
    length: range !== undefined ? range.end - range.start + 1 : length,
  };
}

function blobCreated(reply: FastifyReply, base: string, name: string, digest: Digest): void {
  void reply.code(201).header('Location', `${base}/v2/${name}/blobs/${digest}`).header('Docker-Content-Digest', digest).header('Content-Length', '0').send();
}

export function uploadStartRoutes(registry: Registry, chunkMinLength: number, auth: AuthService | undefined, base: string): ResourceHandlers<{ name: string }> {
  return {
    POST: async (req, reply, { name }) => {
      const q = query(req);
      const ctx = opContext(req);
      const mount = digestParam(q, 'mount');
      const from = single(q, 'from');
      const digest = digestParam(q, 'digest');
      if (mount !== undefined) {
        if (from !== undefined) assertRepositoryName(from);
        // Mounting reads the source: without pull on it (or, with `from` omitted, a source the
        // caller may pull), the client gets an ordinary upload session, as from Distribution.
        const mayRead = readable(auth, req);
        const mounted = from === undefined || mayRead === undefined || (await mayRead(from)) ? await registry.blobs.mount(ctx, name, mount, from, mayRead) : undefined;
        if (mounted !== undefined) {
          blobCreated(reply, base, name, mounted.digest);
          return;
        }
      }
      const session = await registry.blobs.startUpload(ctx, name);
      if (digest !== undefined && mount === undefined) {
        // Monolithic single-POST push: the body is the whole blob.
        try {
          await registry.blobs.finish(ctx, name, session.id, digest, appendRequest(req, false));
        } catch (e) {
          await registry.blobs.discard(session.id);
          throw e;
        }
        blobCreated(reply, base, name, digest);
        return;
      }
      if (hasBody(req.raw)) req.raw.resume();
      if (chunkMinLength > 0) void reply.header('OCI-Chunk-Min-Length', String(chunkMinLength));
      sendUploadState(reply, base, name, session.id, 0, 202);
    },
  };
}

export function uploadSessionRoutes(registry: Registry, base: string): ResourceHandlers<{ name: string; id: string }> {
  const checkId = (id: string): void => {
    if (!isUploadId(id)) throw registryError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { id: id.slice(0, 100) } });
  };
  return {
    GET: async (_req, reply, { name, id }) => {
      checkId(id);
      const u = await registry.blobs.upload(name, id);
      sendUploadState(reply, base, name, id, u.size, 204);
    },
    PATCH: async (req, reply, { name, id }) => {
      checkId(id);
      const size = await registry.blobs.append(name, id, appendRequest(req, true));
      sendUploadState(reply, base, name, id, size, 202);
    },
    PUT: async (req, reply, { name, id }) => {
      checkId(id);
      const digest = digestParam(query(req), 'digest');
      if (digest === undefined) throw registryError('DIGEST_INVALID', 'the digest query parameter is required to complete an upload');
      const last = hasBody(req.raw) ? appendRequest(req, true) : undefined;
      await registry.blobs.finish(opContext(req), name, id, digest, last);
      blobCreated(reply, base, name, digest);
    },
    DELETE: async (req, reply, { name, id }) => {
      checkId(id);
      await registry.blobs.cancel(opContext(req), name, id);
      void reply.code(204).send();
    },
  };
}
