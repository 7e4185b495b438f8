/* Tries to leave the wasm sandbox through what WASI gives it, and reports each attempt on one line:
 *   "NAME: blocked (<why>)"  the attempt failed, as it must
 *   "NAME: ESCAPED (<what>)" the attempt worked
 * Attempts:
 *   mem        open /proc/self/mem read-write and write into the worker's own executable mapping
 *              (found in /proc/self/maps); the byte written is the byte read, so nothing changes
 *   maps       read /proc/self/maps (host paths of the worker's files)
 *   fd         open /proc/self/fd/0..15 (the worker's raw fds, its socket and log FIFO among them)
 *   root1      list /proc/1/root (the root of the pid namespace's first process)
 *   sys        list /sys, read /sys/kernel/uevent_helper
 *   dev        open /dev/mem, /dev/kmem, /dev/port, /dev/kmsg, /dev/sda read-write
 *   rawfd      fd_write and fd_read on the WASI fds 3..64 that are not its preopens
 * Exit 0 when every attempt was blocked, 1 otherwise. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

static int escaped = 0;

static void report(const char *name, int ok, const char *detail) {
    printf("%s: %s (%s)\n", name, ok ? "ESCAPED" : "blocked", detail);
    if (ok) {
        escaped = 1;
    }
}

/* open(path, flags), or -1 after reporting NAME blocked with why ("open PATH[ rw]: error"). */
static int open_or_blocked(const char *name, const char *path, int flags) {
    int fd = open(path, flags);
    if (fd < 0) {
        char why[200];
        snprintf(why, sizeof why, "open %s%s: %s", path, flags == O_RDWR ? " rw" : "", strerror(errno));
        report(name, 0, why);
    }
    return fd;
}

/* The first r-x mapping of /proc/self/maps: its start address, or 0. */
static unsigned long long executable_mapping(char *why, size_t size) {
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) {
        snprintf(why, size, "open /proc/self/maps: %s", strerror(errno));
        return 0;
    }
    char line[512];
    unsigned long long start = 0;
    while (fgets(line, sizeof line, maps)) {
        unsigned long long lo, hi;
        char perms[8];
        if (sscanf(line, "%llx-%llx %7s", &lo, &hi, perms) == 3 && strcmp(perms, "r-xp") == 0) {
            start = lo;
            break;
        }
    }
    fclose(maps);
    if (!start) {
        snprintf(why, size, "no r-xp mapping in /proc/self/maps");
    }
    return start;
}

static void try_mem(void) {
    char why[200];
    unsigned long long at = executable_mapping(why, sizeof why);
    if (!at) {
        report("mem", 0, why);
        return;
    }
    int fd = open_or_blocked("mem", "/proc/self/mem", O_RDWR);
    if (fd < 0) {
        return;
    }
    unsigned char byte;
    if (pread(fd, &byte, 1, (off_t)at) != 1) {
        snprintf(why, sizeof why, "pread at %llx: %s", at, strerror(errno));
        report("mem", 0, why);
    } else if (pwrite(fd, &byte, 1, (off_t)at) != 1) {
        snprintf(why, sizeof why, "pwrite into r-x page at %llx: %s", at, strerror(errno));
        report("mem", 0, why);
    } else {
        snprintf(why, sizeof why, "wrote into r-x page at %llx", at);
        report("mem", 1, why);
    }
    close(fd);
}

static void try_read(const char *name, const char *path) {
    int fd = open_or_blocked(name, path, O_RDONLY);
    if (fd < 0) {
        return;
    }
    char buf[64], why[200];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
        snprintf(why, sizeof why, "read %s: %s", path, strerror(errno));
    } else {
        snprintf(why, sizeof why, "read %zd bytes of %s", n, path);
    }
    report(name, n >= 0, why);
    close(fd);
}

static void try_open_rw(const char *name, const char *path) {
    int fd = open_or_blocked(name, path, O_RDWR);
    if (fd >= 0) {
        char why[200];
        snprintf(why, sizeof why, "opened %s rw", path);
        report(name, 1, why);
        close(fd);
    }
}

static void try_list(const char *name, const char *path) {
    char why[200];
    DIR *dir = opendir(path);
    if (!dir) {
        snprintf(why, sizeof why, "list %s: %s", path, strerror(errno));
        report(name, 0, why);
        return;
    }
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            count++;
        }
    }
    closedir(dir);
    snprintf(why, sizeof why, "%s lists %d entries", path, count);
    report(name, count > 0, why);
}

/* fd_write and fd_read straight on WASI fd numbers: the guest's fd table is its own, so any number
 * but its stdio and preopens must be EBADF, and a preopen (a directory) must refuse both. */
static void try_raw_fds(void) {
    int reached = 0;
    char first[120] = "";
    for (int fd = 3; fd <= 64; fd++) {
        char byte = 'x';
        __wasi_ciovec_t out = {(const uint8_t *)&byte, 1};
        __wasi_iovec_t in = {(uint8_t *)&byte, 1};
        __wasi_size_t n = 0;
        __wasi_errno_t w = __wasi_fd_write(fd, &out, 1, &n);
        __wasi_errno_t r = __wasi_fd_read(fd, &in, 1, &n);
        if (w == 0 || r == 0) {
            if (!reached) {
                snprintf(first, sizeof first, "fd %d: %s worked", fd, w == 0 ? "fd_write" : "fd_read");
            }
            reached++;
        }
    }
    char why[200];
    if (reached) {
        snprintf(why, sizeof why, "%d of fds 3..64 usable, first %s", reached, first);
    } else {
        snprintf(why, sizeof why, "fd_write and fd_read fail on fds 3..64");
    }
    report("rawfd", reached > 0, why);
}

int main(void) {
    try_mem();
    try_read("maps", "/proc/self/maps");
    for (int fd = 0; fd <= 15; fd++) {
        char path[40], name[16];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        snprintf(name, sizeof name, "fd%d", fd);
        try_read(name, path);
    }
    try_list("root1", "/proc/1/root");
    try_list("sys", "/sys");
    try_read("uevent", "/sys/kernel/uevent_helper");
    try_open_rw("devmem", "/dev/mem");
    try_open_rw("devkmem", "/dev/kmem");
    try_open_rw("devport", "/dev/port");
    try_open_rw("devkmsg", "/dev/kmsg");
    try_open_rw("devsda", "/dev/sda");
    try_raw_fds();
    fflush(stdout);
    return escaped;
}
