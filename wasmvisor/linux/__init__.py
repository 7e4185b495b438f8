"""Linux plumbing, the bottom layer: every ctypes call (syscalls, with the numbers of each supported
architecture in arch), the mountinfo reader, the mount option table, the atomic file write and the
process helpers (fork, fds, the SIGCHLD wake-up).

Imports nothing of wasmvisor outside this package. Importing the package itself loads nothing.
"""
