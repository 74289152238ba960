/** `GET /api/v1/health`: the registry's own checks (storage, key vault), run live. */
import { endpoint, type Endpoint } from './endpoint.js';
import { array, object } from './schemas.js';

const REPORT = object(
  {
    ok: { type: 'boolean' },
    checks: array(object({ name: { type: 'string' }, ok: { type: 'boolean' }, code: { type: 'string' }, message: { type: 'string' } }, ['name', 'ok'])),
  },
  ['ok', 'checks'],
);

export const healthEndpoints: readonly Endpoint[] = [
  endpoint({
    id: 'checkHealth',
    method: 'GET',
    path: '/health',
    need: 'read',
    tag: 'health',
    summary: 'Run the health checks: metadata store, blob store, and a wrap/unwrap round trip with the key-encryption key (CMK_ERROR with the cause when it fails).',
    status: 200,
    response: REPORT,
    handle: async ({ health }) => health(),
  }),
];
