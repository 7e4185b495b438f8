/* Follows wasmvisor's working-directory convention: WASI preview 1 has no way to give a program a
 * starting directory (wasi-libc always starts at "/"), so wasmvisor exports the spec's process.cwd
 * as PWD and a guest that wants it calls chdir(PWD) first, as this one does.
 * Prints "cwd=<getcwd()>", then the content of the relative path argv[1] (default "data.txt").
 * Exit 1 when the file cannot be opened. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char dir[1024];
    const char *rel = argc > 1 ? argv[1] : "data.txt";
    const char *pwd = getenv("PWD");
    if (pwd && chdir(pwd) != 0) {
        perror(pwd);
        return 1;
    }
    printf("cwd=%s\n", getcwd(dir, sizeof dir) ? dir : "?");
    FILE *f = fopen(rel, "rb");
    if (!f) {
        perror(rel);
        return 1;
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        fwrite(buf, 1, n, stdout);
    }
    fclose(f);
    return 0;
}
