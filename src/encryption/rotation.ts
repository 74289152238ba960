/**
 * Key rotation: re-wrap every data key under the target key-encryption key without touching
 * blob bytes. Each record is unwrapped with the KEK version that wrapped it and wrapped again by
 * the target, then written back with a compare-and-set (DataKeyStore.rewrap), so pushes, deletes
 * and pulls go on meanwhile, and a crash loses nothing: whatever was not re-wrapped still is
 * not, and the next run (or the automatic check) picks it up.
 *
 * One rotation runs at a time per process. Progress is observable while it runs (status), and
 * the last run's summary is kept in the data-key store's settings.
 */
import type { DataKeyStore, KekCount, KekRef } from './data-key-store.js';
import { sameKek } from './data-key-store.js';
import type { KeyRing } from './key-ring.js';
import { isKeyVaultError } from '../keyvault/index.js';
import { registryError } from '../oci/index.js';

/** How many records one page of the work list holds. */
const PAGE = 200;
/** Passes over the work list per run at most (each pass picks up records added behind the last). */
const MAX_PASSES = 5;
/** How long the status view reuses the resolved target version. */
const STATUS_TARGET_MS = 5_000;
const LAST_ROTATION = 'rotation.last';
/** a KEK chosen with `rotate --key`, which outlives restarts (it overrides encryption.key) */
const TARGET = 'rotation.target';
const KEY_REF = /^([0-9A-Za-z-]{1,127})(?:\/([0-9A-Za-z._-]{1,128}))?$/;

export interface RotationProgress {
  readonly target: KekRef;
  readonly startedAt: string;
  /** records to re-wrap when the run started */
  readonly total: number;
  rewrapped: number;
  /** records another writer changed first (deleted, or re-wrapped by a concurrent run) */
  skipped: number;
  /** records whose key could not be unwrapped or wrapped (left as they were) */
  failed: number;
  finishedAt?: string;
  /** the first failure, in words (vault error code and message; never key material) */
  error?: string;
}

export interface EncryptionStatus {
  /** the KEK new data keys are wrapped by, resolved to its current version */
  readonly target: KekRef;
  /** whether the configured key follows the newest version */
  readonly followsNewest: boolean;
  readonly counts: readonly KekCount[];
  readonly running?: RotationProgress;
  readonly lastRotation?: RotationProgress;
}

export class Rotator {
  private running: { progress: RotationProgress; done: Promise<RotationProgress> } | undefined;
  /** a start() in progress: claimed before its first await, so two starts cannot both run */
  private starting: Promise<{ progress: RotationProgress; done: Promise<RotationProgress> }> | undefined;
  private stopping = false;
  private statusTarget: { at: number; target: KekRef } | undefined;

  /**
   * @param configured the configured key as `<vault>:<encryption.key>`: a target saved by
   *   `rotate --key` holds only while the configuration still names this key; when the operator
   *   changes the configuration (say, to an HSM), the configuration wins.
   */
  constructor(
    private readonly keys: DataKeyStore,
    private readonly ring: KeyRing,
    private readonly identity: string,
    private readonly configured: string,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Adopts the KEK a previous `rotate --key` chose, if any (call once at start). */
  async restoreTarget(): Promise<void> {
    const saved = await this.keys.getSetting(TARGET);
    if (saved === undefined) return;
    const t = JSON.parse(saved) as { vault: string; name: string; version?: string; configured?: string };
    if (t.configured !== this.configured) return;
    this.ring.retarget({ vault: t.vault, name: t.name, version: t.version });
  }

  /**
   * Makes `key` (`<name>` or `<name>/<version>`, in the vault of the current target) the KEK new
   * data keys are wrapped by, durably. The key must exist and be usable for wrapping.
   */
  async retarget(key: string): Promise<void> {
    const m = KEY_REF.exec(key);
    if (m === null) throw registryError('BAD_REQUEST', 'key: expected <name> or <name>/<version>');
    const t = { vault: this.ring.targetKey.vault, name: m[1] as string, version: m[2] };
    const info = await this.ring.vault(t.vault).getKey(this.identity, t.name, t.version).catch((e: unknown) => {
      throw registryError('BAD_REQUEST', `key ${key}: ${isKeyVaultError(e) ? e.code : 'not usable'}`, { cause: e });
    });
    if (!info.enabled || info.deletedAt !== undefined) throw registryError('BAD_REQUEST', `key ${key} is disabled or deleted`);
    await this.keys.setSetting(TARGET, JSON.stringify({ ...t, configured: this.configured }));
    this.ring.retarget(t);
  }

  /**
   * Creates a new version of the target KEK (a service-managed key's rotation; a customer-managed
   * key is rotated in its own vault and picked up by the periodic check). Needs `manage`.
   */
  private async newVersion(): Promise<void> {
    const t = this.ring.targetKey;
    if (t.version !== undefined) throw registryError('BAD_REQUEST', `the key is pinned to version ${t.version}; a new version would not be used`);
    await this.ring.vault(t.vault).rotateKey(this.identity, t.name).catch((e: unknown) => {
      throw registryError('BAD_REQUEST', `cannot create a new version of ${t.name}: ${isKeyVaultError(e) ? e.code : 'vault error'}`, { cause: e });
    });
  }

  /** The target KEK with its version resolved (the newest one unless pinned). */
  async resolveTarget(): Promise<KekRef> {
    return this.ring.describeTarget();
  }

  async status(): Promise<EncryptionStatus> {
    const last = await this.keys.getSetting(LAST_ROTATION);
    // One vault call per few seconds at most, however often a (read-only) caller asks.
    if (this.statusTarget === undefined || this.now().getTime() - this.statusTarget.at > STATUS_TARGET_MS) {
      this.statusTarget = { at: this.now().getTime(), target: await this.resolveTarget() };
    }
    return {
      target: this.statusTarget.target,
      followsNewest: this.ring.targetKey.version === undefined,
      counts: await this.keys.countByKey(),
      ...(this.running !== undefined ? { running: { ...this.running.progress } } : {}),
      ...(last !== undefined ? { lastRotation: JSON.parse(last) as RotationProgress } : {}),
    };
  }

  /** Data keys per KEK version (no vault call). */
  counts(): Promise<KekCount[]> {
    return this.keys.countByKey();
  }

  /** Records not wrapped by the target (what a rotation would do now). */
  async pending(target: KekRef): Promise<number> {
    return (await this.keys.countByKey()).filter((c) => !sameKek(c.kek, target)).reduce((n, c) => n + c.count, 0);
  }

  /**
   * Starts a rotation to the current target (or joins the one running) and returns its progress
   * object, which the run keeps updating; `done` settles when it ends.
   */
  async start(opts: { key?: string | undefined; newVersion?: boolean | undefined } = {}): Promise<{ progress: RotationProgress; done: Promise<RotationProgress> }> {
    const changes = opts.key !== undefined || opts.newVersion === true;
    const busy = this.running !== undefined || this.starting !== undefined;
    if (busy && changes) throw registryError('BAD_REQUEST', 'a rotation is running; change the key when it has finished');
    if (this.stopping) throw registryError('UNAVAILABLE', 'the server is shutting down');
    if (this.running !== undefined) return this.running;
    if (this.starting !== undefined) return this.starting;
    const starting = this.begin(opts);
    this.starting = starting;
    try {
      return await starting;
    } finally {
      this.starting = undefined;
    }
  }

  private async begin(opts: { key?: string | undefined; newVersion?: boolean | undefined }): Promise<{ progress: RotationProgress; done: Promise<RotationProgress> }> {
    if (opts.key !== undefined) await this.retarget(opts.key);
    if (opts.newVersion === true) await this.newVersion();
    const target = await this.resolveTarget();
    this.statusTarget = { at: this.now().getTime(), target };
    // Uploads already under way commit with their data key re-wrapped under this version.
    this.ring.noteCurrent(target);
    const progress: RotationProgress = { target, startedAt: this.now().toISOString(), total: await this.pending(target), rewrapped: 0, skipped: 0, failed: 0 };
    // A run that fails (the data-key store refusing a write, the store closing under it) ends
    // with the error in its progress; its promise never rejects, so nobody has to catch it.
    const done = this.run(progress)
      .catch((e: unknown) => {
        progress.error ??= `rotation stopped: ${e instanceof Error ? e.message : String(e)}`;
        progress.finishedAt ??= this.now().toISOString();
        return progress;
      })
      .finally(() => {
        this.running = undefined;
      });
    this.running = { progress, done };
    return this.running;
  }

  /**
   * The periodic check: when data keys are not all under the target's current version (a new
   * version appeared in the vault, or a run was interrupted), rotates and returns the run's
   * progress; otherwise undefined.
   */
  async rotateIfBehind(): Promise<RotationProgress | undefined> {
    if (this.running !== undefined || this.starting !== undefined || this.stopping) return undefined;
    if ((await this.pending(await this.resolveTarget())) === 0) return undefined;
    return (await this.start()).done;
  }

  /** Stops a running rotation after the record in hand and waits for it (server shutdown). */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.starting?.catch(() => undefined);
    await this.running?.done;
  }

  /** The running and the last rotation's progress, without asking the vault. */
  async progress(): Promise<{ running?: RotationProgress; lastRotation?: RotationProgress }> {
    const last = await this.keys.getSetting(LAST_ROTATION);
    return {
      ...(this.running !== undefined ? { running: { ...this.running.progress } } : {}),
      ...(last !== undefined ? { lastRotation: JSON.parse(last) as RotationProgress } : {}),
    };
  }

  private async run(p: RotationProgress): Promise<RotationProgress> {
    // Records committed behind the cursor while a pass runs are picked up by the next pass; a
    // pass that re-wraps nothing ends the run (what is left failed, and is reported).
    const failed = new Set<string>();
    for (let pass = 0; pass < MAX_PASSES && !this.stopping; pass++) {
      const before = p.rewrapped + p.skipped;
      await this.pass(p, failed);
      if (p.rewrapped + p.skipped === before || (await this.pending(p.target)) <= failed.size) break;
    }
    p.finishedAt = this.now().toISOString();
    await this.keys.setSetting(LAST_ROTATION, JSON.stringify(p));
    return p;
  }

  /** One walk over the records not wrapped by the target. */
  private async pass(p: RotationProgress, failed: Set<string>): Promise<void> {
    let after: Parameters<DataKeyStore['listNotWrappedBy']>[2];
    for (;;) {
      const page = await this.keys.listNotWrappedBy(p.target, PAGE, after);
      if (page.length === 0) break;
      for (const rec of page) {
        if (this.stopping) return;
        try {
          const next = await this.ring.rewrap(rec.kek, rec.wrapped, p.target);
          const ok = await this.keys.rewrap(rec.kind, rec.digest, { kek: rec.kek, wrapped: rec.wrapped }, { ...next, at: this.now().getTime() });
          if (ok) p.rewrapped++;
          else p.skipped++;
          failed.delete(`${rec.kind} ${rec.digest}`);
        } catch (e) {
          failed.add(`${rec.kind} ${rec.digest}`);
          p.error ??= `${rec.kind} ${rec.digest}: ${e instanceof Error ? e.message : String(e)}`;
        }
        p.failed = failed.size;
      }
      const last = page[page.length - 1];
      if (last === undefined) break;
      after = { kind: last.kind, digest: last.digest };
    }
  }
}
