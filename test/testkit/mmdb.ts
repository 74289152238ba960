/**
 * A tiny writer of MaxMind DB (.mmdb) files, format 2.0 (https://maxmind.github.io/MaxMind-DB/),
 * so tests build the GeoIP Country database they need instead of shipping a binary fixture.
 *
 * Layout: binary search tree (24-bit records) | 16 zero bytes | data section | metadata marker
 * `\xAB\xCD\xEFMaxMind.com` | metadata map. Only the data types the country shape and the metadata
 * need are encoded (map, utf8_string, uint16, uint32, uint64, array); pointers are not written,
 * identical country records are instead written once and shared by every network that maps to them.
 */
import { isIP } from 'node:net';

export interface CountryNetwork { readonly cidr: string; readonly country: string }
export interface CountryMmdbOptions { readonly databaseType?: string; readonly buildEpoch?: number }

/** An unsigned integer with its MaxMind type chosen explicitly (the format has no "any integer"). */
class Uint { constructor(readonly type: 5 | 6 | 9, readonly value: number | bigint) {} }
type Value = string | Uint | readonly Value[] | { readonly [key: string]: Value };

const RECORD_SIZE = 24;
const MAX_RECORD = 2 ** RECORD_SIZE - 1;
const SEPARATOR = 16; // the data section separator, counted in data pointers by the spec
const METADATA_MARKER = Buffer.concat([Buffer.from([0xab, 0xcd, 0xef]), Buffer.from('MaxMind.com')]);

// ---- addresses: everything as a 128-bit bigint in the IPv6 tree --------------------------------

function ipv6ToBigInt(address: string): bigint {
  // An embedded dotted tail (::ffff:1.2.3.4, ::1.2.3.4) is the last two 16-bit groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(address)?.[1];
  const text = dotted === undefined ? address : address.slice(0, -dotted.length) + '0:0';
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const value = groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
  return dotted === undefined ? value : value | ipv4ToBigInt(dotted);
}

function ipv4ToBigInt(address: string): bigint {
  return address.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

interface Network { readonly cidr: string; readonly bits: bigint; readonly prefix: number; readonly country: string }

/** IPv4 networks land in ::/96 (IPv4-compatible), where the maxmind reader starts IPv4 lookups. */
function parseNetwork({ cidr, country }: CountryNetwork): Network {
  const bad = (why: string): Error => new Error(`mmdb: bad CIDR ${JSON.stringify(cidr)}: ${why}`);
  const [address = '', prefixText, ...rest] = cidr.split('/');
  if (prefixText === undefined || rest.length > 0 || !/^\d{1,3}$/.test(prefixText)) throw bad('expected address/prefix');
  const family = address.includes('%') ? 0 : isIP(address); // node accepts zone ids; a network has none
  if (family === 0) throw bad('not an IPv4 or IPv6 address');
  const width = family === 4 ? 32 : 128;
  const prefix = Number(prefixText) + 128 - width;
  if (prefix > 128) throw bad(`prefix longer than /${width}`);
  // A /0 would make the root itself a data record, which the tree cannot express.
  if (prefix === 0) throw bad('::/0 is not supported');
  const bits = family === 4 ? ipv4ToBigInt(address) : ipv6ToBigInt(address);
  if ((bits & ((1n << BigInt(128 - prefix)) - 1n)) !== 0n) throw bad('host bits set beyond the prefix');
  if (!/^[A-Z]{2}$/.test(country)) throw new Error(`mmdb: bad country ${JSON.stringify(country)} for ${cidr}: expected an ISO 3166-1 alpha-2 code like 'US'`);
  return { cidr, bits, prefix, country };
}

// ---- the search tree --------------------------------------------------------------------------

interface TrieNode { readonly children: [Slot, Slot] }
type Slot = TrieNode | Network | undefined;
const isNode = (slot: Slot): slot is TrieNode => slot !== undefined && 'children' in slot;

/** Some network inside a subtree: every node lies on the path to at least one network. */
const firstNetwork = (node: TrieNode): string => {
  const child = node.children[0] ?? node.children[1];
  return child === undefined ? '?' : isNode(child) ? firstNetwork(child) : child.cidr;
};

/** Rejects overlaps rather than letting one network silently shadow part of another. */
function insert(root: TrieNode, net: Network): void {
  const overlap = (other: string): Error => new Error(`mmdb: ${net.cidr} overlaps ${other}`);
  let node = root;
  for (let depth = 0; ; depth++) {
    const bit = Number((net.bits >> BigInt(127 - depth)) & 1n) as 0 | 1;
    const slot = node.children[bit];
    if (slot !== undefined && !isNode(slot)) throw overlap(slot.cidr);
    if (depth === net.prefix - 1) {
      if (slot !== undefined) throw overlap(firstNetwork(slot));
      node.children[bit] = net;
      return;
    }
    node = slot ?? (node.children[bit] = { children: [undefined, undefined] });
  }
}

/** Nodes numbered breadth-first (root is 0); each record is a node number, "no data" or data. */
function encodeTree(root: TrieNode, dataOffsets: ReadonlyMap<string, number>): { tree: Buffer; nodeCount: number } {
  const nodes: TrieNode[] = [root];
  for (let i = 0; i < nodes.length; i++) for (const child of nodes[i]?.children ?? []) if (isNode(child)) nodes.push(child);
  const nodeCount = nodes.length;
  const ids = new Map(nodes.map((node, i) => [node, i]));
  // The largest record value is the pointer to the last data record; all must fit in 24 bits.
  if (nodeCount + SEPARATOR + Math.max(0, ...dataOffsets.values()) > MAX_RECORD) throw new Error(`mmdb: ${nodeCount} nodes do not fit ${RECORD_SIZE}-bit records`);
  const record = (slot: Slot): number =>
    slot === undefined ? nodeCount : isNode(slot) ? (ids.get(slot) ?? nodeCount) : nodeCount + SEPARATOR + (dataOffsets.get(slot.country) ?? 0);
  const tree = Buffer.alloc(nodeCount * 6);
  nodes.forEach((node, i) => {
    tree.writeUIntBE(record(node.children[0]), i * 6, 3);
    tree.writeUIntBE(record(node.children[1]), i * 6 + 3, 3);
  });
  return { tree, nodeCount };
}

// ---- the data section encoding ----------------------------------------------------------------

/** Control byte(s): type in the top 3 bits (0 = extended, type - 7 in the next byte), then size. */
function control(type: number, size: number): Buffer {
  const [sizeBits, extra] =
    size < 29 ? [size, Buffer.alloc(0)]
    : size < 285 ? [29, Buffer.from([size - 29])]
    : size < 65_821 ? [30, uintBytes(size - 285, 2)]
    : [31, uintBytes(size - 65_821, 3)];
  const head = type <= 7 ? [(type << 5) | sizeBits] : [sizeBits, type - 7];
  return Buffer.concat([Buffer.from(head), extra]);
}

function uintBytes(value: number | bigint, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = length - 1, v = BigInt(value); i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

function encode(value: Value): Buffer {
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([control(2, bytes.length), bytes]);
  }
  if (value instanceof Uint) {
    // Big-endian with leading zero bytes dropped, as readers expect the shortest form.
    let length = 0;
    while (BigInt(value.value) >> BigInt(8 * length) > 0n) length++;
    return Buffer.concat([control(value.type, length), uintBytes(value.value, length)]);
  }
  if (Array.isArray(value)) return Buffer.concat([control(11, value.length), ...value.map(encode)]);
  const entries = Object.entries(value as { readonly [key: string]: Value });
  return Buffer.concat([control(7, entries.length), ...entries.flatMap(([k, v]) => [encode(k), encode(v)])]);
}

// ---- the database -----------------------------------------------------------------------------

/**
 * A GeoLite2-Country-shaped database: each network maps to { country: { iso_code },
 * registered_country: { iso_code } }; ip_version 6, IPv4 networks under ::/96. No ::ffff:0:0/96
 * alias is written, so IPv4-mapped addresses must be unmapped before lookup. Overlaps throw.
 */
export function buildCountryMmdb(networks: readonly CountryNetwork[], opts: CountryMmdbOptions = {}): Buffer {
  const { databaseType = 'Bulwark-Test-Country', buildEpoch = Math.floor(Date.now() / 1000) } = opts;
  if (databaseType === '') throw new Error('mmdb: databaseType must not be empty');
  if (!Number.isSafeInteger(buildEpoch) || buildEpoch < 0) throw new Error(`mmdb: bad buildEpoch ${buildEpoch}: expected seconds since the epoch`);
  const root: TrieNode = { children: [undefined, undefined] };
  const dataOffsets = new Map<string, number>();
  const records: Buffer[] = [];
  let dataLength = 0;
  for (const net of networks.map(parseNetwork)) {
    insert(root, net);
    if (dataOffsets.has(net.country)) continue;
    const record = encode({ country: { iso_code: net.country }, registered_country: { iso_code: net.country } });
    dataOffsets.set(net.country, dataLength);
    records.push(record);
    dataLength += record.length;
  }
  const { tree, nodeCount } = encodeTree(root, dataOffsets);
  const metadata = encode({
    node_count: new Uint(6, nodeCount),
    record_size: new Uint(5, RECORD_SIZE),
    ip_version: new Uint(5, 6),
    database_type: databaseType,
    languages: ['en'],
    binary_format_major_version: new Uint(5, 2),
    binary_format_minor_version: new Uint(5, 0),
    build_epoch: new Uint(9, BigInt(buildEpoch)),
    description: { en: 'Bulwark test GeoIP Country database' },
  });
  return Buffer.concat([tree, Buffer.alloc(SEPARATOR), ...records, METADATA_MARKER, metadata]);
}
