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

test('with a shared secret, two processes sign and verify the same URLs, across restarts and period edges', () => {
  let now = 5_000_000;
  const secret = Buffer.from('0123456789abcdef0123456789abcdef-shared');
  const options = { ttlMs: 60_000, rotationMs: 600_000, bindClientAddress: true, sharedSecret: secret, now: () => now };
  const a = new UrlSigner(options);
  const b = new UrlSigner(options);
  const sig = a.sign('GET', 'team/app', D, '192.0.2.1');
  assert.equal(b.verify('GET', 'team/app', D, '192.0.2.1', sig), undefined, 'another process verifies it');
  assert.equal(new UrlSigner(options).verify('GET', 'team/app', D, '192.0.2.1', sig), undefined, 'and a restarted one');
  assert.equal(b.verify('GET', 'team/app', D, '192.0.2.2', sig), 'bad signature', 'still bound to the client');
  const other = new UrlSigner({ ...options, sharedSecret: Buffer.from('another-secret-another-secret-another') });
  assert.notEqual(other.verify('GET', 'team/app', D, '192.0.2.1', sig), undefined, 'a different secret does not verify it');
  // a process whose clock is a little ahead signs with the next period's key; the others accept it
  const ahead = new UrlSigner({ ...options, now: () => (Math.floor(now / 600_000) + 1) * 600_000 + 1 });
  const early = ahead.sign('GET', 'team/app', D, '192.0.2.1');
  assert.notEqual(early.k, sig.k);
  assert.equal(a.verify('GET', 'team/app', D, '192.0.2.1', early), undefined);
  // two periods later the first key no longer verifies (the URL has long expired anyway)
  now += 1_200_000;
  assert.equal(b.verify('GET', 'team/app', D, '192.0.2.1', { ...sig, exp: String(Math.floor(now / 1000) + 30) }), 'unknown signing key');
  assert.throws(() => new UrlSigner({ ...options, sharedSecret: Buffer.from('short') }), /at least 32 bytes/);
});
