/**
 * Two ceilings of this machine, measured in the same run before any server starts:
 * - single-thread SHA-256 (node:crypto, i.e. OpenSSL, in 8 MiB updates): a registry must hash
 *   every byte it accepts, so no single push can beat it on one core;
 * - sequential write + fsync of a file in the temporary directory (where both servers keep their
 *   data): an acknowledged push is on disk, so no push can beat this either.
 */
import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOCK, baseBlock } from './content.js';
import { MiB } from './load.js';

export interface Throughput {
  bytes: number;
  seconds: number;
  MiBps: number;
}

function throughput(bytes: number, seconds: number): Throughput {
  return { bytes, seconds, MiBps: bytes / MiB / seconds };
}

export function measureSha256(totalBytes: number): Throughput {
  const block = baseBlock();
  // One untimed block first, so that lazy initialisation is not counted.
  createHash('sha256').update(block).digest();
  const blocks = Math.max(1, Math.round(totalBytes / BLOCK));
  const t0 = performance.now();
  const h = createHash('sha256');
  for (let i = 0; i < blocks; i++) h.update(block);
  h.digest();
  return throughput(blocks * BLOCK, (performance.now() - t0) / 1000);
}

export async function measureDiskWrite(totalBytes: number, dir = tmpdir()): Promise<Throughput> {
  const block = baseBlock();
  const blocks = Math.max(1, Math.round(totalBytes / BLOCK));
  const path = join(dir, `bulwark-bench-disk-${process.pid}.tmp`);
  const fh = await open(path, 'w');
  try {
    const t0 = performance.now();
    for (let i = 0; i < blocks; i++) await fh.write(block);
    await fh.sync();
    return throughput(blocks * BLOCK, (performance.now() - t0) / 1000);
  } finally {
    await fh.close();
    await rm(path, { force: true });
  }
}
