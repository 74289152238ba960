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
      const { AuditLog, EventBus } = await import('../audit/index.js');
      const { createEncryption, keyVaultAudit } = await import('../encryption/index.js');
      // Key operations of this process are audited like the server's, in the same log.
      const bus = new EventBus();
      const audit = config.audit.file === '' ? undefined : new AuditLog(config.audit.file, bus);
      const plain = await createBlobStore(config.storage.blobDriver, config.dataDir, { directMinBytes: config.storage.directIoMinBytes });
      if (!config.encryption.enabled) (await import('../encryption/index.js')).assertNotEncrypted(config);
      const encryption = config.encryption.enabled ? await createEncryption(config, { audit: keyVaultAudit(bus), persistent: true }) : undefined;
      // A vault that refuses now would make every blob look corrupt: stop before checking any.
      await encryption?.ring.probe().catch(async (e: unknown) => {
        await encryption.close();
        throw new Error(`the key-encryption key is not usable, so nothing can be checked: ${encryption.ring.health().error ?? (e as Error).message}`);
      });
      const blobs = encryption?.wrap(plain) ?? plain;
      const plainMeta = await createMetadataStore(config.storage.metadataDriver, config.dataDir);
      const meta = encryption?.wrapMeta(plainMeta) ?? plainMeta;
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
        await encryption?.close();
        await meta.close();
        await audit?.close();
      }
    });
}
