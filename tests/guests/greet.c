/* A command that also exports `greet` (tests/guests/greet.wit): as a component, the entrypoint
   `/greet.wasm#greet` must call greet, not main. */
#include <stdio.h>

__attribute__((export_name("greet"))) void greet(void) {
    printf("greet called\n");
    fflush(stdout);
}

int main(void) {
    printf("main called\n");
    return 0;
}
