import type { Command } from 'commander';
import { addConfigFlags, configFromFlags } from './options.js';

/** `bulwark fsck [--repair] [--json]`: verify every stored object; exit 1 when problems are found. */
export function registerFsck(program: Command): void {
  addConfigFlags(program.command('fsck').description('verify every stored object against its digest'))
    .option('--repair', 'quarantine corrupt blobs and remove references to content that is gone')
    .option('--json', 'print the report as JSON')
    .action(async (opts: { listen?: string; dataDir?: string; config?: string; repair?: boolean; json?: boolean }) => {
      const config = configFromFlags(opts);
      const { createBlobStore, createMetadataStore, fsck } = await import('../storage/index.js');
      const blobs = await createBlobStore(config.storage.blobDriver, config.dataDir);
      const meta = await createMetadataStore(config.storage.metadataDriver, config.dataDir);
      try {
        const report = await fsck(blobs, meta, { repair: opts.repair === true });
        if (opts.json === true) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else {
          for (const p of report.problems) {
            process.stdout.write(`${p.repaired ? 'REPAIRED' : 'PROBLEM'} ${p.kind} ${p.repository ?? '-'} ${p.digest}: ${p.message}\n`);
          }
          process.stdout.write(
            `checked ${report.blobsChecked} blobs, ${report.referencesChecked} references, ${report.manifestsChecked} manifests: ${report.problems.length} problem(s)\n`,
          );
        }
        process.exitCode = report.problems.length === 0 ? 0 : 1;
      } finally {
        await blobs.close();
        await meta.close();
      }
    });
}
