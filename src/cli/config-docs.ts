import type { Command } from 'commander';
import { renderConfigDocs } from '../config/index.js';

/** `bulwark config-docs`: print docs/configuration.md from the schema. */
export function registerConfigDocs(program: Command): void {
  program.command('config-docs').description('print the configuration reference (Markdown)').action(() => {
    process.stdout.write(renderConfigDocs());
  });
}
