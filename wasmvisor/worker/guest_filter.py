"""The seccomp allow-list a wasm guest runs under: the system calls wasmtime, its WASI preview 1
implementation and the worker's own last steps make once the guest's code may run, and nothing else.

Measured, not guessed: `strace -f` of a worker's run phase (every test guest: files, directories,
stdio, clocks, poll_oneoff, traps, memory.grow, proc_exit) shows wasmtime's calls (mmap, mprotect,
memfd_create and F_ADD_SEALS for memory images, sigaltstack), cap-std's (openat2 with
RESOLVE_BENEATH, statx, getdents64, the *at calls), tokio's threads (clone3, futex, epoll, eventfd,
PR_SET_NAME) and the worker's report on its pipe (sendto). Anything else fails with EPERM.

Argument checks narrow three calls: mmap and mprotect never make a page executable (every module
is mapped before the guest runs, so code cannot be written and then run: W^X), clone only makes
threads (clone3 answers ENOSYS, so glibc falls back to clone, whose flags a filter can read), and
ioctl takes only the terminal and FIONREAD/FIONBIO/FIOCLEX requests (no TIOCSTI). Processes,
namespaces, mounts, ptrace, process_vm_readv/writev, bpf, keyctl, personality, module loading,
kexec, signals to other processes (kill, tgkill) and new sockets are all outside the list.

Built with libseccomp (wasmvisor.worker.seccomp, already the spec profiles' compiler): it resolves
the names for this machine (x86_64 or aarch64, names one of them lacks are skipped) and adds the
architecture check, so no syscall table of our own has to stay in step with the kernel's. The
program is compiled once per zygote (`zygote_preload`) and installed by each worker with one call.
"""

from __future__ import annotations

import errno

from wasmvisor.worker.seccomp import (
    SCMP_ACT_ALLOW,
    SCMP_ACT_ERRNO,
    CompiledFilter,
    Condition,
    Profile,
    Rule,
    compile_profile,
)

ALLOWED = (
    # files, through the fds WASI holds (cap-std resolves paths with openat2 beneath a preopen)
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "lseek", "close", "openat", "openat2", "newfstatat", "fstat", "statx", "readlinkat", "getdents64",
    "mkdirat", "unlinkat", "renameat", "renameat2", "symlinkat", "linkat", "utimensat", "ftruncate",
    "fallocate", "fadvise64", "fsync", "fdatasync", "fcntl", "dup", "dup3", "faccessat", "faccessat2",
    # memory (mmap and mprotect: below, never executable)
    "munmap", "madvise", "mremap", "brk", "memfd_create",
    # threads (clone: below) and their ends
    "futex", "set_robust_list", "rseq", "gettid", "getpid", "exit", "exit_group", "sched_yield",
    "sched_getaffinity",
    # signals of this process only (wasmtime's trap handlers, the init thread's sigwait)
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "rt_sigtimedwait",
    # clocks, sleeping and waiting (poll_oneoff)
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "poll", "ppoll",
    "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2",
    "getrandom", "restart_syscall",
    # the worker's report on its pipe, on an already open socket
    "sendto", "sendmsg", "recvfrom", "recvmsg",
)
"""Allowed without looking at the arguments."""

PROT_EXEC = 0x4
CLONE_THREAD = 0x10000
PR_SET_NAME = 15
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
IOCTLS = {
    "TCGETS": 0x5401,
    "TIOCGWINSZ": 0x5413,
    "FIONREAD": 0x541B,
    "FIONBIO": 0x5421,
    "FIONCLEX": 0x5450,
    "FIOCLEX": 0x5451,
}
"""The ioctl requests allowed (asm-generic/ioctls.h: the same numbers on x86_64 and aarch64): isatty,
terminal size, bytes ready, blocking and close-on-exec flags."""


def guest_profile() -> Profile:
    """The allow-list as a Profile for wasmvisor.worker.seccomp (pure)."""
    not_executable = (Condition(index=2, op=SCMP_CMP_MASKED_EQ, value=PROT_EXEC, value_two=0),)
    rules = [
        Rule(names=ALLOWED, action=SCMP_ACT_ALLOW, conditions=()),
        Rule(names=("mmap", "mprotect"), action=SCMP_ACT_ALLOW, conditions=not_executable),
        Rule(names=("clone",), action=SCMP_ACT_ALLOW,
             conditions=(Condition(index=0, op=SCMP_CMP_MASKED_EQ, value=CLONE_THREAD, value_two=CLONE_THREAD),)),
        Rule(names=("clone3",), action=SCMP_ACT_ERRNO | errno.ENOSYS, conditions=()),
        Rule(names=("prctl",), action=SCMP_ACT_ALLOW,
             conditions=(Condition(index=0, op=SCMP_CMP_EQ, value=PR_SET_NAME, value_two=0),)),
    ]
    rules += [Rule(names=("ioctl",), action=SCMP_ACT_ALLOW,
                   conditions=(Condition(index=1, op=SCMP_CMP_EQ, value=request, value_two=0),))
              for request in IOCTLS.values()]
    # TSYNC: the filter covers every thread of the worker (the init thread, wasmtime's and tokio's).
    return Profile(default_action=SCMP_ACT_ERRNO | errno.EPERM, architectures=(),
                   flags=("SECCOMP_FILTER_FLAG_TSYNC",), rules=tuple(rules))


_compiled: CompiledFilter | None = None


def guest_filter() -> CompiledFilter:
    """The compiled allow-list, built on first use (the zygote's preload) and kept."""
    global _compiled
    if _compiled is None:
        _compiled = compile_profile(guest_profile())
    return _compiled
