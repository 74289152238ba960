import type { Command } from 'commander';
import { addConfigFlags, configFromFlags } from './options.js';

/** `bulwark serve`: start the registry; SIGINT/SIGTERM drain in-flight requests, then exit. */
export function registerServe(program: Command): void {
  addConfigFlags(program.command('serve').description('start the registry')).action(async (opts: { listen?: string; dataDir?: string; config?: string }) => {
    const config = configFromFlags(opts);
    // loaded on use: the client commands (token, role, ...) should not pay for the server's modules
    const { buildApp } = await import('../app.js');
    const app = await buildApp(config);
    await app.listen();
    app.http.log.info({ listen: `${config.listen.host}:${config.listen.port}`, dataDir: config.dataDir }, 'bulwark is serving');
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      app.http.log.info({ signal }, 'shutting down: finishing in-flight requests');
      const force = setTimeout(() => {
        app.http.log.error('failed to finish in-flight requests in time; exiting');
        process.exit(1);
      }, config.http.shutdownTimeoutMs);
      force.unref();
      app.close().then(
        () => process.exit(0),
        (err: unknown) => {
          app.http.log.error({ err }, 'failed to shut down cleanly');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
