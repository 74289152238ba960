/**
 * Small secrets the registry keeps in its own databases (the token-signing private keys), sealed
 * like every stored object (ADR 0006, 0018): AES-256-GCM under a fresh data key that the key
 * vault wraps with the key-encryption key. Opening goes through the KeyRing, so it fails closed
 * exactly like a blob read: a disabled, revoked or unreachable KEK refuses it once the unwrapped
 * data key's cache lifetime has passed.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { KekRef } from './data-key-store.js';
import { StoredContentError } from './encrypting-metadata-store.js';
import type { KeyRing } from './key-ring.js';

/** A sealed secret as stored (JSON-friendly: binary parts in base64). */
export interface SealedSecret {
  readonly kek: KekRef;
  /** the data key, wrapped by `kek` */
  readonly wrapped: string;
  readonly nonce: string;
  readonly ciphertext: string;
  readonly tag: string;
}


const NONCE_BYTES = 12;
const TAG_BYTES = 16;

function aad(id: string): Buffer {
  return Buffer.from(`bulwark sealed secret v1\0${id}`, 'utf8');
}

/** The stored form, checked: anything else is a storage fault, never opened. */
function asSealed(v: unknown, id: string): SealedSecret {
  const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null;
  const ok =
    isRecord(v) &&
    isRecord(v.kek) &&
    [v.wrapped, v.nonce, v.ciphertext, v.tag, v.kek.vault, v.kek.name, v.kek.version].every((x) => typeof x === 'string');
  if (!ok) throw new StoredContentError(`sealed secret ${id} is malformed`);
  return v as unknown as SealedSecret;
}

/**
 * Seals and opens secrets with the registry's KeyRing (`id` names the secret: its cache entry
 * and its associated data, so a sealed secret moved to another record does not open).
 */
export class KeyRingSealer {
  constructor(private readonly ring: KeyRing) {}

  async seal(id: string, plaintext: Buffer): Promise<SealedSecret> {
    const dk = await this.ring.newDataKey(this.cacheId(id));
    try {
      const nonce = randomBytes(NONCE_BYTES);
      const c = createCipheriv('aes-256-gcm', dk.key, nonce);
      c.setAAD(aad(id));
      const ciphertext = Buffer.concat([c.update(plaintext), c.final()]);
      return { kek: dk.kek, wrapped: dk.wrapped.toString('base64'), nonce: nonce.toString('base64'), ciphertext: ciphertext.toString('base64'), tag: c.getAuthTag().toString('base64') };
    } finally {
      dk.key.fill(0);
    }
  }

  /** The plaintext; UNAVAILABLE when the vault refuses, StoredContentError when the bytes were altered. */
  async open(id: string, stored: unknown): Promise<Buffer> {
    const sealed = asSealed(stored, id);
    const key = await this.ring.dataKey(this.cacheId(id), sealed.kek, Buffer.from(sealed.wrapped, 'base64'));
    try {
      const nonce = Buffer.from(sealed.nonce, 'base64');
      const tag = Buffer.from(sealed.tag, 'base64');
      if (nonce.length !== NONCE_BYTES || tag.length !== TAG_BYTES) throw new StoredContentError(`sealed secret ${id} is malformed`);
      const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
      d.setAAD(aad(id));
      d.setAuthTag(tag);
      try {
        return Buffer.concat([d.update(Buffer.from(sealed.ciphertext, 'base64')), d.final()]);
      } catch {
        throw new StoredContentError(`sealed secret ${id} fails authentication`);
      }
    } finally {
      key.fill(0);
    }
  }

  /** Until when (ms since epoch) what `open(id)` returned may be used without asking the vault again. */
  usableUntil(id: string): number | undefined {
    return this.ring.cachedUntil(this.cacheId(id));
  }

  /**
   * Whether a secret sealed as `stored` is under another KEK version than new secrets get (the KEK
   * rotated since). Asks the vault which version is current; when it cannot say, false (the next
   * check asks again).
   */
  async outdated(stored: unknown): Promise<boolean> {
    try {
      const kek = asSealed(stored, 'being checked').kek;
      const current = await this.ring.describeTarget();
      return current.vault !== kek.vault || current.name !== kek.name || current.version !== kek.version;
    } catch {
      return false;
    }
  }

  private cacheId(id: string): string {
    return `secret:${id}`;
  }
}
