"""A task's life: the Task API service, the registry (containerd's PlatformRuntime shape), a task's data,
the state machine, event builders and the publisher, the Instance contract and the worker-backed Instance,
the task's cgroup and rootfs mounts.

May import: `supervisor.rpc`, `ipc`, and the bottom layer (`errors`, `spec`, `cgroups`, `linux`, `logs`,
`proto`, `version`). Never an engine, nothing of `shim`, and not the containerd client: the registry is
handed its instance factory, publisher and layer reader (daemon.py builds them).
"""
