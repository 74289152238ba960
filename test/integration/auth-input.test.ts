/**
 * Hostile input at the token endpoint (issue 3, "Proof"): scope strings and repository names with
 * traversal, wildcards where none is allowed, look-alike characters, control characters, great
 * length or number, unknown actions, and header injection in `service`/`scope` are refused with
 * 400 and the OCI error envelope (never 5xx) and grant nothing. Random scope strings (fast-check)
 * never yield 5xx and never grant more than the caller's scope map. Bad Basic credentials and
 * over-long usernames or passwords are answered 401.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import fc from 'fast-check';
import { isRepositoryName } from '../../src/oci/index.js';
import { accessOf, ADMIN_ACTOR, authOf, bootstrapOf, EventRecorder, postToken, requestToken, type Credentials } from '../testkit/auth-client.js';
import { errorCode, header, type Res, startApp, type TestApp } from '../testkit/inject.js';

/** Hostile scope strings, each refused on its own (and alongside a valid one). */
const BAD_SCOPES: Record<string, string> = {
  'parent directory': 'repository:../etc:pull',
  'parent inside a name': 'repository:a/../b:pull',
  'current directory': 'repository:./a:pull',
  'absolute path': 'repository:/etc/passwd:pull',
  'empty path component': 'repository:a//b:pull',
  'trailing slash': 'repository:team-a/:pull',
  'wildcard name': 'repository:*:pull',
  'prefix wildcard': 'repository:team-a/*:pull',
  'glob in a name': 'repository:team-a/app*:pull',
  'question mark': 'repository:team-a/ap?:pull',
  'upper case': 'repository:Team-A/app:pull',
  'fullwidth letters': 'repository:ｔｅａｍ-a/app:pull',
  'cyrillic e': 'repository:t\u0435am-a/app:pull',
  'unicode hyphen': 'repository:team\u2010a/app:pull',
  'zero-width space': 'repository:team-a/\u200bapp:pull',
  'combining accent': 'repository:team-a/app\u0301:pull',
  'NUL after the action': 'repository:team-a/app:pull\u0000',
  'NUL in the name': 'repository:team-a\u0000/app:pull',
  'CRLF after the action': 'repository:team-a/app:pull\r\nX-Injected: 1',
  tab: 'repository:team-a/app:pull\t',
  'DEL character': 'repository:team-a/app\u007f:pull',
  'percent-encoded traversal (already decoded once)': 'repository:%2e%2e/etc:pull',
  '10 kB name': `repository:${'a'.repeat(10_000)}:pull`,
  '256-character name': `repository:${'a'.repeat(256)}:pull`,
  '10 kB of actions': `repository:team-a/app:${'pull,'.repeat(2_000)}pull`,
  'unknown action': 'repository:team-a/app:pull,destroy',
  'upper-case action': 'repository:team-a/app:PULL',
  'no actions': 'repository:team-a/app:',
  'only commas': 'repository:team-a/app:,,,',
  'no name': 'repository::pull',
  'two parts': 'repository:team-a/app',
  'one part': 'repository',
  'unknown type': 'repo:team-a/app:pull',
  'upper-case type': 'REPOSITORY:team-a/app:pull',
  'registry:catalog with pull': 'registry:catalog:pull',
  'registry:catalog with * and pull': 'registry:catalog:*,pull',
  'unknown registry resource': 'registry:everything:*',
  'unknown admin action': 'registry:admin:root',
  'host:port in the name': 'repository:localhost:5000/team-a/app:pull',
  'tag in the name': 'repository:team-a/app:latest:pull',
};

describe('token endpoint: hostile scopes and names', () => {
  let t: TestApp;
  let events: EventRecorder;
  let admin: Credentials;

  before(async () => {
    t = await startApp({ 'auth.enabled': true, 'auth.failures.perIdentity': 1000, 'auth.failures.perAddress': 100_000 });
    admin = bootstrapOf(t);
    events = new EventRecorder(t);
  });
  beforeEach(() => events.clear());
  after(async () => {
    events.close();
    await t.close();
  });

  /** 400 BAD_REQUEST in the envelope, JSON, no token, nothing issued. */
  function assertRefused(res: Res, what: string): void {
    assert.equal(res.statusCode, 400, `${what}: ${res.body.slice(0, 300)}`);
    assert.equal(errorCode(res), 'BAD_REQUEST', what);
    assert.match(header(res, 'content-type') ?? '', /^application\/json/, what);
    assert.ok(!/"token"/.test(res.body), `${what}: no token in the answer`);
    assert.equal(events.of('auth.token').length, 0, `${what}: nothing issued`);
  }

  for (const [what, scope] of Object.entries(BAD_SCOPES)) {
    it(`refuses ${what} with 400, alone and next to a valid scope, for the admin and for anonymous`, async () => {
      assertRefused(await requestToken(t, [scope], { creds: admin }), what);
      assertRefused(await requestToken(t, ['repository:team-a/app:pull', scope], { creds: admin }), `${what} after a valid scope`);
      assertRefused(await requestToken(t, [`repository:team-a/app:pull ${scope}`], { creds: admin }), `${what} space-separated`);
      assertRefused(await requestToken(t, [scope]), `${what}, anonymous`);
      const post = await postToken(t, { grant_type: 'password', service: 'bulwark', username: admin.username, password: admin.password, scope });
      assertRefused(post, `${what}, POST`);
    });
  }

  it('a double-encoded traversal arrives as %2e%2e and is refused as outside the grammar', async () => {
    const res = await t.req('GET', '/oauth2/token?service=bulwark&scope=repository%3A%252e%252e%2Fetc%3Apull', { headers: { authorization: `Basic ${Buffer.from(`${admin.username}:${admin.password}`).toString('base64')}` } });
    assertRefused(res, 'double-encoded');
  });

  it('accepts 32 scopes and refuses 33 or 100', async () => {
    const scopes = (n: number): string[] => Array.from({ length: n }, (_, i) => `repository:team-a/app${i}:pull`);
    const ok = await requestToken(t, scopes(32), { creds: admin });
    assert.equal(ok.statusCode, 200);
    assert.equal(accessOf(ok.json<{ token: string }>().token).length, 32);
    events.clear();
    assertRefused(await requestToken(t, scopes(33), { creds: admin }), '33 scopes');
    assertRefused(await requestToken(t, scopes(100), { creds: admin }), '100 scopes');
    assertRefused(await requestToken(t, [scopes(100).join(' ')], { creds: admin }), '100 scopes in one parameter');
  });

  it('a name of exactly 255 characters is a valid scope', async () => {
    const name = `team-a/${'a'.repeat(248)}`;
    assert.equal(name.length, 255);
    const res = await requestToken(t, [`repository:${name}:pull`], { creds: admin });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(accessOf(res.json<{ token: string }>().token), [{ type: 'repository', name, actions: ['pull'] }]);
  });

  it('header injection through service or scope reaches no header, and is refused', async () => {
    for (const query of [
      'service=bulwark%0d%0aX-Injected:%201&scope=repository:team-a/app:pull',
      'service=bulwark%0aX-Injected:%201',
      'service=bulwark&scope=repository:team-a/app:pull%0d%0aX-Injected:%201',
      'service=bulwark%22,realm=%22https://evil.test',
      'service=other',
      'service=',
      'service=BULWARK',
    ]) {
      events.clear();
      const res = await t.req('GET', `/oauth2/token?${query}`);
      assertRefused(res, query);
      assert.equal(res.headers['x-injected'], undefined, query);
      assert.ok(!/[\r\n]/.test(res.body.replace(/\\[rn]/g, '')), `${query}: no raw line break in the body`);
      assert.ok(!res.body.includes('evil.test'), `${query}: the service is not echoed`);
    }
  });

  it('a repository name crafted to break out of the WWW-Authenticate challenge is refused before any challenge', async () => {
    for (const name of ['a%22,error=%22x', 'a"b', 'team-a/app%0d%0aX-Injected:1']) {
      const res = await t.req('GET', `/v2/${name}/manifests/v1`);
      assert.equal(res.statusCode, 400, `${name}: ${res.body}`);
      assert.equal(errorCode(res), 'NAME_INVALID');
      assert.equal(res.headers['www-authenticate'], undefined);
      assert.equal(res.headers['x-injected'], undefined);
    }
  });

  it('POST /oauth2/token: an unknown grant, a wrong content type or an oversized form are 4xx in the envelope', async () => {
    assertRefused(await postToken(t, { grant_type: 'client_credentials', service: 'bulwark' }), 'unknown grant');
    assertRefused(await postToken(t, { service: 'bulwark' }), 'no grant');
    const json = await t.req('POST', '/oauth2/token', { headers: { 'content-type': 'application/json' }, payload: '{"grant_type":"password"}' });
    assert.equal(json.statusCode, 415);
    assert.equal(errorCode(json), 'UNSUPPORTED');
    const big = await t.req('POST', '/oauth2/token', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `grant_type=password&x=${'a'.repeat(70 * 1024)}` });
    assert.ok(big.statusCode >= 400 && big.statusCode < 500, `oversized form: ${big.statusCode}`);
    assert.equal(errorCode(big), 'SIZE_INVALID');
  });
});

describe('token endpoint: random scope strings (fast-check)', () => {
  let t: TestApp;
  let reader: Credentials;

  before(async () => {
    t = await startApp({ 'auth.enabled': true, 'auth.failures.perIdentity': 1000, 'auth.failures.perAddress': 100_000 });
    const dir = authOf(t).directory;
    await dir.createScopeMap(ADMIN_ACTOR, { name: 'team-a-readers', actions: ['repositories/team-a/*/content/read', 'repositories/team-a/*/metadata/read'] });
    const made = await dir.createToken(ADMIN_ACTOR, { name: 'tok-fuzz', scopeMap: 'team-a-readers' });
    reader = { username: 'tok-fuzz', password: made.password.value };
  });
  after(() => t.close());

  const fragment = fc.oneof(
    fc.constantFrom('repository', 'registry', 'catalog', 'admin', 'team-a', 'team-b', 'app', '*', '..', '.', '/', ':', ',', ' ', '%2e', '\u0435', 'ｔ', '\u0000', '\r\n'),
    fc.constantFrom('pull', 'push', 'delete', 'metadata_read', 'metadata_write', 'sign', 'quarantine_read', 'read', 'write', 'access', 'PULL', 'all'),
    fc.string({ maxLength: 12 }),
    fc.string({ unit: 'grapheme', maxLength: 6 }),
  );
  /** Mostly near-valid scopes (type:name:actions from the fragments), some plain random strings. */
  const scope = fc.oneof(
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom('repository', 'registry', 'repo'), fc.array(fragment, { minLength: 1, maxLength: 5 }), fc.array(fragment, { maxLength: 4 })).map(([type, name, actions]) => `${type}:${name.join('')}:${actions.join(',')}`) },
    {
      weight: 10,
      arbitrary: fc
        .tuple(
          fc.oneof({ weight: 5, arbitrary: fc.constant('team-a/') }, fc.constantFrom('team-b/', 'team-a', 'team-a-', '')),
          fc.oneof({ weight: 4, arbitrary: fc.stringMatching(/^[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,6})?(?:\/[a-z0-9]{1,6})?$/) }, { weight: 1, arbitrary: fc.stringMatching(/^[a-z0-9._/*-]{0,12}$/) }),
          fc.subarray(['pull', 'push', 'delete', 'metadata_read', 'metadata_write', 'sign', '*'], { minLength: 1 }),
        )
        .map(([p, n, a]) => `repository:${p}${n}:${a.join(',')}`),
    },
    { weight: 1, arbitrary: fc.array(fragment, { maxLength: 8 }).map((xs) => xs.join('')) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  );

  /** What the scope map grants on a name: pull and metadata_read under team-a/, nothing else. */
  const allowedOn = (name: string): readonly string[] => (name.startsWith('team-a/') ? ['pull', 'metadata_read'] : []);

  it('never answers 5xx, and grants only what the scope map allows, on names that were asked for', async () => {
    const seen = { refused: 0, granted: 0 };
    await fc.assert(
      fc.asyncProperty(fc.array(scope, { maxLength: 3 }), async (scopes) => {
        const res = await requestToken(t, scopes, { creds: reader });
        assert.ok(res.statusCode === 200 || res.statusCode === 400, `${res.statusCode}: ${res.body.slice(0, 200)}`);
        if (res.statusCode === 400) {
          assert.equal(errorCode(res), 'BAD_REQUEST');
          seen.refused++;
          return;
        }
        const access = accessOf(res.json<{ token: string }>().token);
        if (access.length > 0) seen.granted++;
        for (const a of access) {
          assert.equal(a.type, 'repository', `${JSON.stringify(a)} from ${JSON.stringify(scopes)}`);
          assert.ok(isRepositoryName(a.name), a.name);
          assert.ok(a.actions.length > 0);
          for (const action of a.actions) assert.ok(allowedOn(a.name).includes(action), `${action} on ${a.name} from ${JSON.stringify(scopes)}`);
          assert.ok(
            scopes.some((s) => s.split(' ').some((part) => part.startsWith(`repository:${a.name}:`))),
            `${a.name} was not asked for in ${JSON.stringify(scopes)}`,
          );
        }
      }),
      { numRuns: 400 },
    );
    // the generator must exercise both sides, or the property says nothing
    assert.ok(seen.refused >= 40 && seen.granted >= 40, `refused ${seen.refused}, granted ${seen.granted} of 400`);
  });

  it('anonymous callers never get anything, whatever they ask', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(scope, { maxLength: 3 }), async (scopes) => {
        const res = await requestToken(t, scopes);
        assert.ok(res.statusCode === 200 || res.statusCode === 400, `${res.statusCode}: ${res.body.slice(0, 200)}`);
        if (res.statusCode === 200) assert.deepEqual(accessOf(res.json<{ token: string }>().token), []);
      }),
      { numRuns: 200 },
    );
  });

  it('any service value other than "bulwark" (or none) is a 400, never 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 30 }), async (service) => {
        const q = new URLSearchParams({ service, scope: 'repository:team-a/app:pull' });
        const res = await t.req('GET', `/oauth2/token?${q.toString()}`);
        assert.equal(res.statusCode, service === 'bulwark' ? 200 : 400, `service ${JSON.stringify(service)}: ${res.body.slice(0, 200)}`);
      }),
      { numRuns: 200 },
    );
  });
});

describe('token endpoint: bad Basic credentials', () => {
  let t: TestApp;
  let admin: Credentials;

  before(async () => {
    t = await startApp({ 'auth.enabled': true, 'auth.failures.perIdentity': 1000, 'auth.failures.perAddress': 100_000 });
    admin = bootstrapOf(t);
  });
  after(() => t.close());

  const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');

  it('malformed Authorization headers are 401 UNAUTHORIZED in the envelope', async () => {
    for (const authorization of [
      'Basic',
      'Basic ',
      'Basic !!!!',
      'Basic a b',
      `Basic ${b64('no-colon-here')}`,
      `Basic ${b64(':')}`,
      `Basic ${b64(`${admin.username}:`)}`,
      `Basic ${b64(`:${admin.password}`)}`,
      `Basic ${b64(`${admin.username}\u0000:${admin.password}`)}`,
      `Basic ${b64(Buffer.from([0xff, 0xfe, 0x3a, 0xc3, 0x28]))}`,
      `Basic ${b64(`${admin.username}:${admin.password}`).replace(/=+$/, '')}-_`,
      'Bearer abc.def.ghi',
      `Digest username="${admin.username}"`,
      `${b64(`${admin.username}:${admin.password}`)}`,
    ]) {
      const res = await t.req('GET', '/oauth2/token?service=bulwark&scope=repository:team-a/app:pull', { headers: { authorization } });
      assert.equal(res.statusCode, 401, `${JSON.stringify(authorization)}: ${res.body}`);
      assert.equal(errorCode(res), 'UNAUTHORIZED');
      assert.ok(!res.body.includes(admin.password), 'the password is never echoed');
    }
  });

  it('over-long usernames and passwords are 401 quickly, and audited without the secret', async () => {
    const events = new EventRecorder(t);
    try {
      for (const [username, password] of [
        ['u'.repeat(10_000), 'x'],
        [admin.username, 'p'.repeat(100_000)],
        ['u'.repeat(101), admin.password],
        [admin.username, `${admin.password}${'x'.repeat(300)}`],
      ] as const) {
        events.clear();
        const started = Date.now();
        const res = await requestToken(t, ['repository:team-a/app:pull'], { creds: { username, password } });
        assert.equal(res.statusCode, 401, `${username.length}/${password.length}: ${res.body.slice(0, 200)}`);
        assert.equal(errorCode(res), 'UNAUTHORIZED');
        assert.ok(Date.now() - started < 2_000, 'no slow hash of an over-long input');
        const failures = events.of('auth.failure');
        assert.equal(failures.length, 1);
        assert.ok((failures[0]?.principal ?? '').length <= 100, 'the recorded identity is bounded');
        assert.ok(!JSON.stringify(failures[0]).includes(password.slice(0, 40)), 'no password in the event');
      }
    } finally {
      events.close();
    }
  });

  it('the right credentials still work, with a lower-case scheme too', async () => {
    const res = await t.req('GET', '/oauth2/token?service=bulwark&scope=repository:team-a/app:pull', { headers: { authorization: `basic ${b64(`${admin.username}:${admin.password}`)}` } });
    assert.equal(res.statusCode, 200, res.body);
  });
});
