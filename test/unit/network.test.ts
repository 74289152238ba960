/**
 * Network rules (issue 5): addresses and CIDR ranges (IPv4, IPv6, IPv4-mapped), the policy's
 * decisions, and the client address through trusted proxies (the chain walked from the right,
 * headers from untrusted peers ignored). The same rules over real sockets: network-rules.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AddressSet, DeniedEvents, NetworkPolicy, clientAddress, normalizeAddress, parseCidr, parseRule, ruleProblem, subscriberKey, MAX_RULES, type Cidr } from '../../src/network/index.js';
import { loadConfig } from '../../src/config/index.js';

const set = (...ranges: string[]): AddressSet => new AddressSet(ranges.map((r) => parseCidr(r) as Cidr));

describe('addresses and ranges', () => {
  test('normalization: IPv4-mapped IPv6 is IPv4, brackets and zones dropped, case folded, non-IPs refused', () => {
    assert.equal(normalizeAddress('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(normalizeAddress('::FFFF:10.0.0.1'), '10.0.0.1');
    assert.equal(normalizeAddress('[2001:DB8::1]'), '2001:db8::1');
    assert.equal(normalizeAddress('fe80::1%eth0'), 'fe80::1');
    assert.equal(normalizeAddress('::ffff:c000:0201'), '192.0.2.1', 'the hexadecimal form of a mapped address');
    for (const bad of ['', 'unknown', '_hidden', '192.0.2.256', '192.0.2', '1.2.3.4:80', 'example.com', '::g']) assert.equal(normalizeAddress(bad), undefined, bad);
  });

  test('CIDR parsing: prefixes within the family, a bare address is a single host', () => {
    assert.deepEqual(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    assert.deepEqual(parseCidr('192.0.2.7'), { address: '192.0.2.7', prefix: 32, family: 'ipv4' });
    assert.deepEqual(parseCidr('2001:db8::/32'), { address: '2001:db8::', prefix: 32, family: 'ipv6' });
    assert.deepEqual(parseCidr('::1'), { address: '::1', prefix: 128, family: 'ipv6' });
    assert.deepEqual(parseCidr('0.0.0.0/0'), { address: '0.0.0.0', prefix: 0, family: 'ipv4' });
    for (const bad of ['10.0.0.0/33', '2001:db8::/129', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/8/8', 'x/8', '10.0.0.0/08a']) assert.equal(parseCidr(bad), undefined, bad);
  });

  test('range edges, IPv4 and IPv6', () => {
    const v4 = set('192.0.2.8/30');
    assert.deepEqual(['192.0.2.7', '192.0.2.8', '192.0.2.11', '192.0.2.12'].map((a) => v4.has(a)), [false, true, true, false]);
    assert.ok(v4.has('::ffff:192.0.2.9'), 'an IPv4-mapped peer is matched by an IPv4 range');
    const v6 = set('2001:db8:1::/48');
    assert.deepEqual(['2001:db8:0:ffff:ffff:ffff:ffff:ffff', '2001:db8:1::', '2001:db8:1:ffff:ffff:ffff:ffff:ffff', '2001:db8:2::'].map((a) => v6.has(a)), [false, true, true, false]);
    assert.equal(set('0.0.0.0/0').has('2001:db8::1'), false, 'an IPv4 range holds no IPv6 address');
    assert.equal(set('::/0').has('2001:db8::1'), true);
    for (const v4 of ['192.0.2.1', '::ffff:192.0.2.1', '::ffff:c000:201']) {
      for (const range of ['::/0', '::/8', '::ffff:0:0/95']) assert.equal(set(range).has(v4), false, `${range} holds no IPv4 address (${v4})`);
      assert.equal(set('::ffff:192.0.2.0/120').has(v4), true, `the IPv4-mapped range ::ffff:192.0.2.0/120 is 192.0.2.0/24 (${v4})`);
    }
    assert.deepEqual(parseCidr('::ffff:0:0/96'), { address: '0.0.0.0', prefix: 0, family: 'ipv4' }, 'the whole mapped block is every IPv4 address');
    assert.equal(set('10.0.0.0/8').has('unknown'), false);
  });
});

describe('per-client keys of the limiters', () => {
  test('IPv4 per address, IPv6 per /64 however it is written, mapped IPv4 as IPv4', () => {
    const cases: [string, string][] = [
      ['203.0.113.5', '203.0.113.5'],
      ['::ffff:203.0.113.5', '203.0.113.5'],
      ['::FFFF:cb00:7105', '203.0.113.5'],
      ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
      ['2001:DB8:0001:0002::9', '2001:db8:1:2::/64'],
      ['[2001:db8:1:2::9]', '2001:db8:1:2::/64'],
      ['fe80::1%eth0', 'fe80:0:0:0::/64'],
      ['2001:db8::', '2001:db8:0:0::/64'],
      ['::1', '0:0:0:0::/64'],
      ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
      ['1::2:3:4:5.6.7.8', '1:0:0:2::/64'],
      ['1::2:3:4:506:708', '1:0:0:2::/64'],
      ['unknown', 'unknown'],
    ];
    for (const [raw, key] of cases) assert.equal(subscriberKey(raw), key, raw);
  });
});

describe('the policy', () => {
  const rules = ['lab=allow:192.0.2.8/30', 'blocked=deny:192.0.2.0/24', 'v6=allow:2001:db8::/32'].map(parseRule);

  test('private listeners are not subject to the rules; public ones are, first match deciding, then defaultAction', () => {
    const deny = new NetworkPolicy({ publicAccess: 'Enabled', defaultAction: 'Deny', rules });
    assert.deepEqual(deny.decide('private', '203.0.113.1'), { allowed: true, rule: 'private listener' });
    assert.deepEqual(deny.decide('public', '192.0.2.9'), { allowed: true, rule: 'rule lab' }, 'the earlier rule wins over the wider deny');
    assert.deepEqual(deny.decide('public', '192.0.2.20'), { allowed: false, rule: 'rule blocked' });
    assert.deepEqual(deny.decide('public', '2001:db8::5'), { allowed: true, rule: 'rule v6' });
    assert.deepEqual(deny.decide('public', '203.0.113.1'), { allowed: false, rule: 'defaultAction Deny' });
    assert.deepEqual(deny.decide('public', undefined), { allowed: false, rule: 'defaultAction Deny' }, 'an unknown address matches no rule');
    const allow = new NetworkPolicy({ publicAccess: 'Enabled', defaultAction: 'Allow', rules });
    assert.deepEqual(allow.decide('public', '203.0.113.1'), { allowed: true, rule: 'defaultAction Allow' });
    assert.deepEqual(allow.decide('public', '192.0.2.20'), { allowed: false, rule: 'rule blocked' });
  });

  test('public access disabled refuses every public request, whatever the rules; private listeners still serve', () => {
    const off = new NetworkPolicy({ publicAccess: 'Disabled', defaultAction: 'Allow', rules });
    assert.deepEqual(off.decide('public', '192.0.2.9'), { allowed: false, rule: 'publicAccess Disabled' });
    assert.deepEqual(off.decide('private', '192.0.2.9'), { allowed: true, rule: 'private listener' });
  });

  test('rules are validated: syntax, ranges, unique names, at most 200', () => {
    assert.equal(ruleProblem('office=allow:203.0.113.0/24'), undefined);
    assert.equal(ruleProblem('v6=deny:2001:db8::/32'), undefined);
    assert.match(ruleProblem('office=permit:203.0.113.0/24') ?? '', /expected/);
    assert.match(ruleProblem('office=allow:203.0.113.0/33') ?? '', /not an IPv4\/IPv6 address/);
    assert.match(ruleProblem('=allow:10.0.0.1') ?? '', /expected/);
    assert.throws(() => new NetworkPolicy({ publicAccess: 'Enabled', defaultAction: 'Deny', rules: [parseRule('a=allow:10.0.0.1'), parseRule('a=deny:10.0.0.2')] }), /two network rules are named "a"/);
    const many = Array.from({ length: MAX_RULES + 1 }, (_, i) => parseRule(`r${i}=allow:10.0.${Math.floor(i / 256)}.${i % 256}`));
    assert.throws(() => new NetworkPolicy({ publicAccess: 'Enabled', defaultAction: 'Deny', rules: many }), /at most 200/);
    assert.doesNotThrow(() => new NetworkPolicy({ publicAccess: 'Enabled', defaultAction: 'Deny', rules: many.slice(0, MAX_RULES) }));
  });

  test('the configuration refuses a malformed rule, listener or proxy at load', () => {
    const env = { BULWARK_NETWORK_RULES: 'ok=allow:10.0.0.0/8,bad=allow:10.0.0.0/40', BULWARK_NETWORK_LISTENERS: 'public=:80', BULWARK_NETWORK_TRUSTED_PROXIES: 'proxy' };
    assert.throws(() => loadConfig({ env }), (e: Error) => /network\.rules/.test(e.message) && /network\.listeners/.test(e.message) && /network\.trustedProxies/.test(e.message));
    const c = loadConfig({ env: { BULWARK_NETWORK_RULES: 'ok=allow:10.0.0.0/8', BULWARK_NETWORK_LISTENERS: 'public=[::1]:5443,private=127.0.0.1:5001' } });
    assert.deepEqual(c.network.rules, ['ok=allow:10.0.0.0/8']);
    assert.equal(c.network.defaultAction, 'Deny', 'deny by default');
    assert.equal(c.network.listenKind, 'private');
  });
});

describe('the client address through proxies', () => {
  const proxies = set('10.0.0.0/24', 'fd00::/64');
  const xff = (peer: string, value?: string): string | undefined => clientAddress(peer, value === undefined ? {} : { 'x-forwarded-for': value }, proxies, 'x-forwarded-for').address;

  test('a peer that is not a trusted proxy is the client, whatever its headers say', () => {
    assert.equal(xff('203.0.113.9', '192.0.2.1'), '203.0.113.9');
    assert.equal(clientAddress('203.0.113.9', { forwarded: 'for=192.0.2.1' }, proxies, 'forwarded').address, '203.0.113.9');
    assert.equal(clientAddress('::ffff:203.0.113.9', {}, proxies, 'x-forwarded-for').address, '203.0.113.9');
  });

  test('through trusted proxies the chain is walked from the right to the first untrusted hop', () => {
    assert.equal(xff('10.0.0.1', '192.0.2.1'), '192.0.2.1');
    assert.equal(xff('10.0.0.1', '198.51.100.7, 192.0.2.1, 10.0.0.2'), '192.0.2.1', 'the client-written value left of the real client is ignored');
    assert.equal(xff('10.0.0.1', '10.0.0.3, 10.0.0.2'), '10.0.0.3', 'every hop trusted: the leftmost');
    assert.equal(xff('10.0.0.1'), '10.0.0.1', 'no header: the proxy itself');
    assert.equal(xff('fd00::1', '2001:db8::5'), '2001:db8::5');
    assert.equal(xff('10.0.0.1', 'unknown'), undefined, 'a hop that is not an IP gives no address (it matches no rule)');
    assert.equal(xff('10.0.0.1', '192.0.2.1, garbage, 10.0.0.2'), undefined, 'the walk stops at the first hop it cannot trust');
    const long = Array.from({ length: 40 }, () => '10.0.0.2').join(', ');
    assert.equal(xff('10.0.0.1', long), undefined, 'an endless chain of proxies is not believed');
    assert.equal(xff('10.0.0.1', '192.0.2.1:51234'), '192.0.2.1', 'a port after the address (as Azure Application Gateway writes) is dropped');
    assert.equal(xff('10.0.0.1', '[2001:db8::7]:443'), '2001:db8::7');
    const lines = clientAddress('10.0.0.1', { 'x-forwarded-for': ['192.0.2.1', '10.0.0.2'] }, proxies, 'x-forwarded-for');
    assert.equal(lines.address, '192.0.2.1', 'repeated header lines are one list');
  });

  test('Forwarded (RFC 7239): for= values with quotes, brackets and ports; only the configured header is read', () => {
    const fwd = (value: string, peer = '10.0.0.1'): string | undefined => clientAddress(peer, { forwarded: value, 'x-forwarded-for': '203.0.113.66' }, proxies, 'forwarded').address;
    assert.equal(fwd('for=192.0.2.60;proto=http;by=203.0.113.43'), '192.0.2.60');
    assert.equal(fwd('for="[2001:db8:cafe::17]:4711"'), '2001:db8:cafe::17');
    assert.equal(fwd('for=192.0.2.43:8080, for=10.0.0.2'), '192.0.2.43');
    assert.equal(fwd('For=198.51.100.17;by=10.0.0.2, for="_hidden"'), undefined, 'an obfuscated node is no address');
    assert.equal(fwd('proto=https'), undefined, 'an element without for= is a hop that did not say: no address');
    assert.equal(fwd('for=10.0.0.9, proto=https;by=10.0.0.2'), undefined, 'a client-written for= left of a silent hop is not the client');
    assert.equal(clientAddress('10.0.0.1', { forwarded: 'for=192.0.2.60', 'x-forwarded-for': '203.0.113.66' }, proxies, 'x-forwarded-for').address, '203.0.113.66', 'Forwarded is ignored when the proxies write X-Forwarded-For');
  });
});

describe('refusal events', () => {
  test('at most 10 per address a minute; the first event of the next window counts the ones not logged', () => {
    let now = 0;
    const events = new DeniedEvents(() => now);
    const first = Array.from({ length: 25 }, () => events.admit('192.0.2.1'));
    assert.equal(first.filter((a) => a.emit).length, 10);
    assert.deepEqual(events.admit('198.51.100.1'), { emit: true, suppressed: 0 }, 'other addresses have windows of their own');
    now = 60_000;
    assert.deepEqual(events.admit('192.0.2.1'), { emit: true, suppressed: 15 });
    assert.deepEqual(events.admit('192.0.2.1'), { emit: true, suppressed: 0 });
  });
});
