/*
 * Bulwark's native file steps (ADR 0020, 0023): the start and the durable end of an upload
 * session, and the read of a small range, each as one thread-pool job.
 *
 * Committing a blob is a chain of small system calls: append the last bytes, fsync, close, look
 * for the destination, rename, open the folder, fsync it, close it. Through node:fs each is a
 * thread-pool round trip (a pool thread woken, the event loop woken), about a dozen in a row on
 * the path of every push's answer; on a 2-core VM a round trip cost 35 us of CPU and 0.1 ms of
 * latency. This job makes the same calls in the same order on one pool thread.
 *
 *   commitFile(path, append|null, synced, dest, destDir, done) -> undefined
 *
 * 1. With `append` (bytes), opens `path` for appending, writes all of them (short writes and
 *    EINTR retried) and fsyncs; the file is then synced.
 * 2. When `dest` exists, fsyncs `destDir` (the commit that stored it may not have yet) and stops:
 *    done(null, false). The caller's content is already stored.
 * 3. Unless synced (by step 1, or by the caller: `synced`), opens `path` and fsyncs it.
 * 4. Renames `path` to `dest` (atomic), then opens `destDir` (the folder holding `dest`) and
 *    fsyncs it, so that the new name survives a crash: done(null, true). When that folder sync
 *    fails, the file is at `dest` already, and the error says so much as any other: the caller
 *    must not acknowledge the blob.
 *
 *   makeFolder(dir, [path, bytes, ...], done) -> undefined
 *
 * Creates the folder `dir`, then each file (at most 4; each must not exist yet) with its bytes,
 * in order, without syncing anything: an upload session's folder (uploads/<id>/data and
 * info.json), one job where node:fs took a mkdir and three steps per file. done(error?).
 *
 *   readRange(path, position, buffer, done) -> undefined
 *
 * Opens `path` read-only, reads into all of `buffer` from byte `position` (short reads continued,
 * EINTR retried) and closes it: a small blob's pull in one job where node:fs took three (open,
 * read, close). done(error?, bytesRead); bytesRead is less than the buffer's length only when
 * the file ends first. `buffer` is written by the job and must not be used until `done`; the job
 * holds a reference to the view, not to its memory, so the buffer must not be transferred or
 * resized meanwhile either (no caller does; the same holds for `append` and the files' bytes).
 *
 * In all three, a failed step ends the job: done(error) with node's fields (code such as "ENOENT",
 * errno, syscall, path), and no later step runs (but for readRange's close of the file it opened).
 * A failed fsync is never retried: after one, Linux may have dropped the dirty pages and a second
 * fsync would report success over lost bytes. `append`
 * and the files' bytes are held by reference until `done` and must not change meanwhile. Paths are the caller's (built
 * from validated digests and server-made upload ids), at most PATH_MAX bytes each.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <node_api.h>
#include <uv.h>

typedef struct {
  napi_async_work work;
  napi_ref done_ref;
  napi_ref append_ref; /* keeps `append` alive until done */
  const unsigned char *append;
  size_t append_length;
  bool has_append;
  bool synced;
  char path[PATH_MAX];
  char dest[PATH_MAX];
  char dest_dir[PATH_MAX];
  /* outcome */
  bool moved;
  int err; /* errno of the failed step, 0 when none failed */
  const char *syscall;
  const char *err_path;
} commit_job_t;

static int fail(commit_job_t *job, int err, const char *syscall, const char *path) {
  job->err = err;
  job->syscall = syscall;
  job->err_path = path;
  return 0;
}

/* Writes all of `bytes` to `fd` (short writes continued, EINTR retried): 0, or the errno. */
static int write_all(int fd, const unsigned char *bytes, size_t length) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = write(fd, bytes + done, length - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    done += (size_t)n;
  }
  return 0;
}

/*
 * Reads up to `length` bytes at `offset` (EINTR retried) into *got: 0, or the errno. A short read
 * is continued, except with `direct`: there it means the end of the file, and a second read would
 * start at an offset direct I/O need not accept.
 */
static int pread_full(int fd, unsigned char *bytes, size_t length, int64_t offset, size_t *got, bool direct) {
  *got = 0;
  while (*got < length) {
    ssize_t n = pread(fd, bytes + *got, length - *got, (off_t)(offset + (int64_t)*got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    *got += (size_t)n;
    if (direct) break;
  }
  return 0;
}

/* Opens `path` with `flags`, fsyncs and closes it; with `bytes`, writes them all first. */
static int write_sync_close(commit_job_t *job, const char *path, int flags, const unsigned char *bytes, size_t length) {
  int fd;
  do fd = open(path, flags | O_CLOEXEC, 0666);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return fail(job, errno, "open", path);
  int e = write_all(fd, bytes, length);
  if (e != 0) {
    close(fd);
    return fail(job, e, "write", path);
  }
  if (fsync(fd) != 0) {
    e = errno;
    close(fd);
    return fail(job, e, "fsync", path);
  }
  /* After a successful fsync a close error (EINTR included) says nothing about the bytes. */
  close(fd);
  return 1;
}

static void commit_execute(napi_env env, void *data) {
  (void)env;
  commit_job_t *job = (commit_job_t *)data;
  if (job->has_append) {
    if (!write_sync_close(job, job->path, O_WRONLY | O_APPEND, job->append, job->append_length)) return;
    job->synced = true;
  }
  struct stat st;
  if (stat(job->dest, &st) == 0) {
    /* Already stored: moved stays false. Its folder is synced all the same: the commit that put it
     * there may still be between its rename and its own folder sync (or have failed that sync). */
    write_sync_close(job, job->dest_dir, O_RDONLY | O_DIRECTORY, NULL, 0);
    return;
  }
  if (errno != ENOENT) {
    fail(job, errno, "stat", job->dest);
    return;
  }
  if (!job->synced && !write_sync_close(job, job->path, O_RDONLY, NULL, 0)) return;
  if (rename(job->path, job->dest) != 0) {
    fail(job, errno, "rename", job->path);
    return;
  }
  job->moved = true;
  if (!write_sync_close(job, job->dest_dir, O_RDONLY | O_DIRECTORY, NULL, 0)) job->moved = false;
}

static void commit_free(napi_env env, commit_job_t *job) {
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  if (job->done_ref != NULL) napi_delete_reference(env, job->done_ref);
  if (job->append_ref != NULL) napi_delete_reference(env, job->append_ref);
  free(job);
}

/* An Error as node:fs makes them: "<CODE>: <message>, <syscall> '<path>'", with code, errno, syscall and path. */
static napi_value fs_error(napi_env env, int err, const char *syscall, const char *path) {
  char code[64];
  uv_err_name_r(-err, code, sizeof code);
  char message[PATH_MAX + 160];
  snprintf(message, sizeof message, "%s: %s, %s '%s'", code, uv_strerror(-err), syscall, path);
  napi_value msg, code_value, error, value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value);
  napi_create_error(env, code_value, msg, &error);
  napi_create_int32(env, -err, &value);
  napi_set_named_property(env, error, "errno", value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "syscall", value);
  napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "path", value);
  return error;
}

/* The first argument of a job's `done`: null, the failed step as node:fs's error, or an error when the job did not run. */
static napi_value outcome(napi_env env, napi_status status, const char *fn, int err, const char *syscall, const char *path) {
  napi_value result;
  if (status != napi_ok) {
    char message[96];
    snprintf(message, sizeof message, "%s: the job did not run", fn);
    napi_value msg;
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &result);
  } else if (err != 0) {
    result = fs_error(env, err, syscall, path);
  } else {
    napi_get_null(env, &result);
  }
  return result;
}

static void commit_complete(napi_env env, napi_status status, void *data) {
  commit_job_t *job = (commit_job_t *)data;
  napi_value done, undefined, argv[2];
  napi_get_reference_value(env, job->done_ref, &done);
  napi_get_undefined(env, &undefined);
  argv[0] = outcome(env, status, "commitFile", job->err, job->syscall, job->err_path);
  napi_get_boolean(env, status == napi_ok && job->err == 0 && job->moved, &argv[1]);
  commit_free(env, job);
  napi_call_function(env, undefined, done, 2, argv, NULL);
}

/* Throws `message` unless an exception is already pending (a napi call that failed may have set one). */
static void throw_unless_pending(napi_env env, const char *message) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) napi_throw_error(env, NULL, message);
}

/* A string argument copied into `out` (PATH_MAX bytes); throws a TypeError or RangeError. */
static int path_arg(napi_env env, napi_value value, const char *name, char *out) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, name);
    return 0;
  }
  if (length == 0 || length >= PATH_MAX) {
    napi_throw_range_error(env, NULL, name);
    return 0;
  }
  napi_get_value_string_utf8(env, value, out, PATH_MAX, &length);
  if (strlen(out) != length) { /* an embedded NUL would name another file */
    napi_throw_range_error(env, NULL, name);
    return 0;
  }
  return 1;
}

/*
 * A Uint8Array argument: its bytes and length in `data` and `length`, held by a reference in `ref`
 * until the job is freed. Throws a TypeError `what` (or the pending error) and returns 0 otherwise.
 */
static int bytes_arg(napi_env env, napi_value value, const char *what, const char *hold_failed, void **data, size_t *length, napi_ref *ref) {
  bool is_typed = false;
  napi_typedarray_type array_type;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed || napi_get_typedarray_info(env, value, &array_type, length, data, NULL, NULL) != napi_ok ||
      array_type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  if (napi_create_reference(env, value, 1, ref) != napi_ok) {
    throw_unless_pending(env, hold_failed);
    return 0;
  }
  return 1;
}

/*
 * The last step of every call: `done` must be a function; it is held in `done_ref` and the job is
 * queued as "bulwark:<fn>". Throws (a TypeError for `done`) and returns 0 otherwise; the caller
 * then frees the job.
 */
static int queue_job(napi_env env, napi_value done, const char *fn, napi_async_execute_callback execute, napi_async_complete_callback complete, void *job, napi_async_work *work,
                     napi_ref *done_ref) {
  napi_valuetype type;
  if (napi_typeof(env, done, &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "done must be a function");
    return 0;
  }
  char label[64];
  snprintf(label, sizeof label, "bulwark:%s", fn);
  napi_value name;
  if (napi_create_reference(env, done, 1, done_ref) != napi_ok || napi_create_string_utf8(env, label, NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, job, work) != napi_ok || napi_queue_async_work(env, *work) != napi_ok) {
    char message[96];
    snprintf(message, sizeof message, "%s: could not queue the job", fn);
    throw_unless_pending(env, message);
    return 0;
  }
  return 1;
}

/*
 * The first step of every call: exactly `want` arguments into `argv` (a TypeError naming `usage`
 * otherwise), then a zeroed job of `size` bytes. NULL when it threw.
 */
static void *start_job(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *usage, size_t size) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != want) {
    char message[160];
    snprintf(message, sizeof message, "%s: wrong number of arguments", usage);
    napi_throw_type_error(env, NULL, message);
    return NULL;
  }
  void *job = calloc(1, size);
  if (job == NULL) napi_throw_error(env, NULL, "out of memory");
  return job;
}

/* A file position into *out: a number (else a TypeError), a non-negative integer (else a RangeError). */
static int position_arg(napi_env env, napi_value value, int64_t *out) {
  napi_valuetype type;
  double position = -1;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) {
    napi_throw_type_error(env, NULL, "position must be a number");
    return 0;
  }
  /* 2^53: every integer below it is exact in a double, and a file offset never gets there. */
  if (napi_get_value_double(env, value, &position) != napi_ok || !(position >= 0 && position < 9007199254740992.0) || position != (double)(int64_t)position) {
    napi_throw_range_error(env, NULL, "position must be a non-negative integer");
    return 0;
  }
  *out = (int64_t)position;
  return 1;
}

static napi_value commit_file(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  commit_job_t *job = start_job(env, info, 6, argv, "commitFile(path, append, synced, dest, destDir, done)", sizeof *job);
  if (job == NULL) return NULL;
  napi_valuetype type;
  if (!path_arg(env, argv[0], "path must be a non-empty string shorter than PATH_MAX", job->path)) goto fail;
  napi_typeof(env, argv[1], &type);
  if (type != napi_null) {
    void *bytes = NULL;
    if (!bytes_arg(env, argv[1], "append must be a Uint8Array or null", "commitFile: could not hold the bytes to append", &bytes, &job->append_length, &job->append_ref)) goto fail;
    job->has_append = true;
    job->append = bytes;
  }
  if (napi_get_value_bool(env, argv[2], &job->synced) != napi_ok) {
    napi_throw_type_error(env, NULL, "synced must be a boolean");
    goto fail;
  }
  if (!path_arg(env, argv[3], "dest must be a non-empty string shorter than PATH_MAX", job->dest)) goto fail;
  if (!path_arg(env, argv[4], "destDir must be a non-empty string shorter than PATH_MAX", job->dest_dir)) goto fail;
  if (!queue_job(env, argv[5], "commitFile", commit_execute, commit_complete, job, &job->work, &job->done_ref)) goto fail;
  return NULL;
fail:
  commit_free(env, job);
  return NULL;
}

/* ---- makeFolder ---- */

#define MAX_FOLDER_FILES 4

typedef struct {
  napi_async_work work;
  napi_ref done_ref;
  napi_ref content_refs[MAX_FOLDER_FILES]; /* keep the contents alive until done */
  char dir[PATH_MAX];
  uint32_t count;
  char paths[MAX_FOLDER_FILES][PATH_MAX];
  const unsigned char *bytes[MAX_FOLDER_FILES];
  size_t lengths[MAX_FOLDER_FILES];
  int err;
  const char *syscall;
  const char *err_path;
} folder_job_t;

static void folder_fail(folder_job_t *job, int err, const char *syscall, const char *path) {
  job->err = err;
  job->syscall = syscall;
  job->err_path = path;
}

static void folder_execute(napi_env env, void *data) {
  (void)env;
  folder_job_t *job = (folder_job_t *)data;
  if (mkdir(job->dir, 0777) != 0) {
    folder_fail(job, errno, "mkdir", job->dir);
    return;
  }
  for (uint32_t i = 0; i < job->count; i++) {
    int fd;
    do fd = open(job->paths[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
      folder_fail(job, errno, "open", job->paths[i]);
      return;
    }
    int e = write_all(fd, job->bytes[i], job->lengths[i]);
    if (e != 0) {
      folder_fail(job, e, "write", job->paths[i]);
      close(fd);
      return;
    }
    if (close(fd) != 0 && errno != EINTR) {
      folder_fail(job, errno, "close", job->paths[i]);
      return;
    }
  }
}

static void folder_free(napi_env env, folder_job_t *job) {
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  if (job->done_ref != NULL) napi_delete_reference(env, job->done_ref);
  for (uint32_t i = 0; i < MAX_FOLDER_FILES; i++)
    if (job->content_refs[i] != NULL) napi_delete_reference(env, job->content_refs[i]);
  free(job);
}

static void folder_complete(napi_env env, napi_status status, void *data) {
  folder_job_t *job = (folder_job_t *)data;
  napi_value done, undefined, arg;
  napi_get_reference_value(env, job->done_ref, &done);
  napi_get_undefined(env, &undefined);
  arg = outcome(env, status, "makeFolder", job->err, job->syscall, job->err_path);
  folder_free(env, job);
  napi_call_function(env, undefined, done, 1, &arg, NULL);
}

static napi_value make_folder(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  folder_job_t *job = start_job(env, info, 3, argv, "makeFolder(dir, files, done)", sizeof *job);
  if (job == NULL) return NULL;
  bool is_array = false;
  uint32_t length = 0;
  if (!path_arg(env, argv[0], "dir must be a non-empty string shorter than PATH_MAX", job->dir)) goto fail;
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[1], &length) != napi_ok || length % 2 != 0 ||
      length / 2 > MAX_FOLDER_FILES) {
    napi_throw_type_error(env, NULL, "files must be an array of [path, bytes] pairs, flattened, at most 4 files");
    goto fail;
  }
  job->count = length / 2;
  for (uint32_t i = 0; i < job->count; i++) {
    napi_value path, bytes;
    void *ptr = NULL;
    if (napi_get_element(env, argv[1], 2 * i, &path) != napi_ok || napi_get_element(env, argv[1], 2 * i + 1, &bytes) != napi_ok) {
      throw_unless_pending(env, "makeFolder: could not read the files");
      goto fail;
    }
    if (!path_arg(env, path, "each file's path must be a non-empty string shorter than PATH_MAX", job->paths[i])) goto fail;
    if (!bytes_arg(env, bytes, "each file's contents must be a Uint8Array", "makeFolder: could not hold the contents", &ptr, &job->lengths[i], &job->content_refs[i])) goto fail;
    job->bytes[i] = ptr;
  }
  if (!queue_job(env, argv[2], "makeFolder", folder_execute, folder_complete, job, &job->work, &job->done_ref)) goto fail;
  return NULL;
fail:
  folder_free(env, job);
  return NULL;
}

/* ---- readRange ---- */

typedef struct {
  napi_async_work work;
  napi_ref done_ref;
  napi_ref buffer_ref; /* keeps the buffer alive until done */
  unsigned char *buffer;
  size_t length;
  int64_t position;
  char path[PATH_MAX];
  size_t bytes_read;
  int err;
  const char *syscall;
} read_job_t;

static void read_execute(napi_env env, void *data) {
  (void)env;
  read_job_t *job = (read_job_t *)data;
  int fd;
  do fd = open(job->path, O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    job->err = errno;
    job->syscall = "open";
    return;
  }
  /* Fewer bytes than the buffer holds only when the file ends first. */
  int e = pread_full(fd, job->buffer, job->length, job->position, &job->bytes_read, false);
  if (e != 0) {
    job->err = e;
    job->syscall = "read";
  }
  /* A read-only descriptor: a close error says nothing about the bytes read. */
  close(fd);
}

static void read_free(napi_env env, read_job_t *job) {
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  if (job->done_ref != NULL) napi_delete_reference(env, job->done_ref);
  if (job->buffer_ref != NULL) napi_delete_reference(env, job->buffer_ref);
  free(job);
}

static void read_complete(napi_env env, napi_status status, void *data) {
  read_job_t *job = (read_job_t *)data;
  napi_value done, undefined, argv[2];
  napi_get_reference_value(env, job->done_ref, &done);
  napi_get_undefined(env, &undefined);
  argv[0] = outcome(env, status, "readRange", job->err, job->syscall, job->path);
  napi_create_double(env, status == napi_ok && job->err == 0 ? (double)job->bytes_read : 0, &argv[1]);
  read_free(env, job);
  napi_call_function(env, undefined, done, 2, argv, NULL);
}

static napi_value read_range(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  read_job_t *job = start_job(env, info, 4, argv, "readRange(path, position, buffer, done)", sizeof *job);
  if (job == NULL) return NULL;
  void *bytes = NULL;
  if (!path_arg(env, argv[0], "path must be a non-empty string shorter than PATH_MAX", job->path)) goto fail;
  if (!position_arg(env, argv[1], &job->position)) goto fail;
  if (!bytes_arg(env, argv[2], "buffer must be a Uint8Array", "readRange: could not hold the buffer", &bytes, &job->length, &job->buffer_ref)) goto fail;
  job->buffer = bytes;
  if (!queue_job(env, argv[3], "readRange", read_execute, read_complete, job, &job->work, &job->done_ref)) goto fail;
  return NULL;
fail:
  read_free(env, job);
  return NULL;
}

/* ---- appendDirect, readDirect ---- */

/*
 * Direct I/O (O_DIRECT) moves bytes between the device and memory aligned to DIRECT_ALIGN, at
 * file offsets and lengths aligned to it. The caller's buffers are not aligned, so each pool
 * thread copies through a bounce buffer of its own, made on its first direct job and kept: a
 * copy costs far less than the page cache's (see ADR 0024).
 */
#define DIRECT_ALIGN 4096
#define BOUNCE_BYTES ((1 << 20) + 2 * DIRECT_ALIGN)
#define MAX_DIRECT_CHUNKS 1024

static _Thread_local unsigned char *bounce;

static unsigned char *bounce_buffer(void) {
  if (bounce == NULL) {
    void *p = NULL;
    if (posix_memalign(&p, DIRECT_ALIGN, BOUNCE_BYTES) != 0) return NULL;
    bounce = p;
  }
  return bounce;
}

/* Writes all of `length` bytes at `offset` (short writes continued, EINTR retried): 0, or the errno. */
static int pwrite_all(int fd, const unsigned char *bytes, size_t length, int64_t offset) {
  size_t done = 0;
  while (done < length) {
    ssize_t n = pwrite(fd, bytes + done, length - done, (off_t)(offset + (int64_t)done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    done += (size_t)n;
  }
  return 0;
}

/* Sets or clears O_DIRECT on `fd`: 0, or the errno. */
static int set_direct(int fd, bool on) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return errno;
  int want = on ? (flags | O_DIRECT) : (flags & ~O_DIRECT);
  if (want != flags && fcntl(fd, F_SETFL, want) != 0) return errno;
  return 0;
}

typedef struct {
  napi_async_work work;
  napi_ref done_ref;
  napi_ref refs[MAX_DIRECT_CHUNKS]; /* keep the chunks (or the read buffer) alive until done */
  const unsigned char *bytes[MAX_DIRECT_CHUNKS];
  size_t lengths[MAX_DIRECT_CHUNKS];
  uint32_t count;
  int fd;
  int64_t position;
  bool final;
  size_t result; /* bytes written from the chunks, or read into the buffer */
  int err;
  const char *syscall;
  const char *fn;
} direct_job_t;

static void direct_fail(direct_job_t *job, int err, const char *syscall) {
  job->err = err;
  job->syscall = syscall;
}

/*
 * The descriptor of a direct job must be open with O_DIRECT and without O_APPEND (with it,
 * pwrite ignores the offset and the block rewritten first would be appended again); for
 * appendDirect, `position` must not be past the end of the file (that would leave a hole).
 * 1, or 0 with the job failed (EINVAL and the call that told).
 */
static int check_direct_fd(direct_job_t *job, bool writing) {
  int flags = fcntl(job->fd, F_GETFL);
  if (flags < 0) {
    direct_fail(job, errno, "fcntl");
    return 0;
  }
  if ((flags & O_DIRECT) == 0 || (flags & O_APPEND) != 0) {
    direct_fail(job, EINVAL, "fcntl");
    return 0;
  }
  if (writing) {
    struct stat st;
    if (fstat(job->fd, &st) != 0) {
      direct_fail(job, errno, "fstat");
      return 0;
    }
    if (job->position > (int64_t)st.st_size) {
      direct_fail(job, EINVAL, "fstat");
      return 0;
    }
  }
  return 1;
}

/*
 * appendDirect: the chunks go to the file from `position` on. The block that `position` falls
 * in is completed with the file's own bytes before it (read through the page cache), whole
 * blocks are written with O_DIRECT, and the bytes of a last, partial block are written through
 * the page cache when `final`, otherwise left to the caller (result says how many were written).
 */
static void append_direct_execute(napi_env env, void *data) {
  (void)env;
  direct_job_t *job = (direct_job_t *)data;
  unsigned char *buf = bounce_buffer();
  if (buf == NULL) return direct_fail(job, ENOMEM, "posix_memalign");
  if (!check_direct_fd(job, true)) return;
  int64_t offset = job->position & ~(int64_t)(DIRECT_ALIGN - 1);
  size_t fill = (size_t)(job->position - offset);
  size_t total = 0;
  int e;
  if (fill > 0) {
    size_t got = 0;
    if ((e = set_direct(job->fd, false)) != 0) return direct_fail(job, e, "fcntl");
    e = pread_full(job->fd, buf, fill, offset, &got, false);
    int e2 = set_direct(job->fd, true);
    if (e != 0) return direct_fail(job, e, "read");
    if (e2 != 0) return direct_fail(job, e2, "fcntl");
    if (got < fill) return direct_fail(job, EIO, "read"); /* the file is shorter than `position` */
  }
  for (uint32_t i = 0; i < job->count; i++) {
    const unsigned char *from = job->bytes[i];
    size_t left = job->lengths[i];
    total += left;
    while (left > 0) {
      size_t take = BOUNCE_BYTES - fill < left ? BOUNCE_BYTES - fill : left;
      memcpy(buf + fill, from, take);
      fill += take;
      from += take;
      left -= take;
      if (fill == BOUNCE_BYTES) {
        if ((e = pwrite_all(job->fd, buf, fill, offset)) != 0) return direct_fail(job, e, "write");
        offset += (int64_t)fill;
        fill = 0;
      }
    }
  }
  size_t whole = fill & ~(size_t)(DIRECT_ALIGN - 1);
  if (whole > 0) {
    if ((e = pwrite_all(job->fd, buf, whole, offset)) != 0) return direct_fail(job, e, "write");
    offset += (int64_t)whole;
    fill -= whole;
    memmove(buf, buf + whole, fill);
  }
  if (job->final && fill > 0) {
    if ((e = set_direct(job->fd, false)) != 0) return direct_fail(job, e, "fcntl");
    e = pwrite_all(job->fd, buf, fill, offset);
    int e2 = set_direct(job->fd, true);
    if (e != 0) return direct_fail(job, e, "write");
    if (e2 != 0) return direct_fail(job, e2, "fcntl");
    offset += (int64_t)fill;
  }
  /* Written: everything up to `offset`, of which the chunks' bytes start at `position`. */
  int64_t written = offset - job->position;
  job->result = written > 0 ? (size_t)written : 0;
  if (job->result > total) job->result = total;
}

/* readDirect: bytes [position, position + length) of the file into the buffer, the blocks around them read with O_DIRECT. */
static void read_direct_execute(napi_env env, void *data) {
  (void)env;
  direct_job_t *job = (direct_job_t *)data;
  unsigned char *buf = bounce_buffer();
  if (buf == NULL) return direct_fail(job, ENOMEM, "posix_memalign");
  if (!check_direct_fd(job, false)) return;
  unsigned char *out = (unsigned char *)job->bytes[0];
  size_t want = job->lengths[0];
  int64_t offset = job->position & ~(int64_t)(DIRECT_ALIGN - 1);
  size_t skip = (size_t)(job->position - offset);
  while (job->result < want) {
    size_t ask = skip + (want - job->result);
    ask = (ask + DIRECT_ALIGN - 1) & ~(size_t)(DIRECT_ALIGN - 1);
    if (ask > BOUNCE_BYTES) ask = BOUNCE_BYTES;
    size_t got = 0;
    int e = pread_full(job->fd, buf, ask, offset, &got, true);
    if (e != 0) return direct_fail(job, e, "read");
    if (got <= skip) break; /* the file ends here */
    size_t take = got - skip < want - job->result ? got - skip : want - job->result;
    memcpy(out + job->result, buf + skip, take);
    job->result += take;
    if (got < ask) break;
    offset += (int64_t)got;
    skip = 0;
  }
}

static void direct_free(napi_env env, direct_job_t *job) {
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  if (job->done_ref != NULL) napi_delete_reference(env, job->done_ref);
  for (uint32_t i = 0; i < job->count; i++)
    if (job->refs[i] != NULL) napi_delete_reference(env, job->refs[i]);
  free(job);
}

static void direct_complete(napi_env env, napi_status status, void *data) {
  direct_job_t *job = (direct_job_t *)data;
  napi_value done, undefined, argv[2];
  char fd_name[32];
  snprintf(fd_name, sizeof fd_name, "fd %d", job->fd);
  napi_get_reference_value(env, job->done_ref, &done);
  napi_get_undefined(env, &undefined);
  argv[0] = outcome(env, status, job->fn, job->err, job->syscall, fd_name);
  napi_create_double(env, status == napi_ok && job->err == 0 ? (double)job->result : 0, &argv[1]);
  direct_free(env, job);
  napi_call_function(env, undefined, done, 2, argv, NULL);
}

/* The fd and position arguments of both direct jobs; throws and returns 0 when either is wrong. */
static int fd_position_args(napi_env env, napi_value fd, napi_value position, direct_job_t *job) {
  napi_valuetype type;
  double value = -1;
  if (napi_typeof(env, fd, &type) != napi_ok || type != napi_number || napi_get_value_double(env, fd, &value) != napi_ok || !(value >= 0 && value <= INT_MAX) || value != (double)(int)value) {
    napi_throw_type_error(env, NULL, "fd must be a file descriptor");
    return 0;
  }
  job->fd = (int)value;
  return position_arg(env, position, &job->position);
}

static napi_value append_direct(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  direct_job_t *job = start_job(env, info, 5, argv, "appendDirect(fd, position, chunks, final, done)", sizeof *job);
  if (job == NULL) return NULL;
  job->fn = "appendDirect";
  bool is_array = false;
  uint32_t length = 0;
  if (!fd_position_args(env, argv[0], argv[1], job)) goto fail;
  if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[2], &length) != napi_ok || length > MAX_DIRECT_CHUNKS) {
    napi_throw_type_error(env, NULL, "chunks must be an array of at most 1024 Uint8Arrays");
    goto fail;
  }
  for (uint32_t i = 0; i < length; i++) {
    napi_value chunk;
    void *ptr = NULL;
    if (napi_get_element(env, argv[2], i, &chunk) != napi_ok) {
      throw_unless_pending(env, "appendDirect: could not read the chunks");
      goto fail;
    }
    if (!bytes_arg(env, chunk, "each chunk must be a Uint8Array", "appendDirect: could not hold a chunk", &ptr, &job->lengths[i], &job->refs[i])) goto fail;
    job->bytes[i] = ptr;
    job->count = i + 1;
  }
  if (napi_get_value_bool(env, argv[3], &job->final) != napi_ok) {
    napi_throw_type_error(env, NULL, "final must be a boolean");
    goto fail;
  }
  if (!queue_job(env, argv[4], "appendDirect", append_direct_execute, direct_complete, job, &job->work, &job->done_ref)) goto fail;
  return NULL;
fail:
  direct_free(env, job);
  return NULL;
}

static napi_value read_direct(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  direct_job_t *job = start_job(env, info, 4, argv, "readDirect(fd, position, buffer, done)", sizeof *job);
  if (job == NULL) return NULL;
  job->fn = "readDirect";
  void *ptr = NULL;
  if (!fd_position_args(env, argv[0], argv[1], job)) goto fail;
  if (!bytes_arg(env, argv[2], "buffer must be a Uint8Array", "readDirect: could not hold the buffer", &ptr, &job->lengths[0], &job->refs[0])) goto fail;
  job->bytes[0] = ptr;
  job->count = 1;
  if (!queue_job(env, argv[3], "readDirect", read_direct_execute, direct_complete, job, &job->work, &job->done_ref)) goto fail;
  return NULL;
fail:
  direct_free(env, job);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "commitFile", NAPI_AUTO_LENGTH, commit_file, NULL, &fn) != napi_ok || napi_set_named_property(env, exports, "commitFile", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "makeFolder", NAPI_AUTO_LENGTH, make_folder, NULL, &fn) != napi_ok || napi_set_named_property(env, exports, "makeFolder", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "readRange", NAPI_AUTO_LENGTH, read_range, NULL, &fn) != napi_ok || napi_set_named_property(env, exports, "readRange", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "appendDirect", NAPI_AUTO_LENGTH, append_direct, NULL, &fn) != napi_ok || napi_set_named_property(env, exports, "appendDirect", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "readDirect", NAPI_AUTO_LENGTH, read_direct, NULL, &fn) != napi_ok || napi_set_named_property(env, exports, "readDirect", fn) != napi_ok) return NULL;
  return exports;
}
