/**
 * A throwaway certificate authority made with openssl (Debian's, installed by .ci/run), and leaf
 * server certificates it signs: for tests of HTTPS listeners and of the gateway's sites.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findTool } from '../e2e/tools.js';

const exec = promisify(execFile);

export interface TestCa {
  /** the CA certificate file (PEM) */
  readonly ca: string;
  /** a leaf for `subjectAltName` (default: the CA's default names), a server's or a client's; files `<name>.crt` and `<name>.key` */
  leaf(name: string, subjectAltName?: string, usage?: 'serverAuth' | 'clientAuth'): Promise<{ cert: string; key: string }>;
}

/** A CA in `dir`; leaves default to 127.0.0.1, 127.0.0.2 and localhost. */
export async function makeCa(dir: string, defaultSan = 'IP:127.0.0.1,IP:127.0.0.2,DNS:localhost', subject = '/CN=bulwark test CA'): Promise<TestCa> {
  const openssl = findTool('openssl');
  if (openssl === undefined) throw new Error('openssl is not installed');
  const o = (args: string[]): Promise<unknown> => exec(openssl, args, { cwd: dir, timeout: 30_000 });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await o(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', subject, '-days', '2']);
  return {
    ca: join(dir, 'ca.crt'),
    leaf: async (name, san = defaultSan, usage = 'serverAuth') => {
      await writeFile(join(dir, `${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usage}\n`);
      await o(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
      await o(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`]);
      return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
    },
  };
}
