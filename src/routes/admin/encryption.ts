/**
 * Encryption at rest (issue 4): status (which KEK version wraps how many data keys, the last
 * rotation, a running one) and rotation. Rotation runs in the server, so its key ring, caches
 * and vault handles stay the only ones; `bulwark encryption rotate` starts it here and polls
 * the status for its progress bar.
 */
import { isRegistryError, registryError } from '../../oci/index.js';
import type { RotationProgress } from '../../encryption/index.js';
import { endpoint, type Endpoint, type Call } from './endpoint.js';
import { array, object } from './schemas.js';

const KEK = object(
  { vault: { type: 'string' }, name: { type: 'string' }, version: { type: 'string' } },
  ['vault', 'name', 'version'],
);
const PROGRESS = object(
  {
    target: KEK,
    startedAt: { type: 'string' },
    finishedAt: { type: 'string' },
    total: { type: 'integer' },
    rewrapped: { type: 'integer' },
    skipped: { type: 'integer' },
    failed: { type: 'integer' },
    error: { type: 'string' },
  },
  ['target', 'startedAt', 'total', 'rewrapped', 'skipped', 'failed'],
);
const STATUS = object(
  {
    enabled: { type: 'boolean' },
    target: KEK,
    followsNewest: { type: 'boolean' },
    health: object({ ok: { type: 'boolean' }, error: { type: 'string' } }, ['ok']),
    dataKeys: array(object({ kek: KEK, kind: { type: 'string', enum: ['blob', 'manifest'] }, count: { type: 'integer' } }, ['kek', 'kind', 'count'])),
    running: PROGRESS,
    lastRotation: PROGRESS,
  },
  ['enabled'],
);

function encryptionOf(call: Call<unknown, unknown, unknown>): NonNullable<Call<unknown, unknown, unknown>['encryption']> {
  if (call.encryption === undefined) throw registryError('UNSUPPORTED', 'encryption at rest is off (encryption.enabled=false)');
  return call.encryption;
}

function view(p: RotationProgress): unknown {
  return { ...p, target: { ...p.target } };
}

export const encryptionEndpoints: readonly Endpoint[] = [
  endpoint({
    id: 'getEncryptionStatus',
    method: 'GET',
    path: '/encryption',
    need: 'read',
    tag: 'encryption',
    summary: 'The key-encryption key, how many data keys each KEK version wraps, and the last or running rotation.',
    status: 200,
    response: STATUS,
    handle: async (call) => {
      if (call.encryption === undefined) return { enabled: false };
      const { rotator, ring } = call.encryption;
      let s;
      try {
        s = await rotator.status();
      } catch (e) {
        // The vault refuses: say so (CMK_ERROR in the CLI) with what is known without it.
        if (!isRegistryError(e)) throw e;
        const dataKeys = (await rotator.counts()).map((c) => ({ kek: { ...c.kek }, kind: c.kind, count: c.count }));
        const p = await rotator.progress();
        return {
          enabled: true,
          health: { ok: false, error: ring.health().error ?? e.message },
          dataKeys,
          ...(p.running !== undefined ? { running: view(p.running) } : {}),
          ...(p.lastRotation !== undefined ? { lastRotation: view(p.lastRotation) } : {}),
        };
      }
      const health = ring.health();
      return {
        enabled: true,
        target: s.target,
        followsNewest: s.followsNewest,
        health: health.ok ? { ok: true } : { ok: false, error: health.error ?? 'unknown' },
        dataKeys: s.counts.map((c) => ({ kek: { ...c.kek }, kind: c.kind, count: c.count })),
        ...(s.running !== undefined ? { running: view(s.running) } : {}),
        ...(s.lastRotation !== undefined ? { lastRotation: view(s.lastRotation) } : {}),
      };
    },
  }),
  endpoint<{ key?: string; newVersion?: boolean } | null | undefined, Record<string, never>>({
    id: 'rotateEncryptionKeys',
    method: 'POST',
    path: '/encryption/rotate',
    need: 'access',
    tag: 'encryption',
    summary: 'Re-wrap every data key under the newest version of the key-encryption key (online, resumable); returns at once with the progress.',
    body: object({
      key: { type: 'string', maxLength: 260, description: '`<name>` or `<name>/<version>`: re-wrap under this key from now on' },
      newVersion: { type: 'boolean', description: 'first create a new version of the key (the embedded vault\'s service-managed key)' },
    }),
    bodyOptional: true,
    status: 200,
    response: PROGRESS,
    handle: async (call: Call<{ key?: string; newVersion?: boolean } | null | undefined, unknown, unknown>) => {
      const run = await encryptionOf(call).rotator.start({ key: call.body?.key, newVersion: call.body?.newVersion });
      return view(run.progress);
    },
  }),
];
