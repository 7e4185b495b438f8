"""An engine-based shim built on wasmvisor: `ctr run --runtime io.containerd.echo.v1 IMAGE ID ARGS...`
prints what the engine is given (args, env, entrypoint) and exits 3. Workers, the zygote, rootfs
mounts, stdio and the Task API are wasmvisor's; the engine is ten lines."""

import os

import wasmvisor


class EchoEngine(wasmvisor.Engine):
    name = "echo"

    def run_wasi(self, ctx: wasmvisor.RuntimeContext, stdio: wasmvisor.Stdio) -> int:
        text = f"args: {' '.join(ctx.args)}\nenv: {' '.join(ctx.envs)}\nentrypoint: {ctx.entrypoint.source}\n"
        if stdio.stdout >= 0:
            os.write(stdio.stdout, text.encode())
        return 3


def main() -> None:
    """Console script `containerd-shim-echo-v1`."""
    wasmvisor.shim_main("echo_shim:EchoEngine", name="echo")
