"""A pod without a pause container: containerd 2.x's shim sandboxer (`sandboxer = "shim"`) hands the
pod itself to the supervisor through `containerd.runtime.sandbox.v1.Sandbox`, and the supervisor is the
pod sandbox: its pid is the sandbox's, its main thread holds the pod's network, IPC and UTS namespaces
(which CRI names as `/proc/<sandbox pid>/ns/...` in every container's spec), and the pod's containers
arrive over Task API v3 on the same connection.

Holds the pod's configuration (config.py), its namespaces (namespaces.py), its state (sandbox.py) and the
Sandbox API (service.py). May import what `supervisor.tasks` may, and `supervisor.tasks` itself (it
stops and removes the pod's tasks through the registry); nothing of `shim`.
"""
