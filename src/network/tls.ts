/**
 * HTTPS for every listener (issue 5, item 1): the certificate chain and key from files, TLS 1.2
 * or newer, and the pair re-read when it changes (a renewed certificate, a cert-manager secret
 * swap) without a restart. A changed pair is used only when it loads as a matching pair;
 * otherwise the error is logged and the servers keep the pair they have.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';

export const MIN_TLS_VERSION = 'TLSv1.2';

export interface TlsFiles {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** Where a certificate and its key live, and how often to look for a change (the registry's `tls.*`, a gateway listener's). */
export interface TlsSource {
  readonly certFile: string;
  readonly keyFile: string;
  readonly reloadCheckSeconds: number;
}

/** A server whose certificate can be replaced for new connections (https.Server). */
export interface SecureServer {
  setSecureContext(options: SecureContextOptions): void;
}

/** Reads the pair at start, and checks it loads: a bad pair stops the start with its reason. */
export function readTlsFiles(source: TlsSource, what = 'tls'): TlsFiles | undefined {
  if (source.certFile === '') return undefined;
  const files = { cert: readFileSync(source.certFile), key: readFileSync(source.keyFile) };
  try {
    createSecureContext({ ...files, minVersion: MIN_TLS_VERSION });
  } catch (e) {
    throw new Error(`${what}.certFile ${source.certFile} and ${what}.keyFile ${source.keyFile} do not load as a certificate and its key: ${(e as Error).message}`, { cause: e });
  }
  return files;
}

export function serverTlsOptions(files: TlsFiles): SecureContextOptions & { minVersion: 'TLSv1.2' } {
  return { cert: files.cert, key: files.key, minVersion: MIN_TLS_VERSION };
}

const fingerprint = (f: TlsFiles): string => createHash('sha256').update(f.cert).update('\0').update(f.key).digest('hex');

/** Polls the two files; on a change that loads, gives every registered server the new pair. */
export class TlsReloader {
  private readonly servers: SecureServer[] = [];
  private current: string;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly source: TlsSource,
    initial: TlsFiles,
    private readonly log: { info(o: object, m: string): void; error(o: object, m: string): void },
  ) {
    this.current = fingerprint(initial);
    this.timer = setInterval(() => void this.check(), source.reloadCheckSeconds * 1000);
    this.timer.unref();
  }

  add(server: SecureServer): void {
    this.servers.push(server);
  }

  private checking = false;

  /** One look at the files (also what the timer does); a look still running is not overtaken. */
  async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      await this.look();
    } finally {
      this.checking = false;
    }
  }

  private async look(): Promise<void> {
    let files: TlsFiles;
    try {
      files = { cert: await readFile(this.source.certFile), key: await readFile(this.source.keyFile) };
    } catch (err) {
      this.log.error({ err }, 'cannot read the TLS certificate or key; keeping the one in use');
      return;
    }
    const f = fingerprint(files);
    if (f === this.current) return;
    try {
      createSecureContext(serverTlsOptions(files));
    } catch (err) {
      // A half-written renewal (the certificate replaced, the key not yet) is not an outage.
      this.log.error({ err }, 'the changed TLS certificate and key do not load as a pair; keeping the ones in use');
      return;
    }
    for (const s of this.servers) s.setSecureContext(serverTlsOptions(files));
    this.current = f;
    this.log.info({ certFile: this.source.certFile }, 'reloaded the TLS certificate');
  }

  close(): void {
    clearInterval(this.timer);
  }
}
