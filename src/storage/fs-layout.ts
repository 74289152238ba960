/**
 * On-disk layout of the embedded storage (the one place it is drawn):
 *
 *   <data-dir>/
 *   ├── blobs/                      content-addressed, immutable once renamed in; every <hex[0:2]>
 *   │   │                           folder is made when the store opens
 *   │   ├── sha256/<hex[0:2]>/<hex>
 *   │   └── sha512/<hex[0:2]>/<hex>
 *   ├── uploads/<id>/               one folder per upload session
 *   │   ├── data                    bytes received so far
 *   │   └── info.json               {repository, startedAt}
 *   ├── tmp/                        small puts being written; emptied at start
 *   ├── quarantine/<alg>-<hex>      blobs fsck --repair moved aside
 *   ├── metadata.db (+ -wal, -shm)  SQLite metadata and manifest bytes
 *   ├── auth.db (+ -wal, -shm)      SQLite identities and policy (auth/sqlite-auth-store.ts)
 *   ├── bootstrap-credentials.json  bootstrap admin credential, written once, mode 0600
 *   └── audit.log                   JSON lines, one event per operation
 *
 * Every path is derived from a validated digest or a server-generated upload id; nothing a client
 * sends is ever joined into a path unvalidated.
 */
import { join } from 'node:path';
import { digestAlgorithm, digestHex, type Digest } from '../oci/index.js';

const UPLOAD_ID_RE = /^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$/;

export function isUploadId(id: string): boolean {
  return UPLOAD_ID_RE.test(id);
}

export class FsLayout {
  constructor(readonly root: string) {}

  get blobsDir(): string {
    return join(this.root, 'blobs');
  }
  blobPath(d: Digest): string {
    const hex = digestHex(d);
    return join(this.root, 'blobs', digestAlgorithm(d), hex.slice(0, 2), hex);
  }
  get uploadsDir(): string {
    return join(this.root, 'uploads');
  }
  uploadDir(id: string): string {
    if (!isUploadId(id)) throw new Error('invalid upload id');
    return join(this.root, 'uploads', id);
  }
  get tmpDir(): string {
    return join(this.root, 'tmp');
  }
  get quarantineDir(): string {
    return join(this.root, 'quarantine');
  }
  quarantinePath(d: Digest): string {
    return join(this.root, 'quarantine', `${digestAlgorithm(d)}-${digestHex(d)}`);
  }
}
