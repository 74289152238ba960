/**
 * Bulwark's native file steps (native/fs.c, built by `npm ci` with node-gyp; ADR 0020, 0023, 0024):
 * the start of an upload session (its folder and files), its durable end (append the last bytes,
 * fsync, rename into the store, fsync the folder) and the read of a small range (open, read,
 * close), each as one thread-pool job instead of up to a dozen node:fs round trips on every push's
 * or pull's path; and the writes and reads of large blobs with direct I/O (O_DIRECT), which need
 * aligned memory that JavaScript's buffers do not have.
 */
import { createRequire } from 'node:module';

interface Binding {
  commitFile(
    this: void,
    path: string,
    append: Uint8Array | null,
    synced: boolean,
    dest: string,
    destDir: string,
    done: (err: NodeJS.ErrnoException | null, moved: boolean) => void,
  ): void;
  makeFolder(this: void, dir: string, files: (string | Uint8Array)[], done: (err: NodeJS.ErrnoException | null) => void): void;
  readRange(this: void, path: string, position: number, buffer: Uint8Array, done: (err: NodeJS.ErrnoException | null, bytesRead: number) => void): void;
  appendDirect(this: void, fd: number, position: number, chunks: Uint8Array[], final: boolean, done: (err: NodeJS.ErrnoException | null, written: number) => void): void;
  readDirect(this: void, fd: number, position: number, buffer: Uint8Array, done: (err: NodeJS.ErrnoException | null, bytesRead: number) => void): void;
}

const MODULE = '../../build/Release/bulwark_fs.node';

function load(): Binding {
  try {
    const binding = createRequire(import.meta.url)(MODULE) as Partial<Binding>;
    // A module built before a job was added would load, then fail every call of that job.
    for (const name of ['commitFile', 'makeFolder', 'readRange', 'appendDirect', 'readDirect'] as const) {
      if (typeof binding[name] !== 'function') throw new Error(`it has no ${name}: it was built from older sources`);
    }
    return binding as Binding;
  } catch (e) {
    throw new Error('the native file module (build/Release/bulwark_fs.node) is missing or broken: run `npm ci`, which builds it (it needs python3, make and a C compiler)', {
      cause: e,
    });
  }
}

const native = load();

export interface CommitFileOptions {
  /** bytes to append to `path` (and sync) first; they must not change until the promise settles */
  readonly append?: Uint8Array | undefined;
  /** `path` is already synced (no fsync of it is needed before the rename) */
  readonly synced?: boolean;
}

/**
 * Makes `path` durable under the name `dest` (in the folder `destDir`): appends and syncs,
 * then, unless `dest` already exists, syncs `path` (when not done yet), renames it to `dest` and
 * syncs `destDir`. Resolves true when it renamed, false when `dest` was already there (`path`
 * is left as it is); rejects with node:fs's kind of error (code, syscall, path) at the first
 * failed step, after which none runs.
 */
export function commitFile(path: string, dest: string, destDir: string, opts: CommitFileOptions = {}): Promise<boolean> {
  return new Promise((resolve, reject) => {
    native.commitFile(path, opts.append ?? null, opts.synced === true, dest, destDir, (err, moved) => {
      if (err !== null) reject(err);
      else resolve(moved);
    });
  });
}

/**
 * Creates the folder `dir` and in it each file of `files` (full paths inside `dir`, at most 4,
 * none existing yet) with its bytes, in one job; nothing is synced. Rejects like node:fs at the
 * first failed step (what was made before it stays).
 */
export function makeFolder(dir: string, files: readonly (readonly [path: string, bytes: Uint8Array])[]): Promise<void> {
  return new Promise((resolve, reject) => {
    native.makeFolder(
      dir,
      files.flatMap(([path, bytes]) => [path, bytes]),
      (err) => {
        if (err !== null) reject(err);
        else resolve();
      },
    );
  });
}

/**
 * Reads `path` from byte `position` into all of `buffer` (open, read, close in one job). Resolves
 * the bytes read: fewer than the buffer holds only when the file ends first. Rejects like node:fs
 * (ENOENT for a missing file). `buffer` must not be used until the promise settles.
 */
export function readRange(path: string, position: number, buffer: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    native.readRange(path, position, buffer, (err, bytesRead) => {
      if (err !== null) reject(err);
      else resolve(bytesRead);
    });
  });
}

/** Direct I/O moves whole blocks of this many bytes, at offsets that are multiples of it. */
export const DIRECT_ALIGN = 4096;

/**
 * Writes `chunks` to the file open as `fd` (with O_DIRECT) from byte `position` on: the block
 * `position` falls in is completed with the file's own bytes before it, whole blocks go to the
 * device directly, and a last, partial block is written through the page cache when `final`,
 * otherwise left out. Resolves how many of the chunks' bytes were written: all of them when
 * `final`, else all but fewer than DIRECT_ALIGN, which the caller sends again, first, next time.
 * The chunks are copied by the job and may be reused once the promise settles, not before.
 */
export function appendDirect(fd: number, position: number, chunks: readonly Uint8Array[], final: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    native.appendDirect(fd, position, [...chunks], final, (err, written) => {
      if (err !== null) reject(err);
      else resolve(written);
    });
  });
}

/**
 * Reads bytes of the file open as `fd` (with O_DIRECT) from `position` into all of `buffer`;
 * resolves the bytes read, fewer only when the file ends first. `buffer` must not be used until
 * the promise settles.
 */
export function readDirect(fd: number, position: number, buffer: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    native.readDirect(fd, position, buffer, (err, bytesRead) => {
      if (err !== null) reject(err);
      else resolve(bytesRead);
    });
  });
}
