"""The worker: one process per container, forked from the zygote. It reads its Configure, sets up the
container as runc would (namespaces, rootfs, identity, capabilities, seccomp, sysctl, stdio), then runs the
guest through an engine, or execs a native program (native.py). `relay.c` is the pid-namespace relay.

May import: `ipc`, `engines` and the bottom layer (`errors`, `spec`, `cgroups`, `linux`); never `supervisor`.
"""
