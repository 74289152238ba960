/**
 * Failed sign-ins are throttled (issue 3, "Proof"): per identity and source address, and per
 * source address whatever the identity; a throttled attempt gets 429 TOOMANYREQUESTS with
 * Retry-After without its password being checked, and is audited as `auth.throttled` (each
 * failure before it as `auth.failure`). The legitimate user signing in from another address is
 * not locked out. Limits here: 3 per identity and address, 5 per address, in 60 s.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, beforeEach, describe, it } from 'node:test';
import { REFRESH_TOKEN_USERNAME } from '../../src/auth/index.js';
import { ADMIN_ACTOR, authOf, bootstrapOf, EventRecorder, postToken, requestToken, type Credentials } from '../testkit/auth-client.js';
import { errorCode, header, type Res, startApp, type TestApp } from '../testkit/inject.js';

const SCOPE = 'repository:team-a/app:pull';
const LIMITS = { 'auth.failures.perIdentity': 3, 'auth.failures.perAddress': 5, 'auth.failures.windowSeconds': 60 };

describe('sign-in throttling', () => {
  let t: TestApp;
  let events: EventRecorder;
  let admin: Credentials;
  const wrong = (c: Credentials): Credentials => ({ username: c.username, password: `${c.password.slice(0, -2)}xx` });
  const signIn = (creds: Credentials, address: string): Promise<Res> => requestToken(t, [SCOPE], { creds, remoteAddress: address });

  before(async () => {
    t = await startApp({ 'auth.enabled': true, ...LIMITS });
    admin = bootstrapOf(t);
    events = new EventRecorder(t);
  });
  beforeEach(() => events.clear());
  after(async () => {
    events.close();
    await t.close();
  });

  function assertFailed(res: Res, what: string): void {
    assert.equal(res.statusCode, 401, `${what}: ${res.body}`);
    assert.equal(errorCode(res), 'UNAUTHORIZED');
  }

  /** 429 TOOMANYREQUESTS with a Retry-After of 1..60 s; returns it. */
  function assertThrottled(res: Res, what: string): number {
    assert.equal(res.statusCode, 429, `${what}: ${res.body}`);
    assert.equal(errorCode(res), 'TOOMANYREQUESTS');
    const retry = header(res, 'retry-after') ?? '';
    assert.match(retry, /^\d+$/, what);
    assert.ok(Number(retry) >= 1 && Number(retry) <= 60, `${what}: Retry-After ${retry}`);
    return Number(retry);
  }

  it('concurrent bad passwords cannot slip past the limit: of 20 sent at once, at most 3 are checked', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => signIn(wrong(admin), '10.0.9.9')));
    const statuses = results.map((r) => r.statusCode);
    assert.equal(statuses.filter((s) => s === 401).length, 3, statuses.join(' '));
    assert.equal(statuses.filter((s) => s === 429).length, 17, statuses.join(' '));
    // concurrent right passwords (a client fetching several scopes at once) all succeed
    const ok = await Promise.all(Array.from({ length: 8 }, () => signIn(admin, '10.0.9.10')));
    assert.deepEqual(ok.map((r) => r.statusCode), Array<number>(8).fill(200));
  });

  it('a burst spread over many usernames cannot slip past the address limit: of 20 at once, at most 5 are checked', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => signIn({ username: `sprayed-${i}`, password: 'Winter2026!' }, '10.0.9.20')));
    const statuses = results.map((r) => r.statusCode);
    assert.equal(statuses.filter((s) => s === 401).length, 5, statuses.join(' '));
    for (const r of results.filter((x) => x.statusCode !== 401)) assertThrottled(r, 'beyond the address limit');
    assert.equal(events.of('auth.failure').length, 5, 'only the checked attempts are failures');
    // the attempts in flight were what held the others back: once they ended, the address is at its limit by failures alone
    assertThrottled(await signIn(admin, '10.0.9.20'), 'the admin from the sprayed address');
    assert.equal((await signIn(admin, '10.0.9.21')).statusCode, 200, 'another address');
  });

  it('per identity and address: the 4th attempt after 3 bad passwords is 429, even with the right password; audited', async () => {
    for (let i = 1; i <= 3; i++) assertFailed(await signIn(wrong(admin), '10.0.1.1'), `bad password ${i}`);
    const failures = events.of('auth.failure');
    assert.equal(failures.length, 3);
    for (const f of failures) assert.deepEqual([f.principal, f.client.address, f.outcome], [admin.username, '10.0.1.1', 'failure']);
    assert.ok(failures.every((f) => !JSON.stringify(f).includes(admin.password.slice(0, 20))), 'no password in events');

    events.clear();
    assertThrottled(await signIn(admin, '10.0.1.1'), 'right password while throttled');
    assertThrottled(await signIn(wrong(admin), '10.0.1.1'), 'wrong password while throttled');
    const throttled = events.of('auth.throttled');
    assert.equal(throttled.length, 2);
    assert.deepEqual([throttled[0]?.principal, throttled[0]?.client.address, throttled[0]?.outcome], [admin.username, '10.0.1.1', 'failure']);
    assert.equal(events.of('auth.failure').length, 0, 'a throttled attempt is not checked, so not a new failure');
    assert.equal(events.of('auth.token').length, 0, 'nothing issued while throttled');
  });

  it('the legitimate user from another address is not locked out', async () => {
    for (let i = 0; i < 3; i++) await signIn(wrong(admin), '10.0.2.1');
    assertThrottled(await signIn(admin, '10.0.2.1'), 'the attacked address');
    assert.equal((await signIn(admin, '10.0.2.2')).statusCode, 200, 'another IPv4 address');
    assert.equal((await signIn(admin, '2001:db8::2')).statusCode, 200, 'an IPv6 address');
    assertFailed(await signIn(wrong(admin), '10.0.2.2'), 'one mistake elsewhere is just a 401');
  });

  it('per address: 5 failures with any identities throttle every identity from that address, and no other address', async () => {
    for (const user of ['alice-nobody', 'bob-nobody', 'carol-nobody', 'dave-nobody', 'erin-nobody']) {
      assertFailed(await signIn({ username: user, password: 'guess' }, '10.0.3.1'), user);
    }
    assertThrottled(await signIn({ username: 'frank-nobody', password: 'guess' }, '10.0.3.1'), 'a sixth identity');
    assertThrottled(await signIn(admin, '10.0.3.1'), 'the admin, right password, same address');
    assert.equal(events.of('auth.throttled').length, 2);
    assert.equal((await signIn(admin, '10.0.3.2')).statusCode, 200, 'the admin elsewhere');
  });

  it('a success clears the failures of that identity and address (not of the address)', async () => {
    for (let i = 0; i < 2; i++) assertFailed(await signIn(wrong(admin), '10.0.4.1'), `first round ${i}`);
    assert.equal((await signIn(admin, '10.0.4.1')).statusCode, 200);
    for (let i = 0; i < 2; i++) assertFailed(await signIn(wrong(admin), '10.0.4.1'), `second round ${i}`);
    assert.equal((await signIn(admin, '10.0.4.1')).statusCode, 200, '2 failures since the success: below the limit of 3');
    assertFailed(await signIn(wrong(admin), '10.0.4.1'), 'fifth failure of the address');
    assertThrottled(await signIn(admin, '10.0.4.1'), 'the address reached 5 failures');
  });

  it('the password grant, repository-scoped tokens and the refresh-token username are throttled the same way', async () => {
    const made = await authOf(t).directory.createToken(ADMIN_ACTOR, { name: 'tok-throttled', scopeMap: '_repositories_pull' });
    const tok = { username: 'tok-throttled', password: made.password.value };
    const post = (c: Credentials): Promise<Res> => postToken(t, { grant_type: 'password', service: 'bulwark', username: c.username, password: c.password, scope: SCOPE }, '10.0.5.1');
    for (let i = 0; i < 3; i++) assertFailed(await post(wrong(tok)), `POST ${i}`);
    assertThrottled(await post(tok), 'POST, right password');
    assert.equal((await signIn(tok, '10.0.5.2')).statusCode, 200, 'the token from elsewhere');

    const refresh = { username: REFRESH_TOKEN_USERNAME, password: 'not-a-refresh-token' };
    for (let i = 0; i < 3; i++) assertFailed(await signIn(refresh, '10.0.5.3'), `refresh ${i}`);
    assertThrottled(await signIn(refresh, '10.0.5.3'), 'refresh username');
  });

  it('failed token exchanges (/oauth2/exchange) are throttled per address too, and audited as auth.throttled', async () => {
    const exchange = (address: string): Promise<Res> =>
      t.req('POST', '/oauth2/exchange', {
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ grant_type: 'access_token', service: 'bulwark', access_token: 'eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIn0.c2ln' }).toString(),
        remoteAddress: address,
      });
    for (let i = 0; i < 3; i++) assertFailed(await exchange('192.0.2.61'), `exchange ${i + 1}`);
    assertThrottled(await exchange('192.0.2.61'), 'the fourth');
    assert.ok(events.of('auth.throttled').some((e) => e.principal === '(oidc-exchange)' && e.client.address === '192.0.2.61'));
    assertFailed(await exchange('192.0.2.62'), 'another address is not affected');
  });

  it('over-long usernames count as one identity (the first 100 characters), so they cannot dodge the limit', async () => {
    const prefix = 'x'.repeat(100);
    for (let i = 0; i < 3; i++) assertFailed(await signIn({ username: `${prefix}${i}`, password: 'guess' }, '10.0.6.1'), `long ${i}`);
    assertThrottled(await signIn({ username: `${prefix}another`, password: 'guess' }, '10.0.6.1'), 'same first 100 characters');
    assert.equal(events.of('auth.throttled')[0]?.principal, prefix);
  });
});

describe('sign-in throttling: the window', () => {
  let t: TestApp;
  before(async () => {
    t = await startApp({ 'auth.enabled': true, 'auth.failures.perIdentity': 2, 'auth.failures.perAddress': 100, 'auth.failures.windowSeconds': 1 });
  });
  after(() => t.close());

  it('failures older than the window no longer count: Retry-After is honoured', async () => {
    const admin = bootstrapOf(t);
    const bad = { username: admin.username, password: 'nope' };
    for (let i = 0; i < 2; i++) assert.equal((await requestToken(t, [SCOPE], { creds: bad, remoteAddress: '10.0.7.1' })).statusCode, 401);
    const throttled = await requestToken(t, [SCOPE], { creds: admin, remoteAddress: '10.0.7.1' });
    assert.equal(throttled.statusCode, 429);
    assert.equal(header(throttled, 'retry-after'), '1');
    await sleep(1_100);
    assert.equal((await requestToken(t, [SCOPE], { creds: admin, remoteAddress: '10.0.7.1' })).statusCode, 200);
  });
});
