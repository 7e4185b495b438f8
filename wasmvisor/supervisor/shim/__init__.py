"""The shim binary's actions: `main` (argv -> action), `start` (with `fastload` and the group `claim`),
`delete`, the bootstrap answer, and the node's supervisor template (server and client).

May import: the bottom layer (`errors`, `spec`, `cgroups`, `linux`, `logs`, `version`, `proto`), `ipc`, and
the other supervisor modules (only `main` imports `daemon`). Nothing heavy at module top: `start` and
`delete` are on containerd's critical path.
"""
