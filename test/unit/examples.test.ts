/** The worked configurations under examples/ load as they are (issue 5, item 7). */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/index.js';

const root = new URL('../../examples/', import.meta.url).pathname;

test('examples/private-only: private listener, public access disabled, TLS, a bound data endpoint', () => {
  const c = loadConfig({ file: join(root, 'private-only', 'config.json') });
  assert.deepEqual(c.listen, { host: '10.0.0.5', port: 443 });
  assert.equal(c.network.listenKind, 'private');
  assert.equal(c.network.publicAccess, 'Disabled');
  assert.equal(c.tls.certFile, '/etc/bulwark/tls/tls.crt');
  assert.equal(c.urlBase, 'https://registry.internal.example.com', 'Location and Link name the registry host');
  assert.equal(c.dataEndpoint.url, 'https://data.internal.example.com');
  assert.equal(c.dataEndpoint.bindClientAddress, true);
});
