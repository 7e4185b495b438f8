"""The operator's commands behind `wasmvisor ps` and `wasmvisor doctor`: they look at a node from outside.

`ps` finds the supervisors by their sockets and asks each over its Admin service (supervisor/admin.py);
`doctor` checks containerd, its config and PATH, the cache folder and the kernel. Nothing here runs on a
task's path: only cli.py imports this package.

May import: the bottom layer, `supervisor.admin` (the client half of the Admin service) and
`engines.module_cache` (where the cache folder is: data, not an engine); never `worker` or an engine.
"""
