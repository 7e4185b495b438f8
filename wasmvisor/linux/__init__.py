"""Linux plumbing: every ctypes call and the process helpers (fork, fds, the SIGCHLD wake-up).

The bottom layer: imports nothing of wasmvisor but `errors`.
"""
