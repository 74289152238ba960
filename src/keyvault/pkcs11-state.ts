/**
 * The HSM vault's state file and PIN source. What PKCS#11 has no attribute for (enabled, soft
 * delete, recovery deadline, version order and creation time) lives here:
 *
 *   <stateDir>/            mode 0700
 *   └── state.json         mode 0600, replaced atomically (temp file, fsync, rename, dir fsync)
 *
 * state.json = { format: 1, body: { macKey, keys: [...], doomed: [...] }, mac }. `mac` is
 * HMAC-SHA-256 of the body computed by the token under the secret key whose CKA_ID is `macKey`,
 * so changing the file without the PIN is detected (STORE_CORRUPT). `doomed` lists CKA_IDs of
 * purged or expired versions whose token objects are still to be destroyed. The file holds no
 * key material.
 */
import { readFile, stat } from 'node:fs/promises';
import { KEY_NAME, KEY_SIZES, KeyVaultError, type KeySize } from './key-vault.js';

export interface StoredVersion {
  readonly version: string;
  readonly createdAt: string;
  readonly size: KeySize;
}
export interface StoredKey {
  readonly name: string;
  readonly enabled: boolean;
  readonly deletedAt?: string;
  readonly recoverableUntil?: string;
  readonly versions: readonly StoredVersion[];
}
export interface StateBody {
  readonly macKey: string;
  readonly keys: readonly StoredKey[];
  readonly doomed: readonly string[];
}
export interface StateEnvelope {
  readonly body: { readonly macKey: string };
  readonly mac: string;
}

/** CKA_IDs (and so version strings) are 16 random bytes in hex. */
export const ID_HEX = /^[0-9a-f]{32}$/;

function corrupt(message: string, cause?: unknown): never {
  throw new KeyVaultError('STORE_CORRUPT', message, cause === undefined ? undefined : { cause });
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInstant = (v: unknown): boolean => typeof v === 'string' && !Number.isNaN(Date.parse(v));

/** Only the parts needed to check the MAC; the rest is validated once the MAC holds. */
export function parseEnvelope(text: string): StateEnvelope {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    corrupt('state.json is not JSON', e);
  }
  if (!isRecord(doc) || doc.format !== 1 || !isRecord(doc.body) || typeof doc.mac !== 'string') corrupt('state.json has an unknown format');
  if (typeof doc.body.macKey !== 'string' || !ID_HEX.test(doc.body.macKey)) corrupt('state.json names no valid MAC key');
  return { body: { ...doc.body, macKey: doc.body.macKey }, mac: doc.mac };
}

function versionProblems(v: unknown, where: string): string[] {
  if (!isRecord(v)) return [`${where} is not an object`];
  const out: string[] = [];
  if (typeof v.version !== 'string' || !ID_HEX.test(v.version)) out.push(`${where}.version is not 32 hex digits`);
  if (!isInstant(v.createdAt)) out.push(`${where}.createdAt is not a date`);
  if (!KEY_SIZES.includes(v.size as KeySize)) out.push(`${where}.size is not one of ${KEY_SIZES.join(', ')}`);
  return out;
}

function keyProblems(k: unknown, where: string): string[] {
  if (!isRecord(k)) return [`${where} is not an object`];
  const out: string[] = [];
  if (typeof k.name !== 'string' || !KEY_NAME.test(k.name)) out.push(`${where}.name is not a key name`);
  if (typeof k.enabled !== 'boolean') out.push(`${where}.enabled is not a boolean`);
  for (const f of ['deletedAt', 'recoverableUntil'] as const) if (k[f] !== undefined && !isInstant(k[f])) out.push(`${where}.${f} is not a date`);
  if (!Array.isArray(k.versions) || k.versions.length === 0) out.push(`${where}.versions is not a non-empty list`);
  else k.versions.forEach((v, i) => out.push(...versionProblems(v, `${where}.versions[${i}]`)));
  return out;
}

/** Reports every invalid field at once (STYLE rule 7). */
export function assertStateBody(v: unknown): asserts v is StateBody {
  if (!isRecord(v)) corrupt('state.json body is not an object');
  const problems: string[] = [];
  if (typeof v.macKey !== 'string' || !ID_HEX.test(v.macKey)) problems.push('macKey is not 32 hex digits');
  if (!Array.isArray(v.keys)) problems.push('keys is not a list');
  else {
    v.keys.forEach((k, i) => problems.push(...keyProblems(k, `keys[${i}]`)));
    const names = v.keys.map((k) => (isRecord(k) ? k.name : undefined));
    if (new Set(names).size !== names.length) problems.push('keys has duplicate names');
  }
  if (!Array.isArray(v.doomed) || !v.doomed.every((d) => typeof d === 'string' && ID_HEX.test(d))) problems.push('doomed is not a list of ids');
  if (problems.length > 0) corrupt(`state.json is invalid: ${problems.join('; ')}`);
}

/** The file's text, or undefined when there is none yet. */
export async function readStateText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KeyVaultError('UNAVAILABLE', `failed to read ${file}`, { cause: e });
  }
}

export type PinSource = { readonly env: string } | { readonly file: string };

/** Reads the user PIN. Errors name where the PIN should be, never what it is. */
export async function loadPin(source: PinSource): Promise<string> {
  let pin: string | undefined;
  if ('env' in source) {
    pin = process.env[source.env];
    if (pin === undefined || pin === '') throw new KeyVaultError('MASTER_KEY', `environment variable ${source.env} holds no PIN`);
    return pin;
  }
  try {
    const st = await stat(source.file);
    // A PIN readable by group or others is not under the operator's control.
    if (!st.isFile() || (st.mode & 0o077) !== 0) throw new KeyVaultError('MASTER_KEY', `PIN file ${source.file} must be a regular file with mode 0600`);
    pin = (await readFile(source.file, 'utf8')).replace(/\r?\n$/, '');
  } catch (e) {
    if (e instanceof KeyVaultError) throw e;
    throw new KeyVaultError('MASTER_KEY', `failed to read PIN file ${source.file}`, { cause: e });
  }
  if (pin === '') throw new KeyVaultError('MASTER_KEY', `PIN file ${source.file} is empty`);
  return pin;
}
