/**
 * Throwaway SoftHSM2 tokens for tests.
 *
 * SoftHSM2 reads its configuration (SOFTHSM2_CONF) at C_Initialize, and a process initializes a
 * module once, so one configuration and token folder serve the whole test process (node --test
 * runs each file in its own process); every test makes its own token in it. SoftHSM2 lists only
 * the tokens that existed at its last C_Initialize (C_GetSlotList does not rescan), so a token
 * made here is seen by a vault opened while no other vault holds the module: Pkcs11KeyVault
 * finalizes the module when its last user closes, which makes one token per test just work.
 *
 * Test-only: softhsm2-util takes the PINs as arguments, visible in `ps` while it runs.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const SOFTHSM2_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const run = promisify(execFile);

export interface SoftHsmToken {
  readonly modulePath: string;
  readonly tokenLabel: string;
  /** Name of the environment variable holding the user PIN (set by createSoftHsmToken). */
  readonly pinEnv: string;
  readonly pin: string;
  readonly soPin: string;
  /** Deletes the token and unsets the PIN variable. */
  cleanup(): Promise<void>;
}

/** Why SoftHSM2 tests cannot run here, or undefined when they can. */
export async function softHsmMissing(): Promise<string | undefined> {
  if (!existsSync(SOFTHSM2_MODULE)) return `${SOFTHSM2_MODULE} not found (install the softhsm2 package)`;
  try {
    await run('softhsm2-util', ['--version']);
  } catch {
    return 'softhsm2-util not found on PATH (install the softhsm2 package)';
  }
  return undefined;
}

let confDir: string | undefined;

/** One SoftHSM2 configuration per process, in a temp folder removed at exit. */
function configure(): string {
  if (confDir !== undefined) return confDir;
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-softhsm-'));
  mkdirSync(join(dir, 'tokens'), { mode: 0o700 });
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  // Must be set before the module's C_Initialize: SoftHSM2 reads it there and nowhere else.
  process.env.SOFTHSM2_CONF = conf;
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  confDir = dir;
  return dir;
}

/** A new, initialized token with random PINs; the user PIN is also put in an environment variable. */
export async function createSoftHsmToken(): Promise<SoftHsmToken> {
  configure();
  const suffix = randomBytes(6).toString('hex');
  const tokenLabel = `bulwark-${suffix}`;
  const pin = randomBytes(8).toString('hex');
  const soPin = randomBytes(8).toString('hex');
  const pinEnv = `BULWARK_TEST_HSM_PIN_${suffix}`;
  await run('softhsm2-util', ['--init-token', '--free', '--label', tokenLabel, '--so-pin', soPin, '--pin', pin]);
  process.env[pinEnv] = pin;
  return {
    modulePath: SOFTHSM2_MODULE,
    tokenLabel,
    pinEnv,
    pin,
    soPin,
    cleanup: async () => {
      delete process.env[pinEnv];
      await run('softhsm2-util', ['--delete-token', '--token', tokenLabel]);
    },
  };
}
