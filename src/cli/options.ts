import type { Command } from 'commander';
import { loadConfig, type Config } from '../config/index.js';

/** The flags shared by verbs that open the data folder. */
export function addConfigFlags(cmd: Command): Command {
  return cmd
    .option('--listen <host:port>', 'address to serve on (BULWARK_LISTEN)')
    .option('--data-dir <dir>', 'data folder (BULWARK_DATA_DIR)')
    .option('--config <file>', 'JSON configuration file');
}

export function configFromFlags(opts: { listen?: string; dataDir?: string; config?: string }): Config {
  return loadConfig({ env: process.env, file: opts.config, flags: { listen: opts.listen, dataDir: opts.dataDir } });
}
