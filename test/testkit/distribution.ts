/**
 * Start the CNCF Distribution registry (Debian package `docker-registry`) on a loopback port
 * with filesystem storage and deletes enabled: the reference registry for benchmarks and for
 * checking that our e2e tests test the protocol rather than our own quirks.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, supervise, type RunningServer } from './server.js';

export function distributionAvailable(): boolean {
  try {
    execFileSync('docker-registry', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function startDistribution(opts: { verbose?: boolean; port?: number } = {}): Promise<RunningServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'distribution-'));
  const port = opts.port ?? (await freePort());
  const host = `127.0.0.1:${port}`;
  const config = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  cache:',
    '    blobdescriptor: inmemory',
    '  filesystem:',
    `    rootdirectory: ${join(dataDir, 'root')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${host}`,
    '',
  ].join('\n');
  const configPath = join(dataDir, 'config.yml');
  await writeFile(configPath, config);
  const child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  return supervise(child, { name: 'docker-registry', host, port, dataDir, verbose: opts.verbose === true, removeDataDir: true });
}
