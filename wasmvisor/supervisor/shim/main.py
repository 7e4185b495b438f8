"""The shim binary: `containerd-shim-wasmvisor-v1 [flags] start|delete`, `-v`, and the internal `serve`.

`shim_main` is also the library entry for shims built on wasmvisor (as runwasi's `shim_main`): a custom
shim passes its own engine, or its own Instance class, as "module:Class" and its own name. Each action's
module is imported only when that action runs, so `start` (on containerd's critical path) loads no grpc,
protobuf, asyncio or wasmtime.
"""

from __future__ import annotations

import sys

from wasmvisor.linux.arch import UnsupportedArchitecture, syscall_numbers
from wasmvisor.supervisor.shim.cliargs import ShimArgs, UsageError, parse_args
from wasmvisor.supervisor.shim.entry_script import import_asyncio_without_ssl, load_site

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds on `start`
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

    from wasmvisor.supervisor.config import Config

DEFAULT_ENGINE = "wasmvisor.engines.wasmtime_engine:WasmtimeEngine"


def binary_name(name: str) -> str:
    """The executable containerd looks for: runtime `io.containerd.NAME.v1` -> `containerd-shim-NAME-v1`."""
    return f"containerd-shim-{name}-v1"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(exc: BaseException) -> str:
    from wasmvisor.errors import status_of

    return _one_line(status_of(exc)[1])


def _fail(prefix: str, message: str, status: int = 1) -> NoReturn:
    sys.stderr.write(f"{prefix}: {_one_line(message)}\n")
    sys.stderr.flush()
    sys.exit(status)


def _run_action(args: ShimArgs, config: Config | None, engine: str, instance: str | None) -> int:
    syscall_numbers()  # a machine wasmvisor has no system call table for is refused here, in one line
    # `start` and `delete` do without the venv's site-packages (delete loads them when it needs them).
    if args.action not in ("start", "delete"):
        load_site()
        import_asyncio_without_ssl()
    if args.action == "start":
        from wasmvisor.supervisor.shim import start

        start.run(args)
        return 0
    if args.action == "delete":
        from wasmvisor.supervisor.shim import delete

        return delete.run(args)
    if args.action == "template":
        from wasmvisor.supervisor.shim import template_server

        return template_server.serve(args, config, engine, run_supervisor, instance=instance)
    return run_supervisor(args, config, engine, instance=instance)


def run_supervisor(args: ShimArgs, config: Config | None, engine: str, *, instance: str | None = None,
                   fork_zygote: bool = False) -> int:
    """The `serve` action: the daemon that `start` launched (a new interpreter, or a fork of the
    node's template with `fork_zygote`). A new interpreter starts its zygote before its own imports
    (asyncio, protobuf, the Task API), so that both go on at once (daemon_setup.py); with the shim's
    own `instance` class there is no zygote."""
    from wasmvisor.supervisor import daemon_setup
    from wasmvisor.supervisor.config import Config

    config = config if config is not None else Config()
    prepared = daemon_setup.prepare(args, config, engine, fork_zygote=fork_zygote, instance=instance)
    from wasmvisor.supervisor.daemon import serve

    return serve(args, config, engine, prepared, instance=instance)


def shim_main(engine: str = DEFAULT_ENGINE, *, instance: str | None = None, config: Config | None = None,
              name: str = "wasmvisor", argv: Sequence[str] | None = None) -> NoReturn:
    """Run the shim binary's command line and exit.

    `engine` names the Engine class ("module:Class") the workers run guests with. `instance` names an
    Instance class of the shim's own instead ("module:Class"): the supervisor then drives it directly,
    with no zygote and no worker processes (docs/library.md). Both are text so that they reach the
    daemon and the node's template, which are this binary run again with other actions.

    Errors end the process with status 1 and one line on stderr (for `start`, containerd copies that
    line into its error message); a command line that cannot be parsed exits 2, as Go's flag does.
    """
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        _fail(name, str(exc), status=2)
    if args.version:
        load_site()
        from wasmvisor.version import version_text

        sys.stdout.write(version_text(binary_name(name)))
        sys.stdout.flush()
        sys.exit(0)
    if args.info:
        # containerd 2.x asks for the RuntimeInfo (introspection, idmapped-mount checks): info.py
        load_site()
        try:
            from wasmvisor.supervisor.shim import info

            sys.exit(info.run(name))
        except Exception as exc:
            _fail(f"{name} -info", _describe(exc))
    try:
        status = _run_action(args, config, engine, instance)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except UnsupportedArchitecture as exc:
        _fail(f"{name} {args.action}", str(exc))
    except Exception as exc:
        if args.action == "serve":
            import logging

            logging.getLogger(__name__).exception("supervisor failed")
        _fail(f"{name} {args.action}", _describe(exc))
    sys.exit(status)


def main() -> NoReturn:
    """Console script `containerd-shim-wasmvisor-v1`."""
    shim_main()


if __name__ == "__main__":
    main()
