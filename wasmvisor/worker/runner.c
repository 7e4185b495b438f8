/* wasmvisor-runner: runs a plain WASI preview 1 core module for a wasm worker, in place of the Python
 * worker, which execs it at StartGuest once it has built and sealed the container (worker/runner_exec.py,
 * docs/internals.md "The compiled runner"). The worker's Python heap, arenas and interpreter state
 * (~5 MB private a guest) are gone with the exec; what stays is wasmtime's C API and this file.
 *
 * How it is started: the worker's cwd is the node's root (an fd it kept across pivot_root), and it
 * execveat()s the node's dynamic loader through an fd with `--library-path` of cwd-relative folders
 * and this binary's cwd-relative path. Here: dlopen wasmtime's library by its cwd-relative path,
 * deserialize the compiled module the worker loaded from the node's module cache, chdir("/") (the
 * container's root), link WASI, instantiate, install the guest's seccomp filter, call `_start`, and
 * report `Exited` on the channel fd as the Python worker would (worker/guest_run.py serve_start).
 *
 * The plan comes on an fd (a memfd the worker wrote; the guest's env must not be in /proc/PID/cmdline),
 * NUL-separated: a key, then its value; `signal` and `env` and `arg` repeat, `preopen` has three values
 * (container path, guest path, "1" writable or "0"). Test modes print what this file computes:
 *   --check-exited CODE AT_NS NOTE I0 I1 R1   the Exited line (tests/unit/worker/runner_vectors.json)
 *   --check-one-line MESSAGE                  a wasmtime error as one line (engines/wasmtime_wasi.py one_line)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TRAP_EXIT_CODE 137
#define NOTE_LIMIT 2000
#define PROTOCOL_VERSION 2
#define MAX_ITEMS 4096

/* The C API's types, as wasmtime-py's bindings of the same version lay them out. */
typedef struct { size_t size; char *data; } byte_vec;
typedef struct { uint64_t store_id; void *private_; } wt_func;
typedef struct { uint64_t store_id; size_t private_; } wt_instance;
typedef struct { uint8_t kind; uint8_t pad_[7]; union { wt_func func; uint8_t any[32]; } of; } wt_extern;
#define EXTERN_FUNC 0

typedef struct {
    void *(*engine_new)(void);
    void *(*module_deserialize_file)(void *, const char *, void **);
    void *(*module_deserialize)(void *, const uint8_t *, size_t, void **);
    void *(*store_new)(void *, void *, void (*)(void *));
    void *(*store_context)(void *);
    void (*store_limiter)(void *, int64_t, int64_t, int64_t, int64_t, int64_t);
    void *(*wasi_config_new)(void);
    int (*wasi_set_argv)(void *, size_t, const char **);
    int (*wasi_set_env)(void *, size_t, const char **, const char **);
    int (*wasi_preopen_dir)(void *, const char *, const char *, int);
    void (*wasi_inherit_stdin)(void *), (*wasi_inherit_stdout)(void *), (*wasi_inherit_stderr)(void *);
    void *(*context_set_wasi)(void *, void *);
    void *(*linker_new)(void *);
    void *(*linker_define_wasi)(void *);
    void *(*linker_instantiate)(void *, void *, void *, wt_instance *, void **);
    int (*instance_export_get)(void *, wt_instance *, const char *, size_t, wt_extern *);
    void *(*func_call)(void *, wt_func *, void *, size_t, void *, size_t, void **);
    int (*error_exit_status)(void *, int *);
    void (*error_message)(void *, byte_vec *);
    void (*trap_message)(void *, byte_vec *);
} api_t;
static api_t api;

static int channel_fd = -1;
static char source[4096] = "guest";

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the Exited line (messages.encode: orjson, keys in field order) ---- */

typedef struct { char *p; size_t len, cap; } buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) n = b->cap - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }
static void put_int(buf *b, int64_t v) {  /* async-signal-safe: no stdio */
    char tmp[24];
    int i = sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)-v : (uint64_t)v;
    do { tmp[--i] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) tmp[--i] = '-';
    put(b, tmp + i, sizeof tmp - i);
}
/* A JSON string as orjson writes it: ", \ and control characters escaped, other bytes as they are. */
static void put_json_string(buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
        if (c == '"' || c == '\\') { esc[1] = (char)c; put(b, esc, 2); }
        else if (c == '\n') put(b, "\\n", 2);
        else if (c == '\r') put(b, "\\r", 2);
        else if (c == '\t') put(b, "\\t", 2);
        else if (c == '\b') put(b, "\\b", 2);
        else if (c == '\f') put(b, "\\f", 2);
        else if (c < 0x20) {
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            put(b, esc, 6);
        } else put(b, (const char *)&c, 1);
    }
    put(b, "\"", 1);
}

/* `phases` NULL: none (a signal's end, as worker/main.py _end_on_signal sends it). */
static size_t exited_line(char *out, size_t cap, int code, int64_t at_ns, const char *note, size_t note_len,
                          const int64_t *phases) {
    buf b = {out, 0, cap - 1};
    puts_(&b, "{\"v\":"); put_int(&b, PROTOCOL_VERSION);
    puts_(&b, ",\"kind\":\"exited\",\"code\":"); put_int(&b, code);
    puts_(&b, ",\"at_ns\":"); put_int(&b, at_ns);
    puts_(&b, ",\"note\":"); put_json_string(&b, note, note_len);
    puts_(&b, ",\"phases\":{");
    if (phases) {
        puts_(&b, "\"instantiate\":["); put_int(&b, phases[0]); puts_(&b, ","); put_int(&b, phases[1]);
        puts_(&b, "],\"run\":["); put_int(&b, phases[1]); puts_(&b, ","); put_int(&b, phases[2]); puts_(&b, "]");
    }
    puts_(&b, "}}\n");
    return b.len;
}

static void send_all(const char *p, size_t n) {
    while (n > 0 && channel_fd >= 0) {
        ssize_t w = send(channel_fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;  /* the supervisor is gone: nobody to tell */
        p += w; n -= (size_t)w;
    }
}

static char line_buf[NOTE_LIMIT * 6 + 512];

#define DRAIN_LIMIT_NS 1000000000LL /* worker/stdio.py DRAIN_SECONDS */

/* As worker/stdio.py wait_drained: until what the guest wrote to an output FIFO has been read, at most
 * DRAIN_LIMIT_NS, before the exit is reported (ioctl FIONREAD, fstat and nanosleep pass the guest's
 * filter; a refusal just ends the wait). */
static void wait_drained(void) {
    int64_t deadline = now_ns() + DRAIN_LIMIT_NS;
    for (int fd = 1; fd <= 2; fd++) {
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) continue;
        int unread = 0;
        while (ioctl(fd, FIONREAD, &unread) == 0 && unread > 0 && now_ns() < deadline) {
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
        }
    }
}

static void report(int code, const char *note, size_t note_len, const int64_t *phases) {
    int64_t at = now_ns();
    wait_drained();
    send_all(line_buf, exited_line(line_buf, sizeof line_buf, code, at, note, note_len, phases));
}

/* ---- a wasmtime error as one line (engines/wasmtime_wasi.py one_line) ---- */

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\f' || *s == '\v') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\f' || e[-1] == '\v')) *--e = 0;
    return s;
}

static void join_words(buf *b, const char *s) {  /* ' '.join(s.split()) */
    int first = 1;
    while (*s) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) break;
        const char *w = s;
        while (*s && *s != ' ' && *s != '\t') s++;
        if (!first) put(b, " ", 1);
        put(b, w, (size_t)(s - w));
        first = 0;
    }
}

static size_t one_line(const char *message, char *out, size_t cap) {
    char *copy = strdup(message);
    char *lines[MAX_ITEMS];
    size_t n = 0, at = (size_t)-1;
    buf b = {out, 0, cap - 1};
    if (!copy) return 0;
    char *text = trim(copy);
    while (*text == '\n') text++;  /* message.strip() then splitlines() */
    for (char *s = text; n < MAX_ITEMS;) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        lines[n] = trim(s);
        if (at == (size_t)-1 && strcmp(lines[n], "Caused by:") == 0) at = n;
        n++;
        if (!nl) break;
        s = nl + 1;
    }
    while (n > 0 && !*lines[n - 1]) n--;
    int started = 0;
    if (at == (size_t)-1) {
        for (size_t i = 0; i < n; i++) {
            if (!*lines[i]) continue;
            if (started) puts_(&b, "; ");
            puts_(&b, lines[i]);
            started = 1;
        }
    } else {
        int backtrace = strncmp(lines[0], "error while executing at wasm backtrace",
                                strlen("error while executing at wasm backtrace")) == 0;
        if (!backtrace) { puts_(&b, lines[0]); started = 1; }
        for (size_t i = at + 1; i < n; i++) {
            const char *c = lines[i];
            if (!*c) continue;
            const char *colon = strstr(c, ": ");
            if (c[0] >= '0' && c[0] <= '9' && colon) c = colon + 2;
            if (started) puts_(&b, ": ");
            puts_(&b, c);
            started = 1;
        }
        if (backtrace) {
            for (size_t i = 1; i < at; i++) {
                if (!*lines[i]) continue;
                const char *frame = strchr(lines[i], ':');
                char *f = strdup(frame ? frame + 1 : lines[i]);
                if (f) {
                    puts_(&b, " (at ");
                    join_words(&b, trim(f));
                    puts_(&b, ")");
                    free(f);
                }
                break;
            }
        }
    }
    free(copy);
    out[b.len] = 0;
    return b.len;
}

/* ---- the guest's end ---- */

static char note_buf[65536 + 4096 + 64];  /* a whole note, then cut to NOTE_LIMIT */
static char text_buf[65536];

/* Python's LastWords keeps NOTE_LIMIT characters: here bytes, cut at a UTF-8 boundary. */
static size_t cut_note(const char *s, size_t n) {
    if (n <= NOTE_LIMIT) return n;
    n = NOTE_LIMIT;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    return n;
}

static size_t trap_note(const char *message) {
    one_line(message, text_buf, sizeof text_buf);
    int n = snprintf(note_buf, sizeof note_buf, "guest %s trapped: %s", source, text_buf);
    size_t len = n < 0 ? 0 : ((size_t)n >= sizeof note_buf ? sizeof note_buf - 1 : (size_t)n);
    return cut_note(note_buf, len);
}

static char *vec_text(byte_vec *v, int nul_terminated) {
    size_t n = v->size;
    if (nul_terminated && n > 0 && v->data[n - 1] == 0) n--;
    char *s = malloc(n + 1);
    if (!s) return strdup("");
    memcpy(s, v->data, n);
    s[n] = 0;
    return s;
}

/* The code and the note for an error or a trap of instantiate or the call (run_to_exit's rules). */
static int outcome(void *error, void *trap, char **message) {
    byte_vec v = {0, NULL};
    *message = NULL;
    if (error) {
        int status = 0;
        if (api.error_exit_status(error, &status)) return status & 0xFF;
        api.error_message(error, &v);
        *message = vec_text(&v, 0);
        return TRAP_EXIT_CODE;
    }
    if (trap) {
        api.trap_message(trap, &v);
        *message = vec_text(&v, 1);
        return TRAP_EXIT_CODE;
    }
    return 0;
}

/* A setup failure the Python worker would report as its guest failing: its log line is lost with the log
 * FIFO (closed before the exec), so it goes in the note, and the code is TRAP_EXIT_CODE. */
static void fail(const char *what, const char *detail) {
    int n = snprintf(note_buf, sizeof note_buf, "guest %s failed: runner: %s%s%s", source, what,
                     detail ? ": " : "", detail ? detail : "");
    report(TRAP_EXIT_CODE, note_buf, cut_note(note_buf, n < 0 ? 0 : (size_t)n), NULL);
    _exit(TRAP_EXIT_CODE);
}

static char signal_line[256];

static void on_signal(int sig) {  /* PID 1 of a pid namespace: as worker/main.py _end_on_signal */
    if (sig == SIGCONT || sig == SIGWINCH) return;
    send_all(signal_line, exited_line(signal_line, sizeof signal_line, 128 + sig, now_ns(), "", 0, NULL));
    _exit(128 + sig);
}

/* ---- the plan ---- */

typedef struct {
    const char *lib, *module, *func, *title;
    int argv_prefix, module_fd, filter_fd, filter_flags, nsignals, nenv, nargs, npreopens;
    int64_t memory, started;
    int signals[64];
    const char *env_names[MAX_ITEMS], *env_values[MAX_ITEMS], *args[MAX_ITEMS];
    const char *preopens[MAX_ITEMS][3];
} plan_t;

static plan_t plan;

static char *read_fd(int fd, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *data = malloc(cap);
    for (;;) {
        if (!data) return NULL;
        ssize_t r = read(fd, data + n, cap - n - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
        if (n + 1 >= cap) data = realloc(data, cap *= 2);
    }
    data[n] = 0;
    *len = n;
    return data;
}

static void read_plan(int fd) {
    size_t len;
    char *data = read_fd(fd, &len);
    close(fd);
    if (!data) fail("cannot read the plan", strerror(errno));
    plan.module_fd = plan.filter_fd = -1;
    plan.func = "_start";
    const char *items[MAX_ITEMS * 4];
    size_t n = 0;
    for (size_t i = 0; i < len && n < sizeof items / sizeof *items; i += strlen(data + i) + 1) items[n++] = data + i;
    for (size_t i = 0; i < n;) {
        const char *key = items[i++];
        size_t want = strcmp(key, "preopen") == 0 ? 3 : 1;
        if (i + want > n) fail("plan: no value for", key);
        const char *v = items[i];
        if (!strcmp(key, "lib")) plan.lib = v;
        else if (!strcmp(key, "module")) plan.module = v;
        else if (!strcmp(key, "module-fd")) plan.module_fd = atoi(v);
        else if (!strcmp(key, "channel")) channel_fd = atoi(v);
        else if (!strcmp(key, "filter-fd")) plan.filter_fd = atoi(v);
        else if (!strcmp(key, "filter-flags")) plan.filter_flags = atoi(v);
        else if (!strcmp(key, "memory")) plan.memory = atoll(v);
        else if (!strcmp(key, "started")) plan.started = atoll(v);
        else if (!strcmp(key, "func")) plan.func = v;
        else if (!strcmp(key, "title")) plan.title = v;
        else if (!strcmp(key, "argv-prefix")) plan.argv_prefix = atoi(v);
        else if (!strcmp(key, "source")) snprintf(source, sizeof source, "%s", v);
        else if (!strcmp(key, "signal") && plan.nsignals < 64) plan.signals[plan.nsignals++] = atoi(v);
        else if (!strcmp(key, "env") && plan.nenv < MAX_ITEMS) {
            char *eq = strchr(v, '=');
            if (eq) *eq = 0;
            plan.env_names[plan.nenv] = v;
            plan.env_values[plan.nenv++] = eq ? eq + 1 : "";
        } else if (!strcmp(key, "arg") && plan.nargs < MAX_ITEMS) plan.args[plan.nargs++] = v;
        else if (!strcmp(key, "preopen") && plan.npreopens < MAX_ITEMS) {
            for (int k = 0; k < 3; k++) plan.preopens[plan.npreopens][k] = items[i + k];
            plan.npreopens++;
        } else fail("plan: unknown key", key);
        i += want;
    }
    if (!plan.lib || !plan.module || channel_fd < 0) fail("plan: lib, module and channel are required", NULL);
}

/* ---- set-up ---- */

static void load_api(void) {
    void *lib = dlopen(plan.lib, RTLD_NOW | RTLD_LOCAL);
    if (!lib) fail("cannot load wasmtime", dlerror());
    static const struct { const char *name; size_t offset; } syms[] = {
#define SYM(field, name) {name, offsetof(api_t, field)}
        SYM(engine_new, "wasm_engine_new"),
        SYM(module_deserialize_file, "wasmtime_module_deserialize_file"),
        SYM(module_deserialize, "wasmtime_module_deserialize"),
        SYM(store_new, "wasmtime_store_new"),
        SYM(store_context, "wasmtime_store_context"),
        SYM(store_limiter, "wasmtime_store_limiter"),
        SYM(wasi_config_new, "wasi_config_new"),
        SYM(wasi_set_argv, "wasi_config_set_argv"),
        SYM(wasi_set_env, "wasi_config_set_env"),
        SYM(wasi_preopen_dir, "wasi_config_preopen_dir"),
        SYM(wasi_inherit_stdin, "wasi_config_inherit_stdin"),
        SYM(wasi_inherit_stdout, "wasi_config_inherit_stdout"),
        SYM(wasi_inherit_stderr, "wasi_config_inherit_stderr"),
        SYM(context_set_wasi, "wasmtime_context_set_wasi"),
        SYM(linker_new, "wasmtime_linker_new"),
        SYM(linker_define_wasi, "wasmtime_linker_define_wasi"),
        SYM(linker_instantiate, "wasmtime_linker_instantiate"),
        SYM(instance_export_get, "wasmtime_instance_export_get"),
        SYM(func_call, "wasmtime_func_call"),
        SYM(error_exit_status, "wasmtime_error_exit_status"),
        SYM(error_message, "wasmtime_error_message"),
        SYM(trap_message, "wasm_trap_message"),
#undef SYM
    };
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
        void *f = dlsym(lib, syms[i].name);
        if (!f) fail("wasmtime lacks", syms[i].name);
        memcpy((char *)&api + syms[i].offset, &f, sizeof f);
    }
}

static void *check(void *error, const char *what) {
    if (error) {
        char *message;
        outcome(error, NULL, &message);
        fail(what, message);
    }
    return NULL;
}

/* The module the worker loaded from the module cache: by its path when this process may read it (the
 * file's pages are then mapped and shared with every worker running it), else from the fd it opened
 * before it changed its identity (a private copy of the code). */
static void *load_module(void *engine) {
    void *module = NULL;
    if (access(plan.module, R_OK) == 0 && api.module_deserialize_file(engine, plan.module, &module) == NULL)
        return module;
    struct stat st;
    if (plan.module_fd < 0 || fstat(plan.module_fd, &st) != 0) fail("cannot read the compiled module", plan.module);
    void *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, plan.module_fd, 0);
    if (data == MAP_FAILED) fail("cannot map the compiled module", strerror(errno));
    check(api.module_deserialize(engine, data, (size_t)st.st_size, &module), "cannot load the compiled module");
    munmap(data, (size_t)st.st_size);
    return module;
}

static void install_filter(void) {
    if (plan.filter_fd < 0) return;
    size_t len;
    char *program = read_fd(plan.filter_fd, &len);
    close(plan.filter_fd);
    if (!program || len == 0 || len % sizeof(struct sock_filter)) fail("bad seccomp filter", NULL);
    struct sock_fprog prog = {(unsigned short)(len / sizeof(struct sock_filter)), (struct sock_filter *)program};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("PR_SET_NO_NEW_PRIVS", strerror(errno));
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, plan.filter_flags, &prog) != 0)
        fail("installing the seccomp filter", strerror(errno));
}

static void handle_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < plan.nsignals; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigfillset(&sa.sa_mask);
        sigaction(plan.signals[i], &sa, NULL);
        sigaddset(&set, plan.signals[i]);
    }
    sigprocmask(SIG_UNBLOCK, &set, NULL);  /* those queued while the worker exec'd arrive now */
}

/* The loader's argv[0] is the worker's title (`wasmvisor-worker NS/ID`, which `ps`, `wasmvisor ps` and the
 * shim's `delete` look for); the loader's other arguments and this program's follow it in one block of
 * memory, `argv-prefix` bytes of them before argv[0]. Blank all but the title, as setproctitle would. */
static void keep_title(char **argv, int argc) {
    if (!plan.title || plan.argv_prefix <= 0) return;
    char *start = argv[0] - plan.argv_prefix;
    size_t len = strlen(plan.title);
    if (strncmp(start, plan.title, len) != 0 || start[len] != 0) return;
    char *end = argv[argc - 1] + strlen(argv[argc - 1]);
    memset(start + len, 0, (size_t)(end - start) - len);
}

static int run(void) {
    prctl(PR_SET_NAME, "wasmvisor-run", 0, 0, 0);
    handle_signals();
    load_api();
    void *engine = api.engine_new();
    if (!engine) fail("wasm_engine_new failed", NULL);
    void *module = load_module(engine);
    if (plan.module_fd >= 0) close(plan.module_fd);
    if (chdir("/") != 0) fail("chdir /", strerror(errno));  /* leave the node's root: the container's now */

    void *store = api.store_new(engine, NULL, NULL);
    void *ctx = api.store_context(store);
    if (plan.memory > 0) api.store_limiter(store, plan.memory, -1, -1, -1, -1);
    void *wasi = api.wasi_config_new();
    api.wasi_set_argv(wasi, (size_t)plan.nargs, plan.args);
    api.wasi_set_env(wasi, (size_t)plan.nenv, plan.env_names, plan.env_values);
    for (int i = 0; i < plan.npreopens; i++)
        if (!api.wasi_preopen_dir(wasi, plan.preopens[i][0], plan.preopens[i][1], plan.preopens[i][2][0] == '1'))
            fail("cannot preopen", plan.preopens[i][0]);
    api.wasi_inherit_stdin(wasi);
    api.wasi_inherit_stdout(wasi);
    api.wasi_inherit_stderr(wasi);
    check(api.context_set_wasi(ctx, wasi), "WASI");
    void *linker = api.linker_new(engine);
    check(api.linker_define_wasi(linker), "WASI linker");

    int64_t phases[3] = {plan.started ? plan.started : now_ns(), 0, 0};
    wt_instance instance;
    void *trap = NULL;
    char *message = NULL;
    void *error = api.linker_instantiate(linker, ctx, module, &instance, &trap);
    int code = outcome(error, trap, &message);
    phases[1] = now_ns();
    if (!error && !trap) {
        wt_extern item;
        memset(&item, 0, sizeof item);
        if (!api.instance_export_get(ctx, &instance, plan.func, strlen(plan.func), &item) || item.kind != EXTERN_FUNC)
            fail("no exported function", plan.func);
        install_filter();
        trap = NULL;
        error = api.func_call(ctx, &item.of.func, NULL, 0, NULL, 0, &trap);
        code = outcome(error, trap, &message);
    }
    phases[2] = now_ns();
    size_t note_len = message ? trap_note(message) : 0;
    report(code, note_buf, note_len, phases);
    return code;
}

int main(int argc, char **argv) {
    if (argc == 8 && strcmp(argv[1], "--check-exited") == 0) {
        int64_t phases[3] = {atoll(argv[5]), atoll(argv[6]), atoll(argv[7])};
        int with_phases = phases[0] || phases[1] || phases[2];
        size_t n = exited_line(line_buf, sizeof line_buf, atoi(argv[2]), atoll(argv[3]), argv[4], strlen(argv[4]),
                               with_phases ? phases : NULL);
        fwrite(line_buf, 1, n, stdout);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--check-one-line") == 0) {
        one_line(argv[2], text_buf, sizeof text_buf);
        printf("%s\n", text_buf);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "--check-trap-note") == 0) {
        snprintf(source, sizeof source, "%s", argv[2]);
        size_t n = trap_note(argv[3]);
        fwrite(note_buf, 1, n, stdout);
        printf("\n");
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--plan") == 0) {
        read_plan(atoi(argv[2]));
        keep_title(argv, argc);
        _exit(run());  /* no destructors of wasmtime's after the guest, as the Python worker's os._exit */
    }
    fprintf(stderr, "usage: %s --plan FD (the wasm worker execs it; see worker/runner_exec.py)\n", argv[0]);
    return 2;
}
