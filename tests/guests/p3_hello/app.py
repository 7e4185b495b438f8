"""A WASI 0.3 command (componentize-py, world wasi:cli/command@0.3.0): prints its arguments and the
value of WV, then ends with exit-with-code of its first argument when that is a number. With the argument
`grow` it fills 400 MiB and says whether it could."""

from wit_world import exports
from wit_world.imports import environment, exit


class Run(exports.Run):
    async def run(self) -> None:
        args = environment.get_arguments()
        env = dict(environment.get_environment())
        print(f"hello from WASI 0.3: args={args[1:]} WV={env.get('WV', '-')}", flush=True)
        if len(args) > 1 and args[1].isdigit():
            exit.exit_with_code(int(args[1]))
        if len(args) > 1 and args[1] == "grow":
            try:
                block = bytearray(400 << 20)
                print(f"grew {len(block) >> 20} MiB", flush=True)
            except MemoryError:
                print("no memory for 400 MiB", flush=True)
