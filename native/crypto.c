/*
 * Bulwark's native crypto (ADR 0007): AES-256-GCM into buffers the caller owns, and SHA-256
 * whose updates run on libuv's thread pool.
 *
 * AES-256-GCM.
 *
 * node:crypto's Cipher.update and WebCrypto return a new buffer for every call. At registry
 * throughput that is a GiB of short-lived buffers per GiB served, and V8 answered it with a full
 * garbage collection every 12 MiB or so: the collector cost more than AES itself. These two
 * functions do one whole segment through OpenSSL's EVP interface, the library node:crypto itself
 * uses (its symbols are exported by the node binary), writing into memory the caller reuses.
 *
 *   seal(key32, nonce12, aad, plaintext, ciphertextOut, tagOut16)      -> undefined
 *   open(key32, nonce12, aad, ciphertext, tag16, plaintextOut) -> boolean
 *
 * `open` returns false when the tag does not authenticate, and then zero-fills what it wrote:
 * no unauthenticated plaintext is left in the caller's buffer; any other failure throws (it is
 * not evidence of tampering). Every argument is checked; a bad
 * one throws a TypeError or RangeError and touches nothing.
 *
 * SHA-256 off the event loop.
 *
 *   sha256New()                       -> handle
 *   sha256Update(handle, chunks, done) -> undefined; hashes an array of byte arrays in order,
 *                                        then done(error?) is called on the event loop
 *   sha256Digest(handle)              -> Buffer of 32 bytes; the handle is finished
 *
 * An update holds references to the handle and to the chunks until `done` (through an array of
 * its own); the caller must not write to, detach or transfer the chunks meanwhile, and must not start another update or the digest before `done`
 * (an update or digest on a busy handle throws). A registry hashes everything a client pushes,
 * twice when it encrypts (the client's digest, the ciphertext's name): on the event loop that
 * was the largest single cost of an encrypted push.
 *
 * Sealing segments off the event loop (what an encrypted push does with every segment).
 *
 *   sealSegments(key32, plainHash|null, cipherHash|null, items, done) -> undefined
 *
 * `items` holds 4 byte arrays per segment: the plaintext (n bytes); the part of it to add to
 * plainHash (a view inside the plaintext, empty for none); the output of n + 28 bytes, whose
 * first 12 bytes are the nonce (filled by the caller) and which receives ciphertext | tag; and
 * the segment's additional data. One thread-pool job per call does, for each segment in order:
 * plainHash gets the hashed part, the plaintext is sealed, cipherHash gets the whole output. A job per segment and per hash (sha256Update) cost more in waking threads than the
 * hashing itself on this 2-core machine; one job for all three costs one wake-up per batch.
 * Each plaintext is wiped once sealed, so the caller can pool the buffers without leaving
 * plaintext in them. The key is copied into the job and cleansed when it ends; the hashes are
 * busy until `done`.
 * Every argument is checked before anything is queued (at most 64 segments; no output may
 * overlap any other argument, nor two plaintexts each other); a failed seal zero-fills its output.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <node_api.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

typedef struct {
  unsigned char *data;
  size_t length;
} bytes_t;

static int bytes_arg(napi_env env, napi_value value, const char *name, bytes_t *out) {
  bool is_typed = false;
  napi_typedarray_type type;
  void *data = NULL;
  size_t length = 0;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, value, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, name);
    return 0;
  }
  if (length > INT_MAX) {
    napi_throw_range_error(env, NULL, name);
    return 0;
  }
  out->data = (unsigned char *)data;
  out->length = length;
  return 1;
}

static int exact(napi_env env, const bytes_t *b, size_t length, const char *message) {
  if (b->length == length) return 1;
  napi_throw_range_error(env, NULL, message);
  return 0;
}

/* Two buffers that must not share a byte. */
static int disjoint(napi_env env, const bytes_t *a, const bytes_t *b) {
  if (a->length == 0 || b->length == 0 || a->data + a->length <= b->data || b->data + b->length <= a->data) return 1;
  napi_throw_range_error(env, NULL, "an argument overlaps the output");
  return 0;
}

/* The output must not overlap the input except exactly (in place), which OpenSSL allows. */
static int disjoint_or_same(napi_env env, const bytes_t *in, const bytes_t *out) {
  const unsigned char *a = in->data, *b = out->data;
  if (a == b || a + in->length <= b || b + out->length <= a) return 1;
  napi_throw_range_error(env, NULL, "input and output overlap");
  return 0;
}

static int get_args(napi_env env, napi_callback_info info, bytes_t *args, const char **names) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) {
    napi_throw_type_error(env, NULL, "expected 6 arguments");
    return 0;
  }
  for (size_t i = 0; i < 6; i++)
    if (!bytes_arg(env, argv[i], names[i], &args[i])) return 0;
  return exact(env, &args[0], 32, "key must be 32 bytes") && exact(env, &args[1], 12, "nonce must be 12 bytes");
}

/*
 * What seal and open both require of a segment's arguments: a 16-byte tag, an output at least
 * as long as the input, and no output that overlaps another argument (the input may be the
 * output exactly: in place).
 */
static int segment_args(napi_env env, const bytes_t *key, const bytes_t *nonce, const bytes_t *aad, const bytes_t *in, const bytes_t *out, const bytes_t *tag,
                        const char *short_output) {
  if (!exact(env, tag, 16, "tag must be 16 bytes")) return 0;
  if (out->length < in->length) {
    napi_throw_range_error(env, NULL, short_output);
    return 0;
  }
  return disjoint_or_same(env, in, out) && disjoint(env, tag, out) && disjoint(env, tag, in) && disjoint(env, nonce, out) && disjoint(env, aad, out) &&
         disjoint(env, key, out);
}

static napi_value seal(napi_env env, napi_callback_info info) {
  static const char *names[] = {"key", "nonce", "aad", "plaintext", "ciphertext", "tag"};
  bytes_t a[6];
  if (!get_args(env, info, a, names)) return NULL;
  bytes_t *key = &a[0], *nonce = &a[1], *aad = &a[2], *in = &a[3], *out = &a[4], *tag = &a[5];
  if (!segment_args(env, key, nonce, aad, in, out, tag, "ciphertext buffer is shorter than the plaintext")) return NULL;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int n = 0, ok = ctx != NULL &&
                  EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->data, nonce->data) == 1 &&
                  EVP_EncryptUpdate(ctx, NULL, &n, aad->data, (int)aad->length) == 1 &&
                  EVP_EncryptUpdate(ctx, out->data, &n, in->data, (int)in->length) == 1 && (size_t)n == in->length &&
                  EVP_EncryptFinal_ex(ctx, out->data + n, &n) == 1 && n == 0 &&
                  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag->data) == 1;
  EVP_CIPHER_CTX_free(ctx); /* also cleanses the key schedule */
  if (!ok) {
    OPENSSL_cleanse(out->data, in->length);
    napi_throw_error(env, NULL, "AES-256-GCM encryption failed");
  }
  return NULL;
}

static napi_value open_(napi_env env, napi_callback_info info) {
  static const char *names[] = {"key", "nonce", "aad", "ciphertext", "tag", "plaintext"};
  bytes_t a[6];
  if (!get_args(env, info, a, names)) return NULL;
  bytes_t *key = &a[0], *nonce = &a[1], *aad = &a[2], *in = &a[3], *tag = &a[4], *out = &a[5];
  if (!segment_args(env, key, nonce, aad, in, out, tag, "plaintext buffer is shorter than the ciphertext")) return NULL;
  /* The tag is given to OpenSSL before any output is written. */
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int n = 0, fin = 0;
  int ready = ctx != NULL &&
              EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->data, nonce->data) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag->data) == 1 &&
              EVP_DecryptUpdate(ctx, NULL, &n, aad->data, (int)aad->length) == 1 &&
              EVP_DecryptUpdate(ctx, out->data, &n, in->data, (int)in->length) == 1 && (size_t)n == in->length;
  /* Only a tag that does not verify is "not authentic"; anything else is an error, not tampering. */
  int authentic = ready && EVP_DecryptFinal_ex(ctx, out->data + n, &fin) == 1 && fin == 0;
  EVP_CIPHER_CTX_free(ctx);
  if (!authentic) OPENSSL_cleanse(out->data, in->length);
  if (!ready) {
    napi_throw_error(env, NULL, "AES-256-GCM decryption failed");
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, authentic != 0, &result);
  return result;
}

typedef struct {
  EVP_MD_CTX *md;
  int busy;
  int finished;
} hash_t;

/* Marks the externals this module made, so that no other external is taken for a hash_t. */
static const napi_type_tag HASH_TAG = {0x62756c7761726b31ULL, 0x7368613235366831ULL};

typedef struct {
  napi_async_work work;
  napi_ref handle_ref;
  napi_ref chunks_ref;
  napi_ref done_ref;
  hash_t *hash;
  uint32_t count;
  bytes_t *chunks;
  int ok;
} hash_job_t;

static void hash_job_free(napi_env env, hash_job_t *job) {
  if (job->handle_ref) napi_delete_reference(env, job->handle_ref);
  if (job->chunks_ref) napi_delete_reference(env, job->chunks_ref);
  if (job->done_ref) napi_delete_reference(env, job->done_ref);
  if (job->work) napi_delete_async_work(env, job->work);
  free(job->chunks);
  free(job);
}

static void hash_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  hash_t *h = (hash_t *)data;
  EVP_MD_CTX_free(h->md);
  free(h);
}

static hash_t *hash_arg(napi_env env, napi_value value) {
  napi_valuetype type;
  void *data = NULL;
  bool tagged = false;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external || napi_check_object_type_tag(env, value, &HASH_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "not a sha256 handle");
    return NULL;
  }
  hash_t *h = (hash_t *)data;
  if (h->busy) {
    napi_throw_error(env, NULL, "sha256 handle is busy");
    return NULL;
  }
  if (h->finished) {
    napi_throw_error(env, NULL, "sha256 handle is finished");
    return NULL;
  }
  return h;
}

static napi_value sha256_new(napi_env env, napi_callback_info info) {
  (void)info;
  hash_t *h = (hash_t *)calloc(1, sizeof(hash_t));
  if (h == NULL || (h->md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1) {
    if (h != NULL) EVP_MD_CTX_free(h->md);
    free(h);
    napi_throw_error(env, NULL, "cannot start a sha256");
    return NULL;
  }
  napi_value handle;
  if (napi_create_external(env, h, hash_finalize, NULL, &handle) != napi_ok) {
    hash_finalize(env, h, NULL);
    return NULL;
  }
  if (napi_type_tag_object(env, handle, &HASH_TAG) != napi_ok) return NULL;
  return handle;
}

static void hash_execute(napi_env env, void *data) {
  (void)env;
  hash_job_t *job = (hash_job_t *)data;
  job->ok = 1;
  for (uint32_t i = 0; i < job->count && job->ok; i++) job->ok = EVP_DigestUpdate(job->hash->md, job->chunks[i].data, job->chunks[i].length) == 1;
}

static void hash_complete(napi_env env, napi_status status, void *data) {
  hash_job_t *job = (hash_job_t *)data;
  napi_value done, undefined, arg;
  job->hash->busy = 0;
  napi_get_reference_value(env, job->done_ref, &done);
  napi_get_undefined(env, &undefined);
  if (status == napi_ok && job->ok) {
    arg = undefined;
  } else {
    napi_value message;
    napi_create_string_utf8(env, "sha256 update failed", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &arg);
    job->hash->finished = 1;
  }
  hash_job_free(env, job);
  napi_call_function(env, undefined, done, 1, &arg, NULL);
}

/* The `want` arguments of a sha256 call (at most 3), the first being a usable handle, which is returned. */
static hash_t *hash_call(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != want) {
    napi_throw_type_error(env, NULL, "wrong number of arguments");
    return NULL;
  }
  return hash_arg(env, argv[0]);
}

/* Throws `message` unless an exception is already pending (a napi call that failed may have set one). */
static void throw_unless_pending(napi_env env, const char *message) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) napi_throw_error(env, NULL, message);
}

/* A function argument (a job's `done`). */
static int function_arg(napi_env env, napi_value value, const char *name) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) == napi_ok && type == napi_function) return 1;
  napi_throw_type_error(env, NULL, name);
  return 0;
}

/*
 * The byte arrays of a job: `array` must hold 1..`max` of them, a multiple of `stride`
 * (`names[i % stride]` names a bad one). On success `*out` (the caller frees it) holds their
 * bytes, and `*own` an array of the job's own holding them: the job keeps them alive through it,
 * since the caller's array may change. Throws on any failure.
 */
static int buffers_arg(napi_env env, napi_value array, uint32_t stride, uint32_t max, const char *what, const char *const *names, bytes_t **out, uint32_t *count,
                       napi_value *own) {
  bool is_array = false;
  uint32_t length = 0;
  if (napi_is_array(env, array, &is_array) != napi_ok || !is_array || napi_get_array_length(env, array, &length) != napi_ok || length == 0 || length % stride != 0 ||
      length > max) {
    napi_throw_type_error(env, NULL, what);
    return 0;
  }
  bytes_t *items = (bytes_t *)calloc(length, sizeof(bytes_t));
  if (items == NULL || napi_create_array_with_length(env, length, own) != napi_ok) {
    free(items);
    throw_unless_pending(env, "out of memory");
    return 0;
  }
  for (uint32_t i = 0; i < length; i++) {
    napi_value item;
    if (napi_get_element(env, array, i, &item) != napi_ok || !bytes_arg(env, item, names[i % stride], &items[i]) || napi_set_element(env, *own, i, item) != napi_ok) {
      free(items);
      throw_unless_pending(env, what);
      return 0;
    }
  }
  *out = items;
  *count = length;
  return 1;
}

static napi_value sha256_update(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  hash_t *h = hash_call(env, info, 3, argv);
  if (h == NULL) return NULL;
  static const char *const names[] = {"chunk"};
  bytes_t *chunks = NULL;
  uint32_t count = 0;
  napi_value own;
  if (!buffers_arg(env, argv[1], 1, 65536, "chunks", names, &chunks, &count, &own)) return NULL;
  if (!function_arg(env, argv[2], "done")) {
    free(chunks);
    return NULL;
  }
  hash_job_t *job = (hash_job_t *)calloc(1, sizeof(hash_job_t));
  if (job == NULL) {
    free(chunks);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  job->hash = h;
  job->chunks = chunks;
  job->count = count;
  napi_value name;
  if (napi_create_reference(env, argv[0], 1, &job->handle_ref) != napi_ok ||
      napi_create_reference(env, own, 1, &job->chunks_ref) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &job->done_ref) != napi_ok ||
      napi_create_string_utf8(env, "bulwark:sha256", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, hash_execute, hash_complete, job, &job->work) != napi_ok ||
      napi_queue_async_work(env, job->work) != napi_ok) {
    hash_job_free(env, job);
    napi_throw_error(env, NULL, "cannot queue a sha256 update");
    return NULL;
  }
  h->busy = 1;
  return NULL;
}

static napi_value sha256_digest(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  hash_t *h = hash_call(env, info, 1, argv);
  if (h == NULL) return NULL;
  unsigned char digest[32];
  unsigned int n = 0;
  h->finished = 1;
  if (EVP_DigestFinal_ex(h->md, digest, &n) != 1 || n != 32) {
    napi_throw_error(env, NULL, "sha256 digest failed");
    return NULL;
  }
  napi_value result;
  void *copy = NULL;
  if (napi_create_buffer_copy(env, 32, digest, &copy, &result) != napi_ok) return NULL;
  return result;
}

typedef struct {
  napi_async_work work;
  napi_ref plain_ref;
  napi_ref cipher_ref;
  napi_ref items_ref;
  napi_ref done_ref;
  hash_t *plain;
  hash_t *cipher;
  unsigned char key[32];
  uint32_t count; /* segments */
  bytes_t *items; /* 4 per segment: plaintext, hashed part, output, aad */
  int ok;
} seal_job_t;

static void seal_job_free(napi_env env, seal_job_t *job) {
  if (job->plain_ref) napi_delete_reference(env, job->plain_ref);
  if (job->cipher_ref) napi_delete_reference(env, job->cipher_ref);
  if (job->items_ref) napi_delete_reference(env, job->items_ref);
  if (job->done_ref) napi_delete_reference(env, job->done_ref);
  if (job->work) napi_delete_async_work(env, job->work);
  OPENSSL_cleanse(job->key, sizeof job->key);
  free(job->items);
  free(job);
}

static int seal_one(EVP_CIPHER_CTX *ctx, const unsigned char *key, const bytes_t *plain, const bytes_t *out, const bytes_t *aad) {
  unsigned char *nonce = out->data, *ct = out->data + 12, *tag = out->data + 12 + plain->length;
  int n = 0;
  int ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) == 1 && EVP_EncryptUpdate(ctx, NULL, &n, aad->data, (int)aad->length) == 1 &&
           EVP_EncryptUpdate(ctx, ct, &n, plain->data, (int)plain->length) == 1 && (size_t)n == plain->length && EVP_EncryptFinal_ex(ctx, ct + n, &n) == 1 &&
           n == 0 && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
  if (!ok) OPENSSL_cleanse(out->data, out->length);
  return ok;
}

static void seal_execute(napi_env env, void *data) {
  (void)env;
  seal_job_t *job = (seal_job_t *)data;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  job->ok = ctx != NULL;
  for (uint32_t i = 0; i < job->count && job->ok; i++) {
    const bytes_t *plain = &job->items[4 * i], *hashed = &job->items[4 * i + 1], *out = &job->items[4 * i + 2], *aad = &job->items[4 * i + 3];
    if (job->plain != NULL && hashed->length > 0) job->ok = EVP_DigestUpdate(job->plain->md, hashed->data, hashed->length) == 1;
    if (job->ok) job->ok = seal_one(ctx, job->key, plain, out, aad);
    OPENSSL_cleanse(plain->data, plain->length); /* sealed (or failed): the plaintext is not needed any more */
    if (job->ok && job->cipher != NULL) job->ok = EVP_DigestUpdate(job->cipher->md, out->data, out->length) == 1;
  }
  EVP_CIPHER_CTX_free(ctx); /* also cleanses the key schedule */
}

static void seal_complete(napi_env env, napi_status status, void *data) {
  seal_job_t *job = (seal_job_t *)data;
  napi_value done, undefined, arg;
  int ok = status == napi_ok && job->ok;
  if (job->plain != NULL) {
    job->plain->busy = 0;
    if (!ok) job->plain->finished = 1;
  }
  if (job->cipher != NULL) {
    job->cipher->busy = 0;
    if (!ok) job->cipher->finished = 1;
  }
  napi_get_reference_value(env, job->done_ref, &done);
  napi_get_undefined(env, &undefined);
  if (ok) {
    arg = undefined;
  } else {
    napi_value message;
    napi_create_string_utf8(env, "AES-256-GCM sealing failed", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &arg);
  }
  seal_job_free(env, job);
  napi_call_function(env, undefined, done, 1, &arg, NULL);
}

/* null, or a usable (not busy, not finished) hash handle */
static int optional_hash(napi_env env, napi_value value, hash_t **out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return 0;
  if (type == napi_null) {
    *out = NULL;
    return 1;
  }
  *out = hash_arg(env, value);
  return *out != NULL;
}

/* Segments one sealSegments job takes at most (its checks compare every pair). */
#define MAX_SEAL_SEGMENTS 64

/* Two byte ranges that share a byte. */
static int overlap(const bytes_t *a, const bytes_t *b) {
  return a->length > 0 && b->length > 0 && a->data < b->data + b->length && b->data < a->data + a->length;
}

/* `inner` lies within `outer` (an empty view anywhere counts). */
static int within(const bytes_t *inner, const bytes_t *outer) {
  return inner->length == 0 || (inner->data >= outer->data && inner->data + inner->length <= outer->data + outer->length);
}

static napi_value seal_segments(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) {
    napi_throw_type_error(env, NULL, "expected 5 arguments");
    return NULL;
  }
  bytes_t key;
  hash_t *plain = NULL, *cipher = NULL;
  if (!bytes_arg(env, argv[0], "key", &key) || !exact(env, &key, 32, "key must be 32 bytes") || !optional_hash(env, argv[1], &plain) ||
      !optional_hash(env, argv[2], &cipher))
    return NULL;
  if (plain != NULL && plain == cipher) {
    napi_throw_error(env, NULL, "the two hashes must differ");
    return NULL;
  }
  static const char *const names[] = {"plaintext", "hashed", "output", "aad"};
  bytes_t *items = NULL;
  uint32_t length = 0;
  napi_value own;
  if (!buffers_arg(env, argv[3], 4, 4 * MAX_SEAL_SEGMENTS, "items", names, &items, &length, &own)) return NULL;
  if (!function_arg(env, argv[4], "done")) {
    free(items);
    return NULL;
  }
  seal_job_t *job = (seal_job_t *)calloc(1, sizeof(seal_job_t));
  if (job == NULL) {
    free(items);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  job->items = items;
  memcpy(job->key, key.data, 32);
  job->count = length / 4;
  for (uint32_t i = 0; i < job->count; i++) {
    const bytes_t *p = &job->items[4 * i], *h = &job->items[4 * i + 1], *o = &job->items[4 * i + 2];
    const char *problem = o->length != p->length + 28 ? "output must be 28 bytes longer than the plaintext"
                          : !within(h, p)                ? "the hashed part must lie within the plaintext"
                          : overlap(o, &key)             ? "an argument overlaps the output"
                                                         : NULL;
    /*
     * The job writes every output and wipes every plaintext: no output may touch any other
     * argument of any segment (it would be sealed or hashed after being written), and no two
     * plaintexts may share a byte (the second would be sealed after the first was wiped).
     */
    for (uint32_t j = 0; problem == NULL && j < job->count; j++) {
      const bytes_t *pj = &job->items[4 * j], *oj = &job->items[4 * j + 2], *aj = &job->items[4 * j + 3];
      if (j != i && overlap(o, oj))
        problem = "two outputs overlap";
      else if (overlap(o, pj) || overlap(o, aj))
        problem = j == i ? "an argument overlaps the output" : "an argument of one segment overlaps another's output";
      else if (j != i && overlap(p, pj))
        problem = "two plaintexts overlap";
    }
    if (problem != NULL) {
      seal_job_free(env, job);
      napi_throw_range_error(env, NULL, problem);
      return NULL;
    }
  }
  job->plain = plain;
  job->cipher = cipher;
  /* Reading the items ran no code of the caller's, but check again: the hashes must still be idle. */
  if ((plain != NULL && (plain->busy || plain->finished)) || (cipher != NULL && (cipher->busy || cipher->finished))) {
    seal_job_free(env, job);
    napi_throw_error(env, NULL, "sha256 handle is busy");
    return NULL;
  }
  napi_value name;
  if ((plain != NULL && napi_create_reference(env, argv[1], 1, &job->plain_ref) != napi_ok) ||
      (cipher != NULL && napi_create_reference(env, argv[2], 1, &job->cipher_ref) != napi_ok) ||
      napi_create_reference(env, own, 1, &job->items_ref) != napi_ok || napi_create_reference(env, argv[4], 1, &job->done_ref) != napi_ok ||
      napi_create_string_utf8(env, "bulwark:seal", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, seal_execute, seal_complete, job, &job->work) != napi_ok || napi_queue_async_work(env, job->work) != napi_ok) {
    seal_job_free(env, job);
    napi_throw_error(env, NULL, "cannot queue a seal");
    return NULL;
  }
  if (plain != NULL) plain->busy = 1;
  if (cipher != NULL) cipher->busy = 1;
  return NULL;
}

static int export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) == napi_ok && napi_set_named_property(env, exports, name, fn) == napi_ok;
}

NAPI_MODULE_INIT() {
  if (!export_fn(env, exports, "seal", seal) || !export_fn(env, exports, "open", open_) || !export_fn(env, exports, "sha256New", sha256_new) ||
      !export_fn(env, exports, "sha256Update", sha256_update) || !export_fn(env, exports, "sha256Digest", sha256_digest) ||
      !export_fn(env, exports, "sealSegments", seal_segments))
    return NULL;
  return exports;
}
