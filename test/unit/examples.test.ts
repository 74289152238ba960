/** The worked configurations under examples/ load as they are (issue 5, item 7). */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../src/config/index.js';
import { HeaderRewriter, loadGatewayConfig } from '../../src/gateway/index.js';

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

test('examples/public-facing: the gateway in front, the registry private and trusting it', () => {
  const g = loadGatewayConfig(join(root, 'public-facing', 'gateway.json'));
  assert.deepEqual(g.sites.map((s) => [s.name, s.publicUrl]), [
    ['registry', 'https://registry.example.com'],
    ['data', 'https://data.example.com'],
  ]);
  assert.deepEqual(g.pools.map((p) => p.health.healthyStatuses), [[200, 401], [403]]);
  const rewrite = new HeaderRewriter(g.rewrites, g.sites.map((s) => s.publicUrl));
  assert.deepEqual(rewrite.location('https://data.internal.example.com/v2/app/blobs/sha256:ab?exp=1&k=a&sig=b'), { value: 'https://data.example.com/v2/app/blobs/sha256:ab?exp=1&k=a&sig=b' });
  assert.deepEqual(rewrite.wwwAuthenticate('Bearer realm="https://registry.internal.example.com/oauth2/token",service="bulwark"'), { value: 'Bearer realm="https://registry.example.com/oauth2/token",service="bulwark"' });
  assert.equal(g.waf.mode, 'Prevention');
  const r = loadConfig({ file: join(root, 'public-facing', 'registry.json') });
  assert.equal(r.network.publicAccess, 'Disabled');
  assert.deepEqual(r.network.trustedProxies, ['10.0.1.4']);
  assert.equal(r.urlBase, 'https://registry.internal.example.com');
});
