"""The shim binary's actions: `main` (argv -> action), `start`, `delete`, the bootstrap answer, and the
node's supervisor template (server and client).

May import: the bottom layer (`errors`, `spec`, `cgroups`, `linux`, `version`), `ipc`, and the other
supervisor sub-packages. Nothing heavy at module top: `start` is on containerd's critical path.
"""
