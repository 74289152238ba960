/**
 * PKCS#11 plumbing under the HSM vault: one loaded module per path and process, one login per
 * token, and a small pool of sessions per vault.
 *
 * - The module is process-global (PKCS#11 v2.40 §5.4: C_Initialize once per application), so it
 *   is initialized when the first vault opens and finalized when the last one closes. A module
 *   someone else already initialized (CKR_CRYPTOKI_ALREADY_INITIALIZED) is used but never
 *   finalized here. Finalizing when idle is also what lets SoftHSM2 see tokens created since.
 * - Login state belongs to the application and token, not to a session (§5.6): two vaults on
 *   the same token share one login, so the second must present the same PIN (compared as a
 *   SHA-256 digest; the PIN itself is not kept) and only the last one to close logs out.
 * - A session runs one operation at a time (C_EncryptInit on a busy session is
 *   CKR_OPERATION_ACTIVE), and the *Async calls run on libuv's thread pool, so each concurrent
 *   operation borrows its own session. The module is initialized with CKF_OS_LOCKING_OK
 *   because those calls do come from several threads.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { endianness } from 'node:os';
import pkcs11js from 'pkcs11js';
import type { Handle, PKCS11 } from 'pkcs11js';
import { KeyVaultError } from './key-vault.js';

export type TokenSelector = { readonly label: string } | { readonly slot: number };

export interface SessionPoolOptions {
  readonly modulePath: string;
  readonly token: TokenSelector;
  readonly maxSessions: number;
}

const p = pkcs11js;
const PIN_ERRORS = new Set([p.CKR_PIN_INCORRECT, p.CKR_PIN_INVALID, p.CKR_PIN_LEN_RANGE, p.CKR_PIN_EXPIRED, p.CKR_PIN_LOCKED, p.CKR_USER_PIN_NOT_INITIALIZED]);
/** A failed decryption of caller-supplied bytes. SoftHSM2 reports a failed OAEP check or c >= n as CKR_GENERAL_ERROR. */
const DECRYPT_ERRORS = new Set([p.CKR_ENCRYPTED_DATA_INVALID, p.CKR_ENCRYPTED_DATA_LEN_RANGE, p.CKR_DATA_INVALID, p.CKR_DATA_LEN_RANGE, p.CKR_GENERAL_ERROR]);
/** The session is gone; it must not go back to the pool. */
const DEAD_SESSION = new Set([p.CKR_SESSION_HANDLE_INVALID, p.CKR_SESSION_CLOSED, p.CKR_DEVICE_REMOVED, p.CKR_TOKEN_NOT_PRESENT, p.CKR_DEVICE_ERROR]);

/** The CKR_ code of a module error, also when it is the cause of a KeyVaultError. */
function ckrCode(e: unknown): number | undefined {
  if (e instanceof KeyVaultError) return ckrCode(e.cause);
  return e instanceof p.Pkcs11Error ? e.code : undefined;
}

/**
 * Maps a module error to a KeyVaultError. Messages name the CKR_ code, never call arguments
 * (a PIN never reaches a message: pkcs11js errors carry only the code and a JS stack).
 */
export function tokenError(e: unknown, what: string, kind: 'call' | 'login' | 'decrypt' = 'call'): KeyVaultError {
  if (e instanceof KeyVaultError) return e;
  const code = ckrCode(e);
  const name = e instanceof p.Pkcs11Error ? e.message : 'module error';
  if (kind === 'login' && code !== undefined && PIN_ERRORS.has(code)) {
    return new KeyVaultError('MASTER_KEY', `failed to log in to the token: ${name} (check the configured PIN)`, { cause: e });
  }
  if (kind === 'decrypt' && code !== undefined && DECRYPT_ERRORS.has(code)) {
    return new KeyVaultError('UNWRAP_FAILED', 'wrapped key does not match this key version', { cause: e });
  }
  return new KeyVaultError('UNAVAILABLE', `failed to ${what}: ${name}`, { cause: e });
}

/** CK_ULONG values (handles, slot ids, mechanism lists) are native-endian machine words. */
export function ulongs(values: readonly number[]): Buffer {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => (endianness() === 'LE' ? b.writeBigUInt64LE(BigInt(v), 8 * i) : b.writeBigUInt64BE(BigInt(v), 8 * i)));
  return b;
}

function handleNumber(h: Handle): number {
  if (h.length === 4) return endianness() === 'LE' ? h.readUInt32LE() : h.readUInt32BE();
  return Number(endianness() === 'LE' ? h.readBigUInt64LE() : h.readBigUInt64BE());
}

interface LoadedModule {
  readonly p11: PKCS11;
  users: number;
  owned: boolean;
}
const modules = new Map<string, LoadedModule>();
/** Logins made by vaults in this process; `owned` is false when someone else had logged in first, so we never log them out. */
const logins = new Map<string, { users: number; readonly pinDigest: Buffer; readonly owned: boolean }>();

function acquireModule(path: string): PKCS11 {
  let m = modules.get(path);
  if (m === undefined) {
    const p11 = new p.PKCS11();
    try {
      p11.load(path);
    } catch (e) {
      throw tokenError(e, `load PKCS#11 module ${path}`);
    }
    m = { p11, users: 0, owned: false };
    modules.set(path, m); // never unloaded: a module may keep threads running after C_Finalize
  }
  if (m.users === 0) {
    try {
      m.p11.C_Initialize({ flags: p.CKF_OS_LOCKING_OK });
      m.owned = true;
    } catch (e) {
      if (ckrCode(e) !== p.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw tokenError(e, `initialize PKCS#11 module ${path}`);
      m.owned = false;
    }
  }
  m.users += 1;
  return m.p11;
}

function releaseModule(path: string): void {
  const m = modules.get(path);
  if (m === undefined || m.users === 0) return;
  m.users -= 1;
  if (m.users > 0 || !m.owned) return;
  m.owned = false;
  for (const key of logins.keys()) if (key.startsWith(`${path}\0`)) logins.delete(key); // C_Finalize logs every token out
  try {
    m.p11.C_Finalize();
  } catch {
    // Nothing is left to clean up: the module is being let go either way.
  }
}

function findSlot(p11: PKCS11, o: SessionPoolOptions): Handle {
  const slots = p11.C_GetSlotList(true);
  const want = o.token;
  const found = 'slot' in want ? slots.filter((s) => handleNumber(s) === want.slot) : slots.filter((s) => p11.C_GetTokenInfo(s).label.trimEnd() === want.label);
  const what = 'slot' in want ? `slot ${want.slot}` : `token labelled "${want.label}"`;
  if (found.length > 1) throw new KeyVaultError('INVALID', `more than one ${what} in ${o.modulePath}`);
  const slot = found[0];
  if (slot === undefined) throw new KeyVaultError('UNAVAILABLE', `no ${what} in ${o.modulePath}`);
  return slot;
}

/** Logged-in sessions on one token, lent out one operation at a time. */
export class SessionPool {
  private readonly idle: Handle[] = [];
  private readonly waiters: ((s: Handle | undefined) => void)[] = [];
  private opened = 0;
  private busy = 0;
  private drained: (() => void) | undefined;
  private loginKey = '';
  private closed = false;

  private constructor(
    readonly p11: PKCS11,
    readonly slot: Handle,
    private readonly options: SessionPoolOptions,
  ) {}

  /** Loads and initializes the module if needed, finds the token and logs in. MASTER_KEY for a bad PIN. */
  static open(options: SessionPoolOptions, pin: string): SessionPool {
    const p11 = acquireModule(options.modulePath);
    let pool: SessionPool | undefined;
    try {
      const slot = findSlot(p11, options);
      pool = new SessionPool(p11, slot, options);
      pool.login(pin);
      return pool;
    } catch (e) {
      for (const s of pool?.idle ?? []) pool?.closeQuietly(s);
      releaseModule(options.modulePath);
      throw tokenError(e, 'open the token');
    }
  }

  /** Runs `fn` on a session of its own; a session the token dropped is not reused. */
  async use<T>(fn: (session: Handle) => Promise<T> | T): Promise<T> {
    const session = await this.acquire();
    let dead = false;
    try {
      return await fn(session);
    } catch (e) {
      const code = ckrCode(e);
      dead = code !== undefined && DEAD_SESSION.has(code);
      throw e;
    } finally {
      this.release(session, dead);
    }
  }

  /** Waits for running operations, logs out if this was the token's last vault, closes the sessions. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.busy > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    const login = logins.get(this.loginKey);
    const anchor = this.idle[0];
    if (login !== undefined && (login.users -= 1) === 0) {
      logins.delete(this.loginKey);
      if (anchor !== undefined && login.owned) {
        try {
          this.p11.C_Logout(anchor);
        } catch {
          // Closing the token's last session logs out as well (PKCS#11 §5.6).
        }
      }
    }
    for (const s of this.idle.splice(0)) this.closeQuietly(s);
    releaseModule(this.options.modulePath);
  }

  private login(pin: string): void {
    const session = this.openSession();
    this.idle.push(session);
    this.loginKey = `${this.options.modulePath}\0${this.slot.toString('hex')}`;
    const digest = createHash('sha256').update(pin).digest();
    const existing = logins.get(this.loginKey);
    if (existing !== undefined) {
      // Already logged in by another vault in this process: C_Login would not check this PIN.
      if (!timingSafeEqual(existing.pinDigest, digest)) throw new KeyVaultError('MASTER_KEY', 'the PIN differs from the one this process logged in to the token with');
      existing.users += 1;
      return;
    }
    let owned = true;
    try {
      this.p11.C_Login(session, p.CKU_USER, pin);
    } catch (e) {
      if (ckrCode(e) !== p.CKR_USER_ALREADY_LOGGED_IN) throw tokenError(e, 'log in to the token', 'login');
      owned = false;
    }
    logins.set(this.loginKey, { users: 1, pinDigest: digest, owned });
  }

  private openSession(): Handle {
    const s = this.p11.C_OpenSession(this.slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
    this.opened += 1;
    return s;
  }

  /** `busy` counts sessions lent out or promised to a waiter, so close() cannot slip in between. */
  private async acquire(): Promise<Handle> {
    const ready = this.idle.pop() ?? (this.opened < this.options.maxSessions ? this.tryOpen() : undefined);
    if (ready !== undefined) {
      this.busy += 1;
      return ready;
    }
    const handed = await new Promise<Handle | undefined>((resolve) => this.waiters.push(resolve));
    if (handed !== undefined) return handed;
    try {
      return this.tryOpen(); // the session given up was dead; its place is free
    } catch (e) {
      this.settle();
      throw e;
    }
  }

  private tryOpen(): Handle {
    try {
      return this.openSession();
    } catch (e) {
      throw tokenError(e, 'open a session');
    }
  }

  private release(session: Handle, dead: boolean): void {
    if (dead) this.closeQuietly(session);
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      waiter(dead ? undefined : session); // stays counted as busy: it passes to the waiter
      return;
    }
    if (!dead) this.idle.push(session);
    this.settle();
  }

  private settle(): void {
    this.busy -= 1;
    if (this.busy === 0) this.drained?.();
  }

  private closeQuietly(session: Handle): void {
    this.opened -= 1;
    try {
      this.p11.C_CloseSession(session);
    } catch {
      // Already gone with the token; nothing to release.
    }
  }
}
