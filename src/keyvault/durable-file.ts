/** Durable small-file writes for the vaults that keep their state in a file (local, PKCS#11). */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { KeyVaultError } from './key-vault.js';

export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Replaces `file` with `text` (mode 0600): rename(2) is atomic; the fsyncs make the new content
 * and the new name survive a crash. A failure leaves the old file and is UNAVAILABLE.
 */
export async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    await fsyncPath(dirname(file));
  } catch (e) {
    await rm(tmp, { force: true });
    throw new KeyVaultError('UNAVAILABLE', `failed to write ${file}`, { cause: e });
  }
}
