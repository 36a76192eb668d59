"""The ``cachesim`` command line. Bad input ends in one clear line on stderr (exit 2), never a traceback.

Each command is a module of this package with ``add_parser(sub)`` and ``run(args) -> int``; COMMANDS lists
them in the order ``cachesim --help`` shows them.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import BrokenExecutor

from cachesim._contract import VERSION
from cachesim.cli import convert, cost, demo, fleet, interference, mrc, prices, replay, report, size, sweep
from cachesim.cli._options import check_outputs
from cachesim.requests import TraceError

__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_WORKER_LOST", "build_parser", "main"]

EXIT_BAD_INPUT = 2
EXIT_WORKER_LOST = 1

COMMANDS = {
    "replay": replay, "convert": convert, "interference": interference, "fleet": fleet, "prices": prices,
    "cost": cost, "demo": demo, "mrc": mrc, "size": size, "sweep": sweep, "report": report,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachesim", description="Prompt-cache emulator: replay LLM request "
                                     "traces through an emulated prefix cache.")
    parser.add_argument("--version", action="version", version=f"cachesim {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_parser(sub)
        sub.choices[name].set_defaults(run=command.run)  # the table, not each module, ties a name to its run
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        check_outputs(args)  # a read-only output fails now, not after the trace is read
        return args.run(args)
    except (TraceError, ValueError, OSError) as exc:
        print(f"cachesim: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("cachesim: interrupted", file=sys.stderr)
        return 130
    except BrokenExecutor as exc:  # a worker killed from outside (OOM killer, kill -9): not the input's fault
        print(f"cachesim: error: a worker stopped before its task finished ({exc}); rerun, or with --resume where "
              "the command checkpoints", file=sys.stderr)
        return EXIT_WORKER_LOST
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
