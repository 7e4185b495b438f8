/* The compiled front of the shim binary `containerd-shim-wasmvisor-v1`.
 *
 * containerd execs the shim binary for every task: `start`, and on 1.6 `delete` after every disconnect.
 * A Python interpreter takes ~10 ms to start before it does anything, twice per `ctr run`. This front
 * answers the two common cases itself and execs the Python shim (the `-python` script beside it) for
 * everything else, with the same argv, environment, working directory and stdin:
 *
 * WHEN THE FRONT ANSWERS ALONE (the one place these rules live; docs/internals.md restates them):
 *   - argv is exactly containerd's: single- or double-dash flags among -namespace -address
 *     -publish-binary -id -bundle (a value each, `-flag value` or `-flag=value`) and a bare -debug, then
 *     one action, `start` or `delete`; -namespace and -id given. Any other flag or word, -v, -info, the
 *     internal actions: Python.
 *   - the bundle is a task's, `<state>/io.containerd.runtime.v2.task/<ns>/<id>` (containerd 1.6-2.x); any
 *     other kind (2.x's shim sandboxer keeps its sandboxes under io.containerd.sandbox.controller.v1.shim):
 *     Python.
 *   - `start`: WASMVISOR_PROTOCOL is unset; stdin is empty (containerd 1.6-2.2 without runtime options;
 *     options or 2.3's BootstrapParams: Python, which gets the bytes on its stdin); config.json is absent,
 *     lacks the pod annotation, or parses with this file's strict JSON reader (anything it does not
 *     accept: Python); the socket path fits. Then:
 *       * the group's supervisor grants the claim: print `unix://PATH`, write the bundle's `address`;
 *       * nothing serves the path (or its supervisor refuses, ending): under the socket directory's
 *         lock, bind the socket and ask the node's template (its path from the Python script's
 *         interpreter, path and package stamp) to fork the supervisor; `pid N`: answer as above.
 *       Anything else (a silent or garbled answer, no template running, the template disabled, an error
 *       from it, any system call failing): Python, which does the whole `start` again (the socket this
 *       front bound is close-on-exec: Python finds it stale and binds afresh).
 *   - `delete`: no `init.pid` in the bundle, nothing mounted at or under its rootfs, and no folder of
 *     the task's cgroup (the checks of shim/delete.py and shim/leftover_cgroup.py), WASMVISOR_PROTOCOL
 *     unset and the group readable: send Release for the task to the group's supervisor if one listens
 *     (delete.release_group_claim: one left with nothing then ends), print nothing (the empty
 *     DeleteResponse) and exit 0. Anything left, or anything unsure: Python.
 * New behaviour is added in Python; the front picks it up by falling back, as long as the rules above
 * send the new case there. Work added to the common case itself (as `delete`'s Release was) needs either
 * the same work here or a rule above that sends that case to Python.
 *
 * Names and wire formats are shared with the Python side (start.py socket_path and group_of,
 * claim.py, template_client.py, template_protocol.py, leftover_cgroup.py):
 * tests/unit/supervisor/shim/test_front_vectors.py
 * runs both against tests/unit/supervisor/shim/front_vectors.json, this program through its
 * `--front-check` mode.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_SOCKET_PATH 106          /* start.py MAX_SOCKET_PATH */
#define DEFAULT_SOCKET_DIR "/run/containerd/s"
#define GROUP_ANNOTATION "io.kubernetes.cri.sandbox-id"
#define TEMPLATE_PREFIX "wasmvisor-template-"
#define TEMPLATE_MAGIC "wasmvisor-template/1"
#define CLAIM_SERVICE "wasmvisor.v1.Group"
#define CLAIM_METHOD "Claim"
#define CLAIM_TIMEOUT_NS 2000000000ULL /* claim.py TIMEOUT */
#define RELEASE_METHOD "Release"
#define RELEASE_TIMEOUT_NS 1000000000ULL /* delete.py RELEASE_TIMEOUT */
#define TEMPLATE_REPLY_SECONDS 30      /* template_client.py REPLY_TIMEOUT */
#define PYTHON_SUFFIX "-python"
#define CGROUP_ROOT "/sys/fs/cgroup"

/* ---- a growable byte buffer ------------------------------------------------------------------ */

struct buf {
    char *data;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *data, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) abort();
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static int read_file(const char *path, struct buf *out, size_t limit) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { int e = errno; close(fd); errno = e; return -1; }
        if (n == 0) break;
        buf_add(out, chunk, (size_t)n);
        if (out->len > limit) { close(fd); errno = EFBIG; return -1; }
    }
    close(fd);
    if (!out->data) buf_add(out, "", 0);
    return 0;
}

/* ---- SHA-256 (FIPS 180-4) ---------------------------------------------------------------------- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const unsigned char *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

/* The hex digest of `data` into `hex` (65 bytes). */
static void sha256_hex(const void *data, size_t len, char hex[65]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const unsigned char *p = data;
    size_t left = len;
    for (; left >= 64; p += 64, left -= 64) sha256_block(h, p);
    unsigned char tail[128] = {0};
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t blocks = left + 9 > 64 ? 2 : 1;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[blocks * 64 - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < blocks; i++) sha256_block(h, tail + 64 * i);
    for (int i = 0; i < 8; i++) sprintf(hex + 8 * i, "%08x", h[i]);
}

/* ---- socket naming (start.py socket_path) ------------------------------------------------------- */

/* Go's path.Clean of `in` (a '/'-joined path) into `out` (same size or more). */
static void go_clean(const char *in, struct buf *out) {
    size_t n = strlen(in);
    int rooted = n > 0 && in[0] == '/';
    char *w = malloc(n + 2);
    if (!w) abort();
    size_t len = 0, dotdot = 0, r = 0;
    if (rooted) { w[len++] = '/'; r = 1; dotdot = 1; }
    while (r < n) {
        if (in[r] == '/') r++;
        else if (in[r] == '.' && (r + 1 == n || in[r + 1] == '/')) r++;
        else if (in[r] == '.' && in[r + 1] == '.' && (r + 2 == n || in[r + 2] == '/')) {
            r += 2;
            if (len > dotdot) {
                len--;
                while (len > dotdot && w[len] != '/') len--;
            } else if (!rooted) {
                if (len > 0) w[len++] = '/';
                w[len++] = '.'; w[len++] = '.';
                dotdot = len;
            }
        } else {
            if ((rooted && len != 1) || (!rooted && len != 0)) w[len++] = '/';
            for (; r < n && in[r] != '/'; r++) w[len++] = in[r];
        }
    }
    if (len == 0) w[len++] = '.';
    buf_add(out, w, len);
    free(w);
}

/* `<dir>/<hex sha256 of Clean(join(address, namespace, group))>`; -1 when longer than a socket allows. */
static int socket_path(const char *address, const char *ns, const char *group, const char *dir, struct buf *out) {
    struct buf joined = {0}, clean = {0};
    const char *parts[3] = {address, ns, group};
    for (int i = 0; i < 3; i++) {
        if (!parts[i][0]) continue;
        if (joined.len) buf_str(&joined, "/");
        buf_str(&joined, parts[i]);
    }
    if (!joined.len) buf_add(&joined, "", 0);
    go_clean(joined.data, &clean);
    /* Python's normpath differs from Go's Clean in one case only: it keeps a leading "//" (and then
       start.py drops one slash again), so both give the same cleaned path. */
    char hex[65];
    sha256_hex(clean.data, clean.len, hex);
    buf_str(out, dir);
    if (out->len && out->data[out->len - 1] != '/') buf_str(out, "/");
    buf_str(out, hex);
    free(joined.data);
    free(clean.data);
    return out->len > MAX_SOCKET_PATH ? -1 : 0;
}

/* ---- a strict JSON reader: whole-document validation and lookup of one key path ---------------- */

enum { J_MISSING, J_STRING, J_NULL, J_OBJECT, J_OTHER };

struct json {
    const char *p, *end;
    const char *const *keys;
    int nkeys;
    int kind;               /* of the value at the key path: the last occurrence wins, as in a dict */
    const char *str;        /* J_STRING: its raw bytes (no escapes: see `escaped`) */
    size_t str_len;
    int escaped;
};

static void j_ws(struct json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

/* A string at j->p: sets *start and *len to its raw contents and *esc if it holds escapes. -1 if invalid. */
static int j_string(struct json *j, const char **start, size_t *len, int *esc) {
    if (j->p >= j->end || *j->p != '"') return -1;
    j->p++;
    *start = j->p;
    *esc = 0;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20 || c >= 0x80) return -1; /* control characters (strict) and non-ASCII: Python's call */
        if (c == '\\') {
            *esc = 1;
            j->p++;
            if (j->p >= j->end) return -1;
            if (*j->p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (j->p + i >= j->end || !strchr("0123456789abcdefABCDEF", j->p[i]) || !j->p[i]) return -1;
                j->p += 4;
            } else if (!strchr("\"\\/bfnrt", *j->p) || !*j->p) {
                return -1;
            }
        }
        j->p++;
    }
    if (j->p >= j->end) return -1;
    *len = (size_t)(j->p - *start);
    j->p++;
    return 0;
}

static int j_digits(struct json *j) {
    const char *s = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    return j->p > s ? 0 : -1;
}

static int j_number(struct json *j) {
    if (j->p < j->end && *j->p == '-') j->p++;
    if (j->p < j->end && *j->p == '0') j->p++;
    else if (j_digits(j) < 0) return -1;
    if (j->p < j->end && *j->p == '.') { j->p++; if (j_digits(j) < 0) return -1; }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (j_digits(j) < 0) return -1;
    }
    return 0;
}

static int j_literal(struct json *j, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) return -1;
    j->p += n;
    return 0;
}

/* One value. `level` is how many keys of the path lead here (-1: off the path). */
static int j_value(struct json *j, int level, int depth) {
    if (depth > 100) return -1;
    j_ws(j);
    if (j->p >= j->end) return -1;
    int target = level == j->nkeys;
    char c = *j->p;
    if (c == '{') {
        if (target) j->kind = J_OBJECT;
        j->p++;
        j_ws(j);
        if (j->p < j->end && *j->p == '}') { j->p++; return 0; }
        for (;;) {
            const char *key;
            size_t key_len;
            int esc;
            j_ws(j);
            if (j_string(j, &key, &key_len, &esc) < 0) return -1;
            int next = -1;
            if (level >= 0 && level < j->nkeys) {
                if (esc) return -1; /* an escaped key on the path may spell ours: Python's call */
                if (key_len == strlen(j->keys[level]) && memcmp(key, j->keys[level], key_len) == 0) {
                    next = level + 1;
                    j->kind = J_MISSING; /* a repeated key replaces what its earlier value held, as in a dict */
                }
            }
            j_ws(j);
            if (j->p >= j->end || *j->p != ':') return -1;
            j->p++;
            if (j_value(j, next, depth + 1) < 0) return -1;
            j_ws(j);
            if (j->p < j->end && *j->p == ',') { j->p++; continue; }
            if (j->p < j->end && *j->p == '}') { j->p++; return 0; }
            return -1;
        }
    }
    if (c == '[') {
        if (target) j->kind = J_OTHER;
        j->p++;
        j_ws(j);
        if (j->p < j->end && *j->p == ']') { j->p++; return 0; }
        for (;;) {
            if (j_value(j, -1, depth + 1) < 0) return -1;
            j_ws(j);
            if (j->p < j->end && *j->p == ',') { j->p++; continue; }
            if (j->p < j->end && *j->p == ']') { j->p++; return 0; }
            return -1;
        }
    }
    if (c == '"') {
        const char *s;
        size_t n;
        int esc;
        if (j_string(j, &s, &n, &esc) < 0) return -1;
        if (target) { j->kind = J_STRING; j->str = s; j->str_len = n; j->escaped = esc; }
        return 0;
    }
    if (target) j->kind = c == 'n' ? J_NULL : J_OTHER;
    if (c == 'n') return j_literal(j, "null");
    if (c == 't') return j_literal(j, "true");
    if (c == 'f') return j_literal(j, "false");
    return j_number(j); /* NaN and Infinity, which Python reads, fail here: Python's call */
}

/* Look `keys` up in the JSON document `data`: 0 with j->kind set, -1 when the front cannot read it. */
static int json_lookup(const struct buf *data, const char *const *keys, int nkeys, struct json *j) {
    memset(j, 0, sizeof *j);
    j->p = data->data;
    j->end = data->data + data->len;
    j->keys = keys;
    j->nkeys = nkeys;
    j->kind = J_MISSING;
    if (j_value(j, 0, 0) < 0) return -1;
    j_ws(j);
    return j->p == j->end ? 0 : -1;
}

/* ---- the group (start.py group_of) -------------------------------------------------------------- */

/* The group key of the task: 0 with `out` set, -1 when Python must decide. */
static int group_of(const char *bundle, const char *task_id, struct buf *out) {
    struct buf path = {0}, raw = {0};
    buf_str(&path, bundle);
    buf_str(&path, "/config.json");
    int rc = read_file(path.data, &raw, 64 << 20);
    free(path.data);
    if (rc < 0 || !memmem(raw.data, raw.len, GROUP_ANNOTATION, strlen(GROUP_ANNOTATION))) {
        /* no readable config.json (sandbox bundles on 2.x), or no annotation: the task's own group */
        free(raw.data);
        buf_str(out, task_id);
        return 0;
    }
    static const char *const keys[] = {"annotations", GROUP_ANNOTATION};
    struct json j;
    rc = json_lookup(&raw, keys, 2, &j);
    if (rc == 0 && j.kind == J_STRING && j.escaped) rc = -1;
    if (rc == 0) {
        if (j.kind == J_STRING && j.str_len > 0) buf_add(out, j.str, j.str_len);
        else buf_str(out, task_id);
    }
    free(raw.data);
    return rc;
}

/* ---- the group claim over ttrpc (claim.py) ------------------------------------------------------ */

static void pb_varint(struct buf *b, uint64_t v) {
    unsigned char out[10];
    int n = 0;
    while (v > 0x7f) { out[n++] = (unsigned char)((v & 0x7f) | 0x80); v >>= 7; }
    out[n++] = (unsigned char)v;
    buf_add(b, out, (size_t)n);
}

static void pb_bytes(struct buf *b, int field, const void *data, size_t len) {
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, len);
    buf_add(b, data, len);
}

/* One ttrpc Request frame: `method`(StringValue{task_id}) of the Group service on stream 1, with its
   timeout (claim.py encode_request): Claim for `start`, Release for `delete`. */
static void group_request(const char *task_id, const char *method, uint64_t timeout_ns, struct buf *frame) {
    struct buf payload = {0}, req = {0};
    pb_bytes(&payload, 1, task_id, strlen(task_id));
    pb_bytes(&req, 1, CLAIM_SERVICE, strlen(CLAIM_SERVICE));
    pb_bytes(&req, 2, method, strlen(method));
    pb_bytes(&req, 3, payload.data ? payload.data : "", payload.len);
    pb_varint(&req, 4 << 3);
    pb_varint(&req, timeout_ns);
    unsigned char head[10] = {(unsigned char)(req.len >> 24), (unsigned char)(req.len >> 16),
                              (unsigned char)(req.len >> 8), (unsigned char)req.len, 0, 0, 0, 1, 1, 0};
    buf_add(frame, head, sizeof head);
    buf_add(frame, req.data, req.len);
    free(payload.data);
    free(req.data);
}

static int pb_read_varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
        if (*p >= end) return -1;
        unsigned char c = *(*p)++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (c < 0x80) return 0;
    }
    return -1;
}

/* The last field `number` of a message: its varint (kind 0) or bytes (kind 2). 1 found, 0 absent, -1 bad. */
static int pb_field(const unsigned char *p, const unsigned char *end, uint64_t number, uint64_t *value,
                    const unsigned char **bytes, size_t *len, int *kind) {
    int found = 0;
    while (p < end) {
        uint64_t key, v;
        if (pb_read_varint(&p, end, &key) < 0) return -1;
        int wire = (int)(key & 7);
        if (wire == 0) {
            if (pb_read_varint(&p, end, &v) < 0) return -1;
            if (key >> 3 == number) { found = 1; *kind = 0; *value = v; }
        } else if (wire == 2) {
            if (pb_read_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p)) return -1;
            if (key >> 3 == number) { found = 1; *kind = 2; *bytes = p; *len = (size_t)v; }
            p += v;
        } else if (wire == 1 || wire == 5) {
            size_t skip = wire == 1 ? 8 : 4;
            if (skip > (size_t)(end - p)) return -1;
            p += skip;
        } else {
            return -1;
        }
    }
    return found;
}

/* The status code of one whole ttrpc Response frame (claim.py decode_response); -1 if it is none. */
static int64_t claim_status(const unsigned char *frame, size_t len) {
    if (len < 10) return -1;
    uint32_t size = (uint32_t)frame[0] << 24 | (uint32_t)frame[1] << 16 | (uint32_t)frame[2] << 8 | frame[3];
    uint32_t stream = (uint32_t)frame[4] << 24 | (uint32_t)frame[5] << 16 | (uint32_t)frame[6] << 8 | frame[7];
    if (frame[8] != 2 || stream != 1 || size != len - 10) return -1;
    uint64_t v = 0;
    const unsigned char *status = NULL, *unused;
    size_t status_len = 0, n;
    int kind = -1;
    int found = pb_field(frame + 10, frame + len, 1, &v, &status, &status_len, &kind);
    if (found < 0 || (found && kind != 2)) return -1;
    if (!found) return 0;
    found = pb_field(status, status + status_len, 1, &v, &unused, &n, &kind);
    if (found < 0 || (found && kind != 0)) return -1;
    return found ? (int64_t)v : 0;
}

enum { CLAIM_GRANTED, CLAIM_REFUSED, CLAIM_ABSENT, CLAIM_UNSURE };

static int connect_unix(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) { errno = ENAMETOOLONG; return -1; }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

static void set_timeouts(int fd, int seconds) {
    struct timeval tv = {.tv_sec = seconds};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int send_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int recv_exact(int fd, unsigned char *out, size_t len) {
    while (len) {
        ssize_t n = recv(fd, out, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

static void claim_request(const char *task_id, struct buf *frame) {
    group_request(task_id, CLAIM_METHOD, CLAIM_TIMEOUT_NS, frame);
}

/* Call `method` of the Group service of the supervisor on `path` for `task_id` (claim.py ask, one
   attempt): Claim asks it to stay for the task, Release tells it containerd gave the task up. */
static int group_call(const char *path, const char *task_id, const char *method, uint64_t timeout_ns) {
    int fd = connect_unix(path);
    if (fd < 0) return errno == EAGAIN ? CLAIM_UNSURE : CLAIM_ABSENT; /* EAGAIN: a full backlog */
    set_timeouts(fd, (int)((timeout_ns + 999999999ULL) / 1000000000ULL));
    struct buf frame = {0};
    group_request(task_id, method, timeout_ns, &frame);
    int answer = CLAIM_UNSURE;
    unsigned char head[10];
    if (send_all(fd, frame.data, frame.len) == 0 && recv_exact(fd, head, sizeof head) == 0) {
        size_t size = (size_t)head[0] << 24 | (size_t)head[1] << 16 | (size_t)head[2] << 8 | head[3];
        if (size <= 1 << 16) {
            unsigned char *whole = malloc(size + 10);
            if (!whole) abort();
            memcpy(whole, head, 10);
            if (recv_exact(fd, whole + 10, size) == 0) {
                int64_t code = claim_status(whole, size + 10);
                answer = code == 0 ? CLAIM_GRANTED : code == 9 ? CLAIM_REFUSED : CLAIM_UNSURE;
            }
            free(whole);
        }
    }
    free(frame.data);
    close(fd);
    return answer;
}

static int claim(const char *path, const char *task_id) {
    return group_call(path, task_id, CLAIM_METHOD, CLAIM_TIMEOUT_NS);
}

/* ---- the node's template (template_client.py) --------------------------------------------------- */

struct stamp { long long newest; long count; };

/* template_client.code_stamp: the newest mtime (ns) and the count of the .py and .so files under `dir`,
   as os.walk lists them (symbolic links to folders are not entered; stat follows links to files). */
static void code_stamp(const char *dir, struct stamp *st) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct buf path = {0};
        buf_str(&path, dir);
        buf_str(&path, "/");
        buf_str(&path, e->d_name);
        struct stat s;
        int is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN || e->d_type == DT_LNK) is_dir = stat(path.data, &s) == 0 && S_ISDIR(s.st_mode);
        size_t n = strlen(e->d_name);
        if (is_dir) {
            if (e->d_type != DT_LNK) {
                struct stat l;
                if (lstat(path.data, &l) == 0 && !S_ISLNK(l.st_mode)) code_stamp(path.data, st);
            }
        } else if ((n >= 3 && !strcmp(e->d_name + n - 3, ".py")) || (n >= 3 && !strcmp(e->d_name + n - 3, ".so"))) {
            if (stat(path.data, &s) == 0) {
                long long ns = (long long)s.st_mtim.tv_sec * 1000000000LL + s.st_mtim.tv_nsec;
                if (ns > st->newest) st->newest = ns;
                st->count++;
            }
        }
        free(path.data);
    }
    closedir(d);
}

/* `<dir>/wasmvisor-template-<32 hex of sha256(address NUL command... NUL stamp)>`. */
static void template_path(const char *dir, const char *address, char *const *command, int ncommand,
                          const char *stamp, struct buf *out) {
    struct buf key = {0};
    buf_str(&key, address);
    for (int i = 0; i < ncommand; i++) { buf_add(&key, "", 1); buf_str(&key, command[i]); }
    buf_add(&key, "", 1);
    buf_str(&key, stamp);
    char hex[65];
    sha256_hex(key.data, key.len, hex);
    hex[32] = 0;
    buf_str(out, dir);
    buf_str(out, "/" TEMPLATE_PREFIX);
    buf_str(out, hex);
    free(key.data);
}

/* One template request (template_protocol.encode_request): length line, then NUL-separated MAGIC, cwd,
   the argument count, the arguments, and KEY=VALUE per variable of `env`. */
static void template_request(char *const *argv, int argc, char *const *env, const char *cwd, struct buf *out) {
    struct buf payload = {0};
    char count[24];
    snprintf(count, sizeof count, "%d", argc);
    buf_str(&payload, TEMPLATE_MAGIC);
    buf_add(&payload, "", 1); buf_str(&payload, cwd);
    buf_add(&payload, "", 1); buf_str(&payload, count);
    for (int i = 0; i < argc; i++) { buf_add(&payload, "", 1); buf_str(&payload, argv[i]); }
    for (char *const *e = env; *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || eq == *e) continue; /* os.environ holds only KEY=VALUE entries with a key */
        buf_add(&payload, "", 1);
        buf_str(&payload, *e);
    }
    char head[24];
    snprintf(head, sizeof head, "%zu\n", payload.len);
    buf_str(out, head);
    buf_add(out, payload.data, payload.len);
    free(payload.data);
}

/* ---- the command line (cliargs.py, the subset containerd passes) -------------------------------- */

struct args {
    const char *namespace, *address, *publish_binary, *id, *bundle, *action;
    int debug;
};

/* 0 when argv is containerd's `start` or `delete` command line as the rules above take it. */
static int parse_args(int argc, char **argv, struct args *a) {
    memset(a, 0, sizeof *a);
    a->address = a->publish_binary = a->bundle = "";
    for (int i = 1; i < argc; i++) {
        const char *w = argv[i];
        if (w[0] != '-' || !strcmp(w, "-")) {
            if (a->action) return -1;
            a->action = w;
            continue;
        }
        const char *name = w[1] == '-' ? w + 2 : w + 1;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        if (n == 5 && !strncmp(name, "debug", 5) && !eq) { a->debug = 1; continue; }
        static const char *const flags[] = {"namespace", "address", "publish-binary", "id", "bundle"};
        const char **slots[] = {&a->namespace, &a->address, &a->publish_binary, &a->id, &a->bundle};
        int known = -1;
        for (int f = 0; f < 5; f++)
            if (n == strlen(flags[f]) && !strncmp(name, flags[f], n)) known = f;
        if (known < 0) return -1;
        if (eq) *slots[known] = eq + 1;
        else if (i + 1 < argc) *slots[known] = argv[++i];
        else return -1;
    }
    if (!a->action || (strcmp(a->action, "start") && strcmp(a->action, "delete"))) return -1;
    if (!a->namespace || !a->namespace[0] || !a->id || !a->id[0]) return -1;
    return 0;
}

#define TASK_BUNDLES "io.containerd.runtime.v2.task"

/* Whether `bundle` is `.../io.containerd.runtime.v2.task/<ns>/<id>`: a task's bundle, not a sandbox's. */
static int task_bundle(const char *bundle) {
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", bundle);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(copy, '/');
        if (!slash || slash == copy) return 0;
        *slash = 0;
    }
    const char *name = strrchr(copy, '/');
    return name && !strcmp(name + 1, TASK_BUNDLES);
}

/* ---- handing over to Python --------------------------------------------------------------------- */

static char self_path[PATH_MAX];

/* The Python shim: `<this binary's real path>-python`. */
static const char *python_shim(void) {
    static char path[PATH_MAX + sizeof PYTHON_SUFFIX];
    if (!path[0]) {
        ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
        if (n <= 0) return NULL;
        self_path[n] = 0;
        snprintf(path, sizeof path, "%s%s", self_path, PYTHON_SUFFIX);
    }
    return path;
}

static const unsigned char *stdin_bytes;
static size_t stdin_len;

/* Exec the Python shim with our argv (and stdin, when this front read it). Never returns. */
static void fall_back(char **argv) {
    const char *script = python_shim();
    if (stdin_len) { /* put back what we read: Python reads stdin itself */
        int fd = memfd_create("wasmvisor-stdin", 0);
        if (fd >= 0 && write(fd, stdin_bytes, stdin_len) == (ssize_t)stdin_len && lseek(fd, 0, SEEK_SET) == 0) {
            dup2(fd, 0);
            if (fd != 0) close(fd);
        }
    }
    if (script) {
        argv[0] = (char *)script;
        execv(script, argv);
    }
    fprintf(stderr, "wasmvisor: cannot run the Python shim %s: %s\n", script ? script : "(unknown path)",
            strerror(errno));
    exit(1);
}

/* What the Python shim would name its command (start.shim_command: interpreter and script) and the
   wasmvisor package folder whose stamp names the template. -1 when the front cannot tell. */
static int python_command(const char *script, struct buf *interpreter, struct buf *package) {
    struct buf text = {0};
    int fd = open(script, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char head[4096];
    ssize_t n = read(fd, head, sizeof head - 1);
    close(fd);
    if (n < 3 || head[0] != '#' || head[1] != '!') return -1;
    head[n] = 0;
    buf_str(&text, head);
    char *line_end = strchr(text.data, '\n');
    if (!line_end) { free(text.data); return -1; }
    *line_end = 0;
    char *interp = text.data + 2;
    while (*interp == ' ' || *interp == '\t') interp++;
    size_t len = strcspn(interp, " \t");
    buf_add(interpreter, interp, len);
    /* The fast entry script (entry_script.py) names the folder that holds the package. */
    const char *marker = "\nsys.path.append('";
    char *at = strstr(line_end + 1, marker + 1) ;
    int rc = -1;
    if (at) {
        at += strlen(marker) - 1;
        char *quote = strchr(at, '\'');
        if (quote && !memchr(at, '\\', (size_t)(quote - at))) {
            buf_add(package, at, (size_t)(quote - at));
            buf_str(package, "/wasmvisor");
            rc = 0;
        }
    }
    free(text.data);
    if (rc < 0) {
        /* pip's console script (a wheel in a venv): the package is in that venv's site-packages */
        char pattern[PATH_MAX];
        snprintf(pattern, sizeof pattern, "%.*s/../lib/python3*/site-packages/wasmvisor",
                 (int)(strrchr(script, '/') - script), script);
        glob_t found = {0};
        if (glob(pattern, 0, NULL, &found) == 0 && found.gl_pathc == 1) {
            char real[PATH_MAX];
            if (realpath(found.gl_pathv[0], real)) { buf_str(package, real); rc = 0; }
        }
        globfree(&found);
        if (rc < 0) return -1; /* anything else: Python's call */
    }
    struct stat s;
    return interpreter->data[0] == '/' && stat(package->data, &s) == 0 && S_ISDIR(s.st_mode) ? 0 : -1;
}

/* ---- start ---------------------------------------------------------------------------------------- */

static int write_address(const char *bundle, const char *address) {
    char tmp[PATH_MAX], final[PATH_MAX];
    snprintf(final, sizeof final, "%s/address", bundle);
    snprintf(tmp, sizeof tmp, "%s/.address.%d.0.tmp", bundle, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    size_t len = strlen(address);
    if (write(fd, address, len) != (ssize_t)len || fchmod(fd, 0600) < 0 || close(fd) < 0 || rename(tmp, final) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int answer(const char *bundle, const char *path) {
    struct buf address = {0};
    buf_str(&address, "unix://");
    buf_str(&address, path);
    if (write_address(bundle, address.data) < 0) return -1;
    if (fwrite(address.data, 1, address.len, stdout) != address.len || fflush(stdout) != 0) return -1;
    return 0;
}

static int template_enabled(void) {
    const char *v = getenv("WASMVISOR_TEMPLATE");
    if (!v) return 1;
    return strcmp(v, "0") && strcmp(v, "false") && strcmp(v, "no") && strcmp(v, "off");
}

/* Bind and listen on `path` (0600), as start.bind_unless_served does once it found nothing serving. */
static int bind_socket(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) return -1;
    strcpy(addr.sun_path, path);
    if (unlink(path) < 0 && errno != ENOENT) return -1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    umask(old);
    if (rc < 0) { close(fd); return -1; }
    if (chmod(path, 0600) < 0 || listen(fd, 128) < 0) { close(fd); unlink(path); return -1; }
    return fd;
}

/* The `serve` command line start.daemon_command builds (cliargs.to_argv, then the action). */
static int serve_argv(const struct args *a, const char *bundle, const char *group, const char *path, char **out) {
    int n = 0;
    out[n++] = "-namespace"; out[n++] = (char *)a->namespace;
    out[n++] = "-address"; out[n++] = (char *)a->address;
    out[n++] = "-publish-binary"; out[n++] = (char *)a->publish_binary;
    out[n++] = "-id"; out[n++] = (char *)a->id;
    if (bundle[0]) { out[n++] = "-bundle"; out[n++] = (char *)bundle; }
    if (group[0]) { out[n++] = "-group"; out[n++] = (char *)group; }
    out[n++] = "-socket"; out[n++] = (char *)path;
    out[n++] = "-socket-fd"; out[n++] = "3";
    if (a->debug) out[n++] = "-debug";
    out[n++] = "serve";
    out[n] = NULL;
    return n;
}

/* Ask the template to fork the group's supervisor with `listener` as its socket: 0 when it did. */
static int from_template(const struct args *a, const char *dir, const char *bundle, const char *group,
                         const char *path, int listener) {
    struct buf interpreter = {0}, package = {0}, tpath = {0}, request = {0};
    const char *script = python_shim();
    int rc = -1, fd = -1;
    if (!script || python_command(script, &interpreter, &package) < 0) goto out;
    struct stamp st = {0, 0};
    code_stamp(package.data, &st);
    char stamp[64];
    snprintf(stamp, sizeof stamp, "%lld.%ld", st.newest, st.count);
    char *command[2] = {interpreter.data, (char *)script};
    template_path(dir, a->address, command, 2, stamp, &tpath);
    fd = connect_unix(tpath.data);
    if (fd < 0) goto out; /* no template: Python launches one */
    set_timeouts(fd, TEMPLATE_REPLY_SECONDS);
    char *argv[24];
    int argc = serve_argv(a, bundle, group, path, argv);
    template_request(argv, argc, environ, bundle, &request);
    char control[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {.iov_base = request.data, .iov_len = request.len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &listener, sizeof(int));
    ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (sent < 0 || send_all(fd, request.data + sent, request.len - (size_t)sent) < 0) goto out;
    char reply[256];
    size_t got = 0;
    while (got < sizeof reply - 1 && (got == 0 || reply[got - 1] != '\n')) {
        ssize_t n = recv(fd, reply + got, sizeof reply - 1 - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) goto out;
        got += (size_t)n;
    }
    reply[got] = 0;
    char *end;
    if (strncmp(reply, "pid ", 4) == 0 && strtol(reply + 4, &end, 10) > 0 && *end == '\n') rc = 0;
out:
    if (fd >= 0) close(fd);
    free(interpreter.data); free(package.data); free(tpath.data); free(request.data);
    return rc;
}

static int read_stdin(void) {
    struct stat s;
    if (fstat(0, &s) < 0) return 0;
    if (isatty(0)) return 0;
    struct buf in = {0};
    char chunk[8192];
    for (;;) {
        ssize_t n = read(0, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        buf_add(&in, chunk, (size_t)n);
    }
    stdin_bytes = (const unsigned char *)in.data;
    stdin_len = in.len;
    return 0;
}

static void start(struct args *a, char **argv) {
    read_stdin();
    if (stdin_len || getenv("WASMVISOR_PROTOCOL")) fall_back(argv);
    if (!a->address[0] && getenv("GRPC_ADDRESS")) a->address = getenv("GRPC_ADDRESS");
    char bundle[PATH_MAX];
    if (!getcwd(bundle, sizeof bundle) || !task_bundle(bundle)) fall_back(argv);
    struct buf group = {0}, path = {0};
    if (group_of(bundle, a->id, &group) < 0) fall_back(argv);
    const char *dir = getenv("WASMVISOR_SOCKET_DIR");
    if (!dir || !dir[0]) dir = DEFAULT_SOCKET_DIR;
    if (socket_path(a->address, a->namespace, group.data, dir, &path) < 0) fall_back(argv);
    int first = claim(path.data, a->id);
    if (first == CLAIM_GRANTED) {
        if (answer(bundle, path.data) < 0) fall_back(argv);
        exit(0);
    }
    if (first == CLAIM_UNSURE || !template_enabled()) fall_back(argv);
    /* Launch, as start._reuse_or_launch does: under the socket directory's lock (released by exec). */
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) fall_back(argv);
    int lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lock < 0 || flock(lock, LOCK_EX) < 0) fall_back(argv);
    int again = claim(path.data, a->id);
    if (again == CLAIM_GRANTED) {
        close(lock);
        if (answer(bundle, path.data) < 0) fall_back(argv);
        exit(0);
    }
    if (again == CLAIM_UNSURE) fall_back(argv);
    int listener = bind_socket(path.data);
    if (listener < 0) fall_back(argv);
    if (from_template(a, dir, bundle, group.data, path.data, listener) < 0) fall_back(argv);
    close(listener);
    close(lock);
    if (answer(bundle, path.data) < 0) fall_back(argv);
    exit(0);
}

/* ---- delete ----------------------------------------------------------------------------------------- */

/* leftover_cgroup.cgroup_path: the cgroup path for the default and absolute forms; NULL otherwise. */
static int cgroup_path(const char *given, const char *ns, const char *id, struct buf *out) {
    struct buf path = {0};
    if (given && given[0]) buf_str(&path, given);
    else { buf_str(&path, "/"); buf_str(&path, ns); buf_str(&path, "/"); buf_str(&path, id); }
    int rc = -1;
    if (path.data[0] == '/' && !strchr(path.data, ':')) {
        int parts = 0;
        rc = 0;
        for (char *part = strtok(path.data, "/"); part; part = strtok(NULL, "/")) {
            if (!strcmp(part, ".")) continue;
            if (!strcmp(part, "..")) { rc = -1; break; }
            buf_str(out, "/");
            buf_str(out, part);
            parts++;
        }
        if (!parts) rc = -1;
    }
    free(path.data);
    return rc;
}

static int is_dir(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

/* leftover_cgroup.may_exist: 0 when no folder of the task's cgroup can be left under `root`, 1 when one
   may be (or the front cannot tell). */
static int cgroup_may_exist(const char *bundle, const char *ns, const char *id, const char *root) {
    struct buf path = {0}, raw = {0};
    buf_str(&path, bundle);
    buf_str(&path, "/config.json");
    int rc = read_file(path.data, &raw, 64 << 20);
    free(path.data);
    if (rc < 0) { free(raw.data); return errno == ENOENT ? 0 : 1; }
    int result = 1;
    struct json j;
    static const char *const linux_key[] = {"linux"};
    static const char *const cgroups_key[] = {"linux", "cgroupsPath"};
    struct buf relative = {0}, probe = {0};
    if (!memmem(raw.data, raw.len, "\"linux\"", 7)) { result = 0; goto out; }
    if (json_lookup(&raw, NULL, 0, &j) < 0) goto out;
    if (j.kind != J_OBJECT) { result = 0; goto out; }
    if (json_lookup(&raw, linux_key, 1, &j) < 0) goto out;
    if (j.kind == J_MISSING) { result = 0; goto out; }
    if (j.kind != J_OBJECT && j.kind != J_NULL) goto out;
    char *given = NULL;
    if (j.kind == J_OBJECT) {
        if (json_lookup(&raw, cgroups_key, 2, &j) < 0) goto out;
        if (j.kind == J_STRING) {
            if (j.escaped) goto out;
            given = strndup(j.str, j.str_len);
        } else if (j.kind != J_MISSING && j.kind != J_NULL) {
            goto out;
        }
    }
    rc = cgroup_path(given, ns, id, &relative);
    free(given);
    if (rc < 0) goto out;
    buf_str(&probe, root);
    buf_str(&probe, relative.data);
    if (is_dir(probe.data)) goto out;
    DIR *d = opendir(root);
    if (!d) goto out;
    struct dirent *e;
    result = 0;
    while ((e = readdir(d)) && !result) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        probe.len = 0;
        buf_str(&probe, root);
        buf_str(&probe, "/");
        buf_str(&probe, e->d_name);
        buf_str(&probe, relative.data);
        result = is_dir(probe.data);
    }
    closedir(d);
out:
    free(raw.data); free(relative.data); free(probe.data);
    return result;
}

/* Whether anything may be mounted at or under `path` (any line of mountinfo naming it counts). */
static int mounted_under(const char *path) {
    char real[PATH_MAX];
    if (!realpath(path, real)) return errno == ENOENT ? 0 : 1;
    if (strpbrk(real, " \t\n\\")) return 1; /* escaped in mountinfo: Python's call */
    struct buf table = {0};
    if (read_file("/proc/self/mountinfo", &table, 64 << 20) < 0) { free(table.data); return 1; }
    size_t n = strlen(real);
    int found = 0;
    for (const char *at = table.data; (at = memmem(at, table.len - (size_t)(at - table.data), real, n)); at += n) {
        if (at > table.data && at[-1] == ' ' && (at[n] == ' ' || at[n] == '/')) { found = 1; break; }
    }
    free(table.data);
    return found;
}

static void delete(struct args *a, char **argv) {
    char cwd[PATH_MAX];
    const char *bundle = a->bundle;
    if (!bundle[0]) {
        if (!getcwd(cwd, sizeof cwd)) fall_back(argv);
        bundle = cwd;
    }
    if (!task_bundle(bundle)) fall_back(argv);
    struct buf path = {0};
    buf_str(&path, bundle);
    buf_str(&path, "/init.pid");
    struct stat s;
    int task_left = lstat(path.data, &s) == 0 || errno != ENOENT;
    path.len = 0;
    buf_str(&path, bundle);
    buf_str(&path, "/rootfs");
    if (task_left || mounted_under(path.data) || cgroup_may_exist(bundle, a->namespace, a->id, CGROUP_ROOT))
        fall_back(argv);
    /* delete.release_group_claim: tell the group's supervisor, if one listens, that containerd gave the
       task up, so one left with nothing ends (its answer does not change ours). gRPC: Python. */
    if (getenv("WASMVISOR_PROTOCOL")) fall_back(argv);
    if (!a->address[0] && getenv("GRPC_ADDRESS")) a->address = getenv("GRPC_ADDRESS");
    struct buf group = {0}, socket = {0};
    if (group_of(bundle, a->id, &group) < 0) fall_back(argv);
    const char *dir = getenv("WASMVISOR_SOCKET_DIR");
    if (!dir || !dir[0]) dir = DEFAULT_SOCKET_DIR;
    if (socket_path(a->address, a->namespace, group.data, dir, &socket) < 0) fall_back(argv);
    group_call(socket.data, a->id, RELEASE_METHOD, RELEASE_TIMEOUT_NS);
    exit(0); /* the empty DeleteResponse: zero bytes */
}

/* ---- --front-check: the shared vectors (tests/unit/supervisor/shim/test_front_vectors.py) ---------- */

static void print_hex(const struct buf *b) {
    for (size_t i = 0; i < b->len; i++) printf("%02x", (unsigned char)b->data[i]);
    printf("\n");
}

static int check(int argc, char **argv) {
    const char *kind = argc > 2 ? argv[2] : "";
    struct buf out = {0};
    if (!strcmp(kind, "socket-path") && argc == 7) {
        if (socket_path(argv[3], argv[4], argv[5], argv[6], &out) < 0) printf("too long\n");
        else printf("%s\n", out.data);
    } else if (!strcmp(kind, "group") && argc == 5) {
        if (group_of(argv[3], argv[4], &out) < 0) printf("python\n");
        else printf("%s\n", out.data);
    } else if (!strcmp(kind, "claim-request") && argc == 4) {
        claim_request(argv[3], &out);
        print_hex(&out);
    } else if (!strcmp(kind, "release-request") && argc == 4) {
        group_request(argv[3], RELEASE_METHOD, RELEASE_TIMEOUT_NS, &out);
        print_hex(&out);
    } else if (!strcmp(kind, "claim-status") && argc == 4) {
        size_t n = strlen(argv[3]) / 2;
        unsigned char *raw = malloc(n + 1);
        for (size_t i = 0; i < n; i++) sscanf(argv[3] + 2 * i, "%2hhx", &raw[i]);
        printf("%lld\n", (long long)claim_status(raw, n));
        free(raw);
    } else if (!strcmp(kind, "template-path") && argc >= 7) {
        template_path(argv[3], argv[4], argv + 6, argc - 6, argv[5], &out);
        printf("%s\n", out.data);
    } else if (!strcmp(kind, "code-stamp") && argc == 4) {
        struct stamp st = {0, 0};
        code_stamp(argv[3], &st);
        printf("%lld.%ld\n", st.newest, st.count);
    } else if (!strcmp(kind, "template-request") && argc >= 5) {
        /* CWD ARGC ARGS... ENV... */
        int n = atoi(argv[4]);
        if (n < 0 || 5 + n > argc) return 2;
        template_request(argv + 5, n, argv + 5 + n, argv[3], &out);
        print_hex(&out);
    } else if (!strcmp(kind, "serve-argv") && argc >= 6) {
        /* BUNDLE GROUP PATH, then containerd's start argv (without the program name) */
        struct args a;
        int nwords = argc - 6;
        char **shifted = calloc((size_t)nwords + 2, sizeof(char *));
        if (!shifted) abort();
        shifted[0] = argv[0];
        memcpy(shifted + 1, argv + 6, sizeof(char *) * (size_t)nwords);
        if (parse_args(nwords + 1, shifted, &a) < 0) {
            printf("python\n");
        } else {
            char *serve[24];
            serve_argv(&a, argv[3], argv[4], argv[5], serve);
            for (char **w = serve; *w; w++) printf("%s\n", *w);
        }
        free(shifted);
    } else if (!strcmp(kind, "cgroup-may-exist") && argc == 7) {
        printf("%s\n", cgroup_may_exist(argv[3], argv[4], argv[5], argv[6]) ? "yes" : "no");
    } else if (!strcmp(kind, "python-command") && argc == 3) {
        struct buf interp = {0}, package = {0};
        const char *script = python_shim();
        if (!script || python_command(script, &interp, &package) < 0) printf("unknown\n");
        else printf("%s\n%s\n%s\n", interp.data, script, package.data);
    } else {
        fprintf(stderr, "usage: %s --front-check KIND ARGS...\n", argv[0]);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--front-check")) return check(argc, argv);
    struct args a;
    if (parse_args(argc, argv, &a) < 0) fall_back(argv);
    if (!strcmp(a.action, "start")) start(&a, argv);
    delete(&a, argv);
    return 0;
}
