"""The RPC transports: ttrpc framing, server and client, the gRPC server, and the transport-neutral
service interface. They serve any `Service` and know nothing of tasks, wasm or engines.

May import: `errors` and `proto` only.
"""
