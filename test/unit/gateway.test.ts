/**
 * The gateway's pieces in-process: configuration checking and defaults, header rewriting, and
 * the firewall's rule evaluation (order, actions, Detection mode, rate limits, negation).
 * The HTTP behaviour is in test/integration/gateway-*.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GatewayConfigError, HeaderRewriter, parseGatewayConfig, Waf, type Rewritten, type WafRequest, type WafRule } from '../../src/gateway/index.js';
import { canonicalTarget } from '../../src/gateway/target.js';
import { rateKey } from '../../src/gateway/waf.js';

const minimal = {
  sites: [{ name: 'registry', listen: '127.0.0.1:8443', hostNames: ['Registry.Example.com'], tls: { certFile: '/c', keyFile: '/k' }, pool: 'registry' }],
  pools: [{ name: 'registry', backends: [{ url: 'http://10.0.0.4:5000', hostHeader: 'registry.internal:5000' }] }],
};

describe('gateway configuration', () => {
  test('defaults: Prevention, registry health probe, one rewrite per backend name and scheme to the public URL', () => {
    const c = parseGatewayConfig(minimal);
    assert.equal(c.waf.mode, 'Prevention');
    assert.deepEqual(c.sites[0]?.hostNames, ['registry.example.com']);
    assert.equal(c.sites[0]?.publicUrl, 'https://registry.example.com:8443');
    assert.deepEqual(c.pools[0]?.health.healthyStatuses, [200, 401]);
    assert.equal(c.pools[0]?.health.path, '/v2/');
    assert.equal(c.pools[0]?.backends[0]?.serverName, 'registry.internal');
    assert.deepEqual(
      c.rewrites.map((r) => r.from),
      ['http://10.0.0.4:5000', 'https://10.0.0.4:5000', 'http://registry.internal:5000', 'https://registry.internal:5000'],
    );
    assert.ok(c.rewrites.every((r) => r.to === 'https://registry.example.com:8443'));
    assert.deepEqual(c.passThroughOrigins, []);
  });

  test('a data pool is healthy on 403; explicit rewrites come before the defaults', () => {
    const c = parseGatewayConfig({
      ...minimal,
      pools: [...minimal.pools, { name: 'data', role: 'data', backends: [{ url: 'https://10.0.0.5' }] }],
      rewrites: [{ from: 'https://blobs.internal/', to: 'https://data.example.com' }],
    });
    assert.deepEqual(c.pools[1]?.health.healthyStatuses, [403]);
    assert.deepEqual(c.rewrites[0], { from: 'https://blobs.internal', to: 'https://data.example.com' });
  });

  test('every problem is reported at once', () => {
    let problems = '';
    assert.throws(() =>
      parseGatewayConfig({
        sites: [
          { name: 'a', listen: '127.0.0.1:1', hostNames: ['x.example'], pool: 'nope' },
          { name: 'a', listen: '127.0.0.1:1', hostNames: ['x.example'], pool: 'p' },
        ],
        pools: [{ name: 'p', backends: [{ url: 'http://user:pw@h/' }] }],
        waf: { rules: [{ name: 'r', action: 'Block', conditions: [{ match: 'ip', cidrs: ['300.0.0.1'] }] }] },
        clientAddress: { trustedProxies: ['nonsense'] },
      }),
      (e: unknown) => {
        problems = (e as { problems: string[] }).problems.join('\n');
        return e instanceof GatewayConfigError;
      },
    );
    for (const p of ['no pool is named nope', 'a appears twice', 'x.example appears twice', 'no credentials', '300.0.0.1', 'nonsense']) assert.ok(problems.includes(p), `${p} in\n${problems}`);
  });

  test('the schema refuses unknown fields, bad actions and conditions', () => {
    assert.throws(() => parseGatewayConfig({ ...minimal, extra: 1 }), /must NOT have additional properties/);
    assert.throws(() => parseGatewayConfig({ ...minimal, waf: { rules: [{ name: 'r', action: 'Drop' }] } }), /action/);
    assert.throws(() => parseGatewayConfig({ ...minimal, waf: { rules: [{ name: 'r', action: 'Block', conditions: [{ match: 'geo', countries: ['kp'] }] }] } }), /countries/);
    assert.throws(() => parseGatewayConfig({ ...minimal, waf: { rules: [{ name: 'r', action: 'Block', conditions: [{ match: 'size' }] }] } }), /conditions/);
  });
});

describe('header rewriting', () => {
  const r = new HeaderRewriter(
    [
      { from: 'http://registry.internal:5000', to: 'https://registry.example.com' },
      { from: 'https://data.internal', to: 'https://data.example.com' },
    ],
    ['https://registry.example.com', 'https://blobs.example-cdn.net'],
  );
  const value = (x: Rewritten): string => ('value' in x ? x.value : `LEAK ${x.leak}`);

  test('Location: origin compared as an origin (case, default port), path prefix at a boundary', () => {
    assert.equal(value(r.location('http://registry.internal:5000/v2/a/blobs/uploads/x?_state=1')), 'https://registry.example.com/v2/a/blobs/uploads/x?_state=1');
    assert.equal(value(r.location('HTTP://Registry.Internal:5000/v2/')), 'https://registry.example.com/v2/');
    assert.equal(value(r.location('http://registry.internal:5000')), 'https://registry.example.com');
    assert.equal(value(r.location('https://data.internal:443/v2/a/blobs/sha256:ab?exp=1&sig=x')), 'https://data.example.com/v2/a/blobs/sha256:ab?exp=1&sig=x', 'a default port is the same origin');
    assert.equal(value(r.location('/v2/a/blobs/uploads/x')), '/v2/a/blobs/uploads/x', 'relative: unchanged');
  });

  test('an absolute URL no rule rewrites is a leak unless its origin is public or passed through', () => {
    assert.equal(value(r.location('http://registry.internal:50001/v2/')), 'LEAK http://registry.internal:50001');
    assert.equal(value(r.location('http://registry.internal:5000.evil.example/v2/')), 'LEAK http://registry.internal:5000.evil.example');
    assert.equal(value(r.location('//registry.internal:5000/v2/')), 'LEAK https://registry.internal:5000', 'scheme-relative counts as absolute');
    assert.equal(value(r.location('https://registry.example.com/v2/')), 'https://registry.example.com/v2/');
    assert.equal(value(r.location('https://blobs.example-cdn.net/x?sig=1')), 'https://blobs.example-cdn.net/x?sig=1');
  });

  test('WWW-Authenticate: only the realm changes', () => {
    assert.equal(
      value(r.wwwAuthenticate('Bearer realm="http://registry.internal:5000/oauth2/token",service="http://registry.internal:5000",scope="repository:a:pull"')),
      'Bearer realm="https://registry.example.com/oauth2/token",service="http://registry.internal:5000",scope="repository:a:pull"',
    );
    assert.equal(value(r.wwwAuthenticate('Bearer realm="http://auth.internal/token"')), 'LEAK http://auth.internal');
  });

  test('Link: every URL in angle brackets', () => {
    assert.equal(value(r.link('<http://registry.internal:5000/v2/_catalog?n=2&last=b>; rel="next"')), '<https://registry.example.com/v2/_catalog?n=2&last=b>; rel="next"');
    assert.equal(value(r.link('</v2/a/tags/list?n=1&last=x>; rel="next"')), '</v2/a/tags/list?n=1&last=x>; rel="next"');
  });
});

describe('request targets as the WAF sees them', () => {
  test('percent-escapes are decoded before rules look at the path', () => {
    assert.deepEqual(canonicalTarget('/%61pi/v1/tokens?x=%2F'), { path: '/api/v1/tokens' });
    assert.deepEqual(canonicalTarget('/v2/'), { path: '/v2/' });
    assert.deepEqual(canonicalTarget('/v2/a/manifests/sha256:ab'), { path: '/v2/a/manifests/sha256:ab' });
  });

  test('targets that could be routed two ways are refused', () => {
    for (const t of ['http://other/v2/', '*', '/v2/a%2Fb/tags/list', '/v2/a%5cb', '/v2//a', '/v2/./a', '/v2/%2e%2e/api/v1', '/v2/a/..', '/v2/%00', '/v2/%zz', '/v2/a\\b', '/v2/#x']) {
      assert.ok('problem' in canonicalTarget(t), t);
    }
  });
});

describe('rate-limit keys', () => {
  test('IPv4 per address, IPv6 per /64', () => {
    assert.equal(rateKey('203.0.113.5'), '203.0.113.5');
    assert.equal(rateKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(rateKey('2001:db8:1:2::9'), '2001:db8:1:2::/64');
    assert.equal(rateKey('2001:0DB8::1'), '2001:db8:0:0::/64');
    assert.equal(rateKey('::1'), '0:0:0:0::/64');
    assert.equal(rateKey(undefined), 'unknown');
  });
});

describe('WAF rule evaluation', () => {
  const req = (o: Partial<WafRequest> = {}): WafRequest => ({ method: 'GET', path: '/v2/', urlBytes: 4, headerBytes: 100, client: '198.51.100.7', ...o });
  const countries: Record<string, string> = { '198.51.100.7': 'KP', '203.0.113.5': 'DE' };
  const waf = (rules: WafRule[], mode: 'Prevention' | 'Detection' = 'Prevention', now = (): number => 0): Waf => new Waf(mode, rules, (a) => countries[a] ?? 'ZZ', now);
  const rule = (name: string, action: WafRule['action'], conditions: WafRule['conditions'], rateLimit?: WafRule['rateLimit']): WafRule => ({ name, action, conditions, ...(rateLimit !== undefined ? { rateLimit } : {}) });

  test('the first Allow or Block decides; Log rules before it are recorded', () => {
    const w = waf([rule('log-all', 'Log', []), rule('embargo', 'Block', [{ match: 'geo', countries: ['KP'], negate: false }]), rule('never', 'Block', [])]);
    const v = w.evaluate(req());
    assert.equal(v.blocked, true);
    assert.equal(v.by?.rule, 'embargo');
    assert.deepEqual(v.matches.map((m) => m.rule), ['log-all', 'embargo']);
    assert.equal(v.country, 'KP');
    const allowed = waf([rule('office', 'Allow', [{ match: 'ip', cidrs: ['198.51.100.0/24'], negate: false }]), rule('never', 'Block', [])]).evaluate(req());
    assert.equal(allowed.blocked, false);
  });

  test('no rule matching lets the request through, and the country is looked up only when a geo rule asks', () => {
    const v = waf([rule('m', 'Block', [{ match: 'method', methods: ['DELETE'], negate: false }])]).evaluate(req());
    assert.equal(v.blocked, false);
    assert.equal(v.country, undefined);
  });

  test('conditions are ANDed, and negate inverts one', () => {
    const w = waf([rule('r', 'Block', [{ match: 'geo', countries: ['KP'], negate: false }, { match: 'method', methods: ['GET', 'HEAD'], negate: true }])]);
    assert.equal(w.evaluate(req()).blocked, false, 'GET from KP: the second condition does not match');
    assert.equal(w.evaluate(req({ method: 'PUT' })).blocked, true);
    assert.equal(w.evaluate(req({ method: 'PUT', client: '203.0.113.5' })).blocked, false);
  });

  test('an unknown or non-IP client is country ZZ and matches no address range', () => {
    const w = waf([rule('zz', 'Block', [{ match: 'geo', countries: ['ZZ'], negate: false }])]);
    assert.equal(w.evaluate(req({ client: undefined })).blocked, true);
    const ip = waf([rule('any', 'Block', [{ match: 'ip', cidrs: ['0.0.0.0/0', '::/0'], negate: false }])]);
    assert.equal(ip.evaluate(req({ client: undefined })).blocked, false);
  });

  test('size limits: header block and URL', () => {
    const w = waf([rule('size', 'Block', [{ match: 'size', maxHeaderBytes: 1000, maxUrlBytes: 100, negate: false }])]);
    assert.equal(w.evaluate(req({ headerBytes: 1000, urlBytes: 100 })).blocked, false);
    assert.equal(w.evaluate(req({ headerBytes: 1001 })).blocked, true);
    assert.equal(w.evaluate(req({ urlBytes: 101 })).blocked, true);
  });

  test('Detection mode records a Block and goes on to the next rule', () => {
    const w = waf([rule('embargo', 'Block', []), rule('log', 'Log', [])], 'Detection');
    const v = w.evaluate(req());
    assert.equal(v.blocked, false);
    assert.deepEqual(v.matches, [
      { rule: 'embargo', action: 'Block', detected: true },
      { rule: 'log', action: 'Log', detected: false },
    ]);
  });

  test('a rate limit counts per client in fixed windows and says when to retry', () => {
    let now = 0;
    const w = waf([rule('burst', 'Block', [], { requests: 3, windowSeconds: 10 })], 'Prevention', () => now);
    const blocked = (client: string): boolean => w.evaluate(req({ client })).blocked;
    assert.deepEqual([1, 2, 3, 4].map(() => blocked('203.0.113.5')), [false, false, false, true]);
    assert.equal(blocked('203.0.113.6'), false, 'another client has its own count');
    now = 4_000;
    assert.equal(w.evaluate(req({ client: '203.0.113.5' })).by?.retryAfterSeconds, 6);
    now = 10_000;
    assert.equal(blocked('203.0.113.5'), false, 'a new window');
  });

  test('a geo rule without a database is refused', () => {
    assert.throws(() => new Waf('Prevention', [rule('g', 'Block', [{ match: 'geo', countries: ['KP'], negate: false }])], undefined), /no waf.geoDatabase/);
  });
});
