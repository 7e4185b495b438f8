/* Prints 0, 1, 2, ... one number a line every 50 ms, forever (for pause/resume tests: the output
   stops growing while the task is frozen). */
#include <stdio.h>
#include <time.h>

int main(void) {
    struct timespec pause = {0, 50 * 1000 * 1000};
    for (unsigned long i = 0;; i++) {
        printf("%lu\n", i);
        fflush(stdout);
        nanosleep(&pause, NULL);
    }
}
