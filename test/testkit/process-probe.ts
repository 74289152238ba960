/**
 * Probes of a stopped or running server process for robustness tests: `bulwark fsck --json`
 * on a data folder, and resident memory sampled from /proc/<pid>/status (Linux).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { cliPath } from './server.js';

export interface FsckResult {
  readonly exitCode: number;
  readonly report: {
    blobsChecked: number;
    referencesChecked: number;
    manifestsChecked: number;
    problems: Array<{ kind: string; digest: string; repository?: string; message: string }>;
  };
  readonly stderr: string;
}

/** `bulwark fsck --json --data-dir <dir>`; the server must be stopped (fsck opens the stores). */
export function runFsck(dataDir: string, timeoutMs = 60_000): Promise<FsckResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [cliPath, 'fsck', '--json', '--data-dir', dataDir],
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, BULWARK_LOG_LEVEL: 'warn' } },
      (err, stdout, stderr) => {
        const exitCode = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        try {
          resolve({ exitCode, report: JSON.parse(stdout) as FsckResult['report'], stderr });
        } catch {
          reject(new Error(`fsck exited ${exitCode} without a JSON report:\n${stdout}\n${stderr}`));
        }
      },
    );
  });
}

/** A field of /proc/<pid>/status in KiB (VmRSS, VmHWM), or undefined once the process is gone. */
export function procStatusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

export interface RssSampler {
  /** stop sampling; peak VmRSS seen, the kernel's high-water mark VmHWM, and the sample count */
  stop(): { peakKiB: number; hwmKiB: number; samples: number };
}

export function sampleRss(pid: number, intervalMs = 100): RssSampler {
  let peakKiB = 0;
  let samples = 0;
  const tick = (): void => {
    const v = procStatusKiB(pid, 'VmRSS');
    if (v === undefined) return;
    samples++;
    peakKiB = Math.max(peakKiB, v);
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  return {
    stop: () => {
      tick();
      clearInterval(timer);
      return { peakKiB, hwmKiB: procStatusKiB(pid, 'VmHWM') ?? peakKiB, samples };
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * `size` deterministic pseudo-random bytes in `chunkSize` pieces, generated on the fly
 * (a SHA-256 counter stream keyed by `seed`): the same seed always yields the same bytes.
 */
export async function* generatedBytes(seed: string, size: number, chunkSize: number): AsyncGenerator<Buffer> {
  const block = 1 << 16;
  const pool: Buffer[] = [];
  for (let i = 0; i < 16; i++) pool.push(createHash('sha512').update(`${seed}/${i}`).digest());
  // 64 KiB of keyed bytes, varied per chunk by its index so no two chunks are equal.
  const base = Buffer.alloc(block);
  for (let off = 0; off < block; off += 64) pool[(off / 64) % 16]?.copy(base, off, 0, 64);
  for (let off = 0, n = 0; off < size; off += chunkSize, n++) {
    const len = Math.min(chunkSize, size - off);
    const chunk = Buffer.allocUnsafe(len);
    for (let p = 0; p < len; p += block) base.copy(chunk, p, 0, Math.min(block, len - p));
    for (let p = 0; p + 8 <= len; p += 4096) chunk.writeUInt32LE((n * 7919 + p) >>> 0, p);
    yield chunk;
  }
}
