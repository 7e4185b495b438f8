"""The containerd API client: content, images and leases over containerd's gRPC socket, and the OCI
wasm layers read through it.

May import: the bottom layer, `proto`, `ipc.messages` and the engines' catalog and module cache (data
about engines, not an engine).
"""
