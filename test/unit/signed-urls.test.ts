/** Signed data URLs (issue 5, item 4): what a signature binds, expiry, key rotation. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UrlSigner } from '../../src/network/index.js';

const D = `sha256:${'a'.repeat(64)}`;

test('a signature binds method, repository, digest and expiry (and the client when asked)', () => {
  let now = 1_000_000;
  const s = new UrlSigner({ ttlMs: 60_000, rotationMs: 600_000, bindClientAddress: false, now: () => now });
  const sig = s.sign('GET', 'team/app', D, '192.0.2.1');
  assert.equal(s.verify('GET', 'team/app', D, '192.0.2.1', sig), undefined);
  assert.equal(s.verify('GET', 'team/app', D, '198.51.100.9', sig), undefined, 'not bound: any client');
  assert.equal(s.verify('HEAD', 'team/app', D, '192.0.2.1', sig), 'bad signature');
  assert.equal(s.verify('GET', 'team/other', D, '192.0.2.1', sig), 'bad signature');
  assert.equal(s.verify('GET', 'team/app', `sha256:${'b'.repeat(64)}`, '192.0.2.1', sig), 'bad signature');
  assert.equal(s.verify('GET', 'team/app', D, '192.0.2.1', { ...sig, exp: String(Number(sig.exp) + 1) }), 'bad signature', 'a later expiry is not the signed one');
  const flipped = (sig.sig[0] === 'A' ? 'B' : 'A') + sig.sig.slice(1);
  assert.equal(s.verify('GET', 'team/app', D, '192.0.2.1', { ...sig, sig: flipped }), 'bad signature');
  assert.equal(s.verify('GET', 'team/app', D, '192.0.2.1', { ...sig, sig: undefined }), 'missing or malformed signature');
  assert.equal(s.verify('GET', 'team/app', D, '192.0.2.1', { ...sig, sig: `${sig.sig}x` }), 'missing or malformed signature');
  assert.equal(s.verify('GET', 'team/app', D, '192.0.2.1', { ...sig, k: 'nope' }), 'unknown signing key');
  now += 60_000;
  assert.equal(s.verify('GET', 'team/app', D, '192.0.2.1', sig), 'expired');

  const bound = new UrlSigner({ ttlMs: 60_000, rotationMs: 600_000, bindClientAddress: true, now: () => now });
  const b = bound.sign('GET', 'team/app', D, '192.0.2.1');
  assert.equal(bound.verify('GET', 'team/app', D, '192.0.2.1', b), undefined);
  assert.equal(bound.verify('GET', 'team/app', D, '192.0.2.2', b), 'bad signature', 'bound: another client cannot use it');
});

test('keys rotate; the previous key still verifies the URLs it signed, the one before does not', () => {
  let now = 0;
  const s = new UrlSigner({ ttlMs: 10_000, rotationMs: 10_000, bindClientAddress: false, now: () => now });
  const first = s.sign('GET', 'r', D, '-');
  now = 9_999;
  const second = s.sign('GET', 'r', D, '-');
  assert.equal(second.k, first.k, 'the same key within its period');
  now = 10_000;
  const third = s.sign('GET', 'r', D, '-');
  assert.notEqual(third.k, first.k, 'a new key after the rotation period');
  assert.equal(s.verify('GET', 'r', D, '-', second), undefined, 'signed by the previous key, not expired yet');
  now = 20_000;
  s.sign('GET', 'r', D, '-');
  assert.equal(s.verify('GET', 'r', D, '-', { ...second, exp: String(Math.floor(now / 1000) + 5) }), 'unknown signing key', 'two rotations later the key is gone');
  assert.throws(() => new UrlSigner({ ttlMs: 10_000, rotationMs: 5_000, bindClientAddress: false }), /at least as long/);
});
