import type { Command } from 'commander';

/** `bulwark gateway --config gateway.json`: the public-facing reverse proxy; SIGINT/SIGTERM drain in-flight requests, then exit. */
export function registerGateway(program: Command): void {
  program
    .command('gateway')
    .description('run the public-facing gateway in front of a private registry (docs/network.md)')
    .option('--config <file>', 'the gateway configuration, JSON (BULWARK_GATEWAY_CONFIG)')
    .option('--log-level <level>', 'fatal, error, warn, info or debug', 'info')
    .action(async (opts: { config?: string; logLevel: string }) => {
      const file = opts.config ?? process.env.BULWARK_GATEWAY_CONFIG;
      if (file === undefined || file === '') throw new Error('give the configuration file: --config <file> or BULWARK_GATEWAY_CONFIG');
      const { loadGatewayConfig, startGateway } = await import('../gateway/index.js');
      const { pino } = await import('pino');
      const log = pino({ level: opts.logLevel, base: { component: 'gateway' } });
      const config = loadGatewayConfig(file);
      const gateway = await startGateway(config, log);
      log.info({ sites: Object.fromEntries([...gateway.ports].map(([name, port]) => [name, port])) }, 'bulwark gateway is serving');
      let stopping = false;
      const stop = (signal: string): void => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'shutting down: finishing in-flight requests');
        const force = setTimeout(() => process.exit(1), 30_000);
        force.unref();
        gateway.close().then(
          () => process.exit(0),
          (err: unknown) => {
            log.error({ err }, 'failed to shut down cleanly');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}
