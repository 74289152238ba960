/**
 * Start the CNCF Distribution registry (Debian package `docker-registry`) on a loopback port
 * with filesystem storage and deletes enabled: the reference registry for benchmarks and for
 * checking that our e2e tests test the protocol rather than our own quirks.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, type RunningServer } from './server.js';

export function distributionAvailable(): boolean {
  try {
    execFileSync('docker-registry', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function startDistribution(opts: { verbose?: boolean } = {}): Promise<RunningServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'distribution-'));
  const port = await freePort();
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
  let output = '';
  const collect = (b: Buffer): void => {
    if (output.length < 64 * 1024) output += b.toString();
    if (opts.verbose === true) process.stderr.write(b);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited during start:\n${output}`);
    try {
      const r = await fetch(`http://${host}/v2/`);
      await r.arrayBuffer();
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`docker-registry did not start within 20s:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const waitExit = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  return {
    url: `http://${host}`,
    host,
    port,
    dataDir,
    child,
    stop: () => waitExit('SIGTERM'),
    kill: () => waitExit('SIGKILL'),
    dispose: async () => {
      await waitExit('SIGTERM');
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
