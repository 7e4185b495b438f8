"""A kubelet-like client of containerd's CRI plugin, and the node it needs, for tests and benchmarks.

- kubelet.py: what the kubelet makes of a manifest: pod and container configs with log paths, /etc/hosts
  and termination-log binds, labels and annotations.
- client.py: `CriClient`, which drives `runtime.v1` (wasmvisor/proto/cri) with them as the kubelet does.
- logs.py: the CRI log file format (`<time> <stream> <P|F> <text>`).
- streaming.py: a WebSocket client of containerd's streaming server (streaming Exec).
- node.py: a private containerd with CRI on (config version 2 on 1.x, 3 on 2.x), `wasmvisor` and `runc`
  handlers, a pause image built from pause.c, and CNI that gives each pod an `eth0` on 127.0.0.0/8.
"""
