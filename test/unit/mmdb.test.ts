/**
 * The test MaxMind DB writer (test/testkit/mmdb.ts), read back with the `maxmind` package the
 * registry itself uses: lookups at range edges for IPv4 and IPv6, the metadata, the file layout,
 * and the inputs it refuses.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Reader, type CountryResponse } from 'maxmind';
import { buildCountryMmdb, type CountryNetwork } from '../testkit/mmdb.js';

const NETWORKS: readonly CountryNetwork[] = [
  { cidr: '198.51.100.0/24', country: 'US' },
  { cidr: '198.51.101.0/24', country: 'CA' }, // adjacent to the US /24
  { cidr: '192.0.2.0/25', country: 'DE' },
  { cidr: '192.0.2.128/25', country: 'FR' }, // the other half of 192.0.2.0/24
  { cidr: '203.0.113.7/32', country: 'JP' },
  { cidr: '2001:db8:1::/48', country: 'GB' },
  { cidr: '2001:db8:2::/48', country: 'SE' }, // adjacent to the GB /48
  { cidr: '2001:db8:ffff::1/128', country: 'NO' },
  { cidr: '2001:db8:abcd::/48', country: 'US' }, // shares its record with 198.51.100.0/24
];
const EPOCH = 1_700_000_000;

const open = (networks: readonly CountryNetwork[] = NETWORKS): Reader<CountryResponse> =>
  new Reader<CountryResponse>(buildCountryMmdb(networks, { buildEpoch: EPOCH }));
const countryOf = (reader: Reader<CountryResponse>, ip: string): string | null =>
  reader.get(ip)?.country?.iso_code ?? null;

describe('buildCountryMmdb', () => {
  const reader = open();

  test('IPv4 lookups: first and last address of each range, and just outside', () => {
    const cases: [string, string | null][] = [
      ['198.51.99.255', null], ['198.51.100.0', 'US'], ['198.51.100.7', 'US'], ['198.51.100.255', 'US'],
      ['198.51.101.0', 'CA'], ['198.51.101.255', 'CA'], ['198.51.102.0', null],
      ['192.0.1.255', null], ['192.0.2.0', 'DE'], ['192.0.2.127', 'DE'], ['192.0.2.128', 'FR'], ['192.0.2.255', 'FR'], ['192.0.3.0', null],
      ['203.0.113.6', null], ['203.0.113.7', 'JP'], ['203.0.113.8', null],
      ['0.0.0.0', null], ['255.255.255.255', null], ['10.0.0.1', null],
    ];
    for (const [ip, want] of cases) assert.equal(countryOf(reader, ip), want, ip);
  });

  test('IPv6 lookups: first and last address of each range, and just outside', () => {
    const cases: [string, string | null][] = [
      ['2001:db8:0:ffff:ffff:ffff:ffff:ffff', null], ['2001:db8:1::', 'GB'], ['2001:db8:1:ffff:ffff:ffff:ffff:ffff', 'GB'],
      ['2001:db8:2::', 'SE'], ['2001:db8:2:ffff:ffff:ffff:ffff:ffff', 'SE'], ['2001:db8:3::', null],
      ['2001:db8:ffff::', null], ['2001:db8:ffff::1', 'NO'], ['2001:db8:ffff::2', null],
      ['2001:db8:abcd:1234::1', 'US'], ['::', null], ['::1', null], ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null],
    ];
    for (const [ip, want] of cases) assert.equal(countryOf(reader, ip), want, ip);
  });

  test('records are GeoLite2-Country shaped, registered_country alongside country', () => {
    assert.deepEqual(reader.get('198.51.101.9'), { country: { iso_code: 'CA' }, registered_country: { iso_code: 'CA' } });
    assert.deepEqual(reader.get('2001:db8:ffff::1'), { country: { iso_code: 'NO' }, registered_country: { iso_code: 'NO' } });
  });

  test('prefix lengths follow the networks (IPv4 depth counted from the ::/96 subtree)', () => {
    assert.equal(reader.getWithPrefixLength('198.51.100.7')[1], 24);
    assert.equal(reader.getWithPrefixLength('203.0.113.7')[1], 32);
    assert.equal(reader.getWithPrefixLength('2001:db8:1::5')[1], 48);
    assert.equal(reader.getWithPrefixLength('2001:db8:ffff::1')[1], 128);
  });

  test('IPv4 lives under ::/96; IPv4-mapped addresses are not aliased and find nothing', () => {
    assert.equal(countryOf(reader, '::198.51.100.7'), 'US', 'the IPv4-compatible form reaches the IPv4 subtree');
    assert.equal(countryOf(reader, '::c633:6407'), 'US');
    // The reader walks ::ffff:x.x.x.x down the IPv6 tree as-is, and no ::ffff:0:0/96 alias is
    // written, so callers must unmap such addresses (as normalizeAddress does) before the lookup.
    assert.equal(countryOf(reader, '::ffff:198.51.100.7'), null);
    assert.equal(countryOf(reader, '::ffff:c633:6407'), null);
  });

  test('metadata', () => {
    const buf = buildCountryMmdb(NETWORKS, { buildEpoch: EPOCH, databaseType: 'GeoLite2-Country' });
    const { metadata } = new Reader(buf);
    assert.equal(metadata.binaryFormatMajorVersion, 2);
    assert.equal(metadata.binaryFormatMinorVersion, 0);
    assert.equal(metadata.recordSize, 24);
    assert.equal(metadata.ipVersion, 6);
    assert.equal(metadata.databaseType, 'GeoLite2-Country');
    assert.deepEqual(metadata.languages, ['en']);
    assert.deepEqual(metadata.description, { en: 'Bulwark test GeoIP Country database' });
    assert.equal(metadata.buildEpoch.getTime(), EPOCH * 1000);
    assert.equal(reader.metadata.databaseType, 'Bulwark-Test-Country', 'the default type');
    // The 16 zero separator bytes sit right after node_count six-byte nodes.
    assert.deepEqual(buf.subarray(metadata.searchTreeSize, metadata.searchTreeSize + 16), Buffer.alloc(16));
    assert.equal(metadata.searchTreeSize, metadata.nodeCount * 6);
  });

  test('strings of every size class survive (control byte sizes 0-28, 29, 30 and 31)', () => {
    for (const length of [1, 28, 29, 40, 284, 285, 300, 65_820, 65_821, 70_000]) {
      const databaseType = 'x'.repeat(length);
      const buf = buildCountryMmdb(NETWORKS, { buildEpoch: EPOCH, databaseType });
      const again = new Reader(buf);
      assert.equal(again.metadata.databaseType, databaseType, `length ${length}`);
      assert.deepEqual(again.metadata.languages, ['en'], `the entries after it still decode (length ${length})`);
    }
  });

  test('node_count: one node per bit of a lone network, one root for an empty tree', () => {
    assert.equal(open([{ cidr: '2001:db8::/48', country: 'US' }]).metadata.nodeCount, 48);
    assert.equal(open([{ cidr: '192.0.2.1/32', country: 'US' }]).metadata.nodeCount, 128, '96 bits of ::/96, then 32');
    assert.equal(open([{ cidr: '0.0.0.0/0', country: 'US' }]).metadata.nodeCount, 96);
    const empty = open([]);
    assert.equal(empty.metadata.nodeCount, 1);
    for (const ip of ['192.0.2.1', '2001:db8::1']) assert.equal(countryOf(empty, ip), null, ip);
    assert.equal(countryOf(open([{ cidr: '0.0.0.0/0', country: 'US' }]), '255.255.255.255'), 'US');
  });

  test('identical country records are written once', () => {
    const a = { cidr: '192.0.2.0/24', country: 'US' };
    const same = buildCountryMmdb([a, { cidr: '2001:db8::/32', country: 'US' }], { buildEpoch: EPOCH });
    const different = buildCountryMmdb([a, { cidr: '2001:db8::/32', country: 'CA' }], { buildEpoch: EPOCH });
    assert.ok(same.length < different.length, `${same.length} < ${different.length}`);
    assert.equal(countryOf(new Reader<CountryResponse>(same), '2001:db8::1'), 'US');
  });

  test('bad input throws', () => {
    const build = (cidr: string, country = 'US') => () => buildCountryMmdb([{ cidr, country }]);
    for (const cidr of ['198.51.100.0', '198.51.100.0/', '198.51.100.0/33', '198.51.100.0/8/8', '198.51.100.0/-1', '2001:db8::/129', 'example.com/8', '198.51.100/24', '', '::/0', 'fe80::%eth0/64']) {
      assert.throws(build(cidr), /mmdb: bad CIDR/, cidr);
    }
    assert.throws(build('198.51.100.1/24'), /host bits set/);
    assert.throws(build('2001:db8::1/64'), /host bits set/);
    for (const country of ['us', 'USA', '', 'U1', 'U']) assert.throws(build('198.51.100.0/24', country), /mmdb: bad country/, country);
    assert.throws(() => buildCountryMmdb([], { buildEpoch: -1 }), /bad buildEpoch/);
    assert.throws(() => buildCountryMmdb([], { buildEpoch: 1.5 }), /bad buildEpoch/);
    assert.throws(() => buildCountryMmdb([], { databaseType: '' }), /databaseType/);
  });

  test('overlapping networks are rejected, whichever comes first', () => {
    const overlaps = (a: string, b: string) => () => buildCountryMmdb([{ cidr: a, country: 'US' }, { cidr: b, country: 'CA' }]);
    assert.throws(overlaps('198.51.100.0/24', '198.51.100.0/24'), /198\.51\.100\.0\/24 overlaps 198\.51\.100\.0\/24/);
    assert.throws(overlaps('198.51.0.0/16', '198.51.100.0/24'), /198\.51\.100\.0\/24 overlaps 198\.51\.0\.0\/16/);
    assert.throws(overlaps('198.51.100.7/32', '198.51.0.0/16'), /198\.51\.0\.0\/16 overlaps 198\.51\.100\.7\/32/);
    assert.throws(overlaps('2001:db8::/32', '2001:db8:1::/48'), /overlaps 2001:db8::\/32/);
    assert.throws(overlaps('198.51.100.0/24', '::c633:6400/120'), /overlaps 198\.51\.100\.0\/24/, 'the IPv4-compatible spelling of the same block');
    assert.throws(overlaps('0.0.0.0/0', '::1/128'), /overlaps 0\.0\.0\.0\/0/, '::1 is inside ::/96');
    assert.doesNotThrow(overlaps('198.51.100.0/24', '::ffff:198.51.100.0/120'), 'IPv4-mapped space is separate from ::/96');
  });
});
