/* Probes the container's filesystem: each argument is one action, each action prints one line.
 *   ls:PATH          "ls PATH: a b c" (sorted names, no . or ..) or "ls PATH: error <strerror>"
 *   cat:PATH         "cat PATH: <content with newlines as |>" or "cat PATH: error <strerror>"
 *   read:PATH:N      "read PATH: N bytes, K zero" (reads N bytes) or "read PATH: error <strerror>"
 *   write:PATH       "write PATH: ok" (creates/truncates, writes "x") or "write PATH: error <strerror>"
 *   exists:PATH      "exists PATH: yes" or "exists PATH: no (<strerror>)"
 * Exit 0 always (2 for an unknown action). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void do_ls(const char *path) {
    DIR *dir = opendir(path);
    if (!dir) {
        printf("ls %s: error %s\n", path, strerror(errno));
        return;
    }
    char *names[256];
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL && count < 256) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
            continue;
        }
        names[count++] = strdup(entry->d_name);
    }
    closedir(dir);
    qsort(names, count, sizeof names[0], by_name);
    printf("ls %s:", path);
    for (int i = 0; i < count; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf("\n");
}

static void do_cat(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("cat %s: error %s\n", path, strerror(errno));
        return;
    }
    printf("cat %s: ", path);
    int c;
    while ((c = fgetc(f)) != EOF) {
        putchar(c == '\n' ? '|' : c);
    }
    printf("\n");
    fclose(f);
}

static void do_read(const char *path, long want) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("read %s: error %s\n", path, strerror(errno));
        return;
    }
    long got = 0, zeros = 0;
    int c;
    while (got < want && (c = fgetc(f)) != EOF) {
        got++;
        zeros += (c == 0);
    }
    fclose(f);
    printf("read %s: %ld bytes, %ld zero\n", path, got, zeros);
}

static void do_write(const char *path) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("write %s: error %s\n", path, strerror(errno));
        return;
    }
    int bad = fputs("x", f) < 0;
    bad |= fclose(f) != 0;
    printf("write %s: %s\n", path, bad ? "error on write" : "ok");
}

static void do_exists(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0) {
        printf("exists %s: yes\n", path);
    } else {
        printf("exists %s: no (%s)\n", path, strerror(errno));
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char *action = argv[i];
        char *arg = strchr(action, ':');
        if (!arg) {
            fprintf(stderr, "bad action %s\n", action);
            return 2;
        }
        *arg++ = '\0';
        if (strcmp(action, "ls") == 0) {
            do_ls(arg);
        } else if (strcmp(action, "cat") == 0) {
            do_cat(arg);
        } else if (strcmp(action, "read") == 0) {
            char *count = strrchr(arg, ':');
            if (!count) {
                fprintf(stderr, "read wants PATH:N\n");
                return 2;
            }
            *count++ = '\0';
            do_read(arg, atol(count));
        } else if (strcmp(action, "write") == 0) {
            do_write(arg);
        } else if (strcmp(action, "exists") == 0) {
            do_exists(arg);
        } else {
            fprintf(stderr, "unknown action %s\n", action);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}
