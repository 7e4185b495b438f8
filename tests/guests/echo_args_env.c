/* Prints each argument as "argv[i]=VALUE" on its own line, then every environment variable whose
 * name starts with "WV_" as "env NAME=VALUE" (in environment order). Exit code 0. */
#include <stdio.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=%s\n", i, argv[i]);
    }
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "WV_", 3) == 0) {
            printf("env %s\n", *e);
        }
    }
    return 0;
}
