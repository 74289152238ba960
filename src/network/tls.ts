/**
 * HTTPS for every listener (issue 5, item 1): the certificate chain and key from files, TLS 1.2
 * or newer, and the pair re-read when it changes (a renewed certificate, a cert-manager secret
 * swap) without a restart. A changed pair is used only when it loads as a matching pair;
 * otherwise the error is logged and the servers keep the pair they have.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { X509Certificate, constants } from 'node:crypto';
import { createSecureContext, type SecureContextOptions } from 'node:tls';

export const MIN_TLS_VERSION = 'TLSv1.2';

export interface TlsFiles {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** mutual TLS: the CAs client certificates are verified against, and whether one is required */
  readonly client?: { readonly ca: Buffer; readonly required: boolean };
}

/** Where a certificate and its key live, and how often to look for a change (the registry's `tls.*`, a gateway listener's). */
export interface TlsSource {
  readonly certFile: string;
  readonly keyFile: string;
  readonly reloadCheckSeconds: number;
  /** mutual TLS (the registry's listeners; ADR 0013): '' or absent for none */
  readonly clientCaFile?: string;
  readonly clientAuth?: 'optional' | 'required';
}

/**
 * What is wrong with a client CA bundle, or undefined: every PEM block must be a CA certificate,
 * and there must be one. (createSecureContext does not say: it stops quietly at the first block
 * it cannot parse, which would leave an empty trust store: nobody verified, or with `required`,
 * nobody served.)
 */
export function clientCaProblem(pem: Buffer): string | undefined {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return 'holds no PEM certificate';
  for (const b of blocks) {
    try {
      if (!new X509Certificate(b).ca) return 'holds a certificate that is not a CA';
    } catch (e) {
      return `holds a certificate that does not parse: ${(e as Error).message}`;
    }
  }
  return undefined;
}

/** The files of a source, as they are now. */
function readAll(source: TlsSource, read: (f: string) => Buffer): TlsFiles {
  const client = source.clientCaFile === undefined || source.clientCaFile === '' ? undefined : { ca: read(source.clientCaFile), required: source.clientAuth === 'required' };
  return { cert: read(source.certFile), key: read(source.keyFile), ...(client !== undefined ? { client } : {}) };
}

/** A server whose certificate can be replaced for new connections (https.Server). */
export interface SecureServer {
  setSecureContext(options: SecureContextOptions): void;
}

/** Reads the pair at start, and checks it loads: a bad pair stops the start with its reason. */
export function readTlsFiles(source: TlsSource, what = 'tls'): TlsFiles | undefined {
  if (source.certFile === '') return undefined;
  const files = readAll(source, (f) => readFileSync(f));
  try {
    createSecureContext({ cert: files.cert, key: files.key, minVersion: MIN_TLS_VERSION });
  } catch (e) {
    throw new Error(`${what}.certFile ${source.certFile} and ${what}.keyFile ${source.keyFile} do not load as a certificate and its key: ${(e as Error).message}`, { cause: e });
  }
  const caProblem = files.client === undefined ? undefined : clientCaProblem(files.client.ca);
  if (caProblem !== undefined) throw new Error(`${what}.clientCaFile ${source.clientCaFile ?? ''} ${caProblem}`);
  return files;
}

/** Server options: the pair, TLS 1.2+, and with mutual TLS a request for a client certificate verified against the client CAs. */
export function serverTlsOptions(files: TlsFiles): SecureContextOptions & { minVersion: 'TLSv1.2'; requestCert?: boolean; rejectUnauthorized?: boolean } {
  const base = { cert: files.cert, key: files.key, minVersion: MIN_TLS_VERSION } as const;
  if (files.client === undefined) return base;
  // No renegotiation: after a failed re-handshake node keeps `authorized` true, and the peer
  // certificate would be the new, unverified one (TLS 1.2; TLS 1.3 has no renegotiation).
  return { ...base, ca: files.client.ca, requestCert: true, rejectUnauthorized: files.client.required, secureOptions: constants.SSL_OP_NO_RENEGOTIATION };
}

const fingerprint = (f: TlsFiles): string =>
  createHash('sha256')
    .update(f.cert)
    .update('\0')
    .update(f.key)
    .update('\0')
    .update(f.client?.ca ?? '')
    .digest('hex');

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
      const read = async (f: string): Promise<[string, Buffer]> => [f, await readFile(f)];
      const all = new Map(await Promise.all([this.source.certFile, this.source.keyFile, ...(this.source.clientCaFile ? [this.source.clientCaFile] : [])].map(read)));
      files = readAll(this.source, (f) => all.get(f) ?? Buffer.alloc(0));
    } catch (err) {
      this.log.error({ err }, 'cannot read the TLS certificate or key; keeping the one in use');
      return;
    }
    const f = fingerprint(files);
    if (f === this.current) return;
    try {
      createSecureContext(serverTlsOptions(files));
      const caProblem = files.client === undefined ? undefined : clientCaProblem(files.client.ca);
      if (caProblem !== undefined) throw new Error(`the client CA file ${caProblem}`);
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
