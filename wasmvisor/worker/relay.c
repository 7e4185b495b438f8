/* wasmvisor-relay: the pid-namespace relay of a wasmvisor worker, in C so that each container costs
 * ~50 KB instead of a Python process (~3.75 MB PSS). The worker's relay process execs it right after
 * it forked the container process (wasmvisor/worker/namespaces.py, fork_container_process): same pid,
 * still the parent of the container process, and the blocked signal mask and pending signals survive
 * the execve.
 *
 * argv: TITLE CHILD_PID ALIVE_FD SIG...
 *   TITLE      argv[0], the title `ps` shows (`wasmvisor-init NS/ID`)
 *   CHILD_PID  the container process, forwarded every SIG; the relay ends as it ended
 *   ALIVE_FD   write end of the pipe the child watches (EOF: the relay died); kept open, unused
 *   SIG...     the signal numbers to forward (RELAYED_SIGNALS); SIGCHLD is waited for as well.
 *              Every one of them must be blocked already (the worker blocks them before the fork).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* Exit with the wait status of the container process: exit n -> n; killed by s -> killed by s. */
static void end_like(int status) {
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct rlimit none = {0, 0};
        sigset_t only;
        setrlimit(RLIMIT_CORE, &none); /* the container dumped (or not) already */
        if (sig != SIGKILL && sig != SIGSTOP) /* their disposition cannot be set */
            signal(sig, SIG_DFL);
        sigemptyset(&only);
        sigaddset(&only, sig);
        sigprocmask(SIG_UNBLOCK, &only, NULL);
        raise(sig);
        _exit(128 + sig);
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 70);
}

/* Reap the container process if it has ended, and end like it. */
static void check_child(pid_t child) {
    int status;
    pid_t pid;
    while ((pid = waitpid(child, &status, WNOHANG)) < 0 && errno == EINTR)
        ;
    if (pid == child)
        end_like(status);
    if (pid < 0) /* not our child (cannot happen): nothing to relay to */
        _exit(70);
}

int main(int argc, char **argv) {
    sigset_t waited;
    pid_t child;
    int i;

    if (argc < 4)
        return 64;
    child = (pid_t)atoi(argv[1]);
    /* argv[2] (ALIVE_FD) stays open until we exit: nothing to do with it. */
    sigemptyset(&waited);
    sigaddset(&waited, SIGCHLD);
    for (i = 3; i < argc; i++)
        sigaddset(&waited, atoi(argv[i]));
    /* Read: `ps` shows the title alone (`wasmvisor-init NS/ID`), not the numbers that follow it. */
    for (i = 1; i < argc; i++)
        memset(argv[i], 0, strlen(argv[i]));
    sigprocmask(SIG_BLOCK, &waited, NULL); /* already blocked by the worker; harmless if so */

    check_child(child); /* it may have ended before the exec (its SIGCHLD is pending then, too) */
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&waited, &info);
        if (sig < 0)
            continue; /* EINTR */
        if (sig == SIGCHLD)
            check_child(child);
        else
            kill(child, sig); /* ESRCH: it is ending, its SIGCHLD follows */
    }
}
