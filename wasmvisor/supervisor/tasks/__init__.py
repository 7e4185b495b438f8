"""A task's life: the Task API service, the registry (containerd's PlatformRuntime shape), the state
machine, event builders and the publisher, the Instance contract, the task's cgroup and rootfs mounts.

May import: `supervisor.rpc`, `supervisor.containerd`, `supervisor.logs`, `ipc`, and the bottom layer
(`errors`, `spec`, `cgroups`, `linux`, `proto`, `version`). Never an engine.
"""
