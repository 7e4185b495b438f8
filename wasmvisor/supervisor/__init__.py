"""The supervisor: one process per pod group that speaks to containerd and never runs guest code.

Sub-packages by concern: `shim/` (the binary's actions: start, delete, the node's template), `rpc/` (the
transports: ttrpc and gRPC, nothing of tasks), `tasks/` (a task's life: service, registry, state, events,
cgroup, mounts), `containerd/` (the containerd API client and OCI wasm layers). `daemon.py` wires them
(the composition root, imported only by shim/main.py); `daemon_setup.py` takes the process's first steps;
`logs.py` and `config.py` are shared.

May import: `ipc` and the bottom layer (`errors`, `spec`, `cgroups`, `linux`, `version`, `proto`); never
`worker` or an engine (`containerd/` reads the engines' catalog and compiled-module cache, which are data).
"""
