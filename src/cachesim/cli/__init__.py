"""The ``cachesim`` command line. Bad input ends in one clear line on stderr (exit 2), never a traceback.

Each command is a module of this package with ``add_parser(sub)`` and ``run(args) -> int``; COMMANDS lists
them in the order ``cachesim --help`` shows them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from concurrent.futures import BrokenExecutor

from cachesim._contract import VERSION
from cachesim.cli import convert, cost, demo, fleet, interference, mrc, prices, replay, report, size, sweep
from cachesim.cli._options import check_outputs
from cachesim.parallel import Terminated, _StopOnSignals
from cachesim.progress import command as progress_of
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

    def error(message: str):   # one line, as every command's usage errors are (cli/_options.add_command)
        parser.exit(EXIT_BAD_INPUT, f"cachesim: error: {message} (see cachesim --help, or cachesim COMMAND "
                                    "--help)\n")

    parser.error = error
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.add_parser(sub)
        sub.choices[name].set_defaults(run=command.run)  # the table, not each module, ties a name to its run
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        # SIGTERM unwinds like Ctrl-C (clean-up runs, no traceback); a line every interval when stderr is piped
        with _StopOnSignals(), progress_of(args.command, enabled=getattr(args, "progress", None)):
            check_outputs(args)  # a read-only output fails now, not after the trace is read
            return args.run(args)
    except (TraceError, ValueError, OSError) as exc:
        print(f"cachesim: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt as exc:
        print(_stopped("interrupted", exc, argv), file=sys.stderr)
        return 130
    except Terminated as exc:
        print(_stopped("terminated", exc, argv), file=sys.stderr)
        return exc.code
    except BrokenExecutor as exc:  # a worker killed from outside (OOM killer, kill -9): not the input's fault
        print(f"cachesim: error: a worker stopped before its task finished ({exc}); rerun, or with --resume where "
              "the command checkpoints", file=sys.stderr)
        return EXIT_WORKER_LOST
    return EXIT_BAD_INPUT


def _stopped(how: str, exc: BaseException, argv: list[str]) -> str:
    """The one line a stopped command leaves; a sweep's says what it kept and how to continue."""
    sweep = getattr(exc, "cachesim_sweep", None)
    if sweep is None:
        return f"cachesim: {how}"
    if sweep.checkpoint is None:
        return (f"cachesim: {how} after {sweep.saved} of {sweep.total} configs; none kept: with -o FILE a sweep "
                "checkpoints its rows and --resume continues it")
    again = shlex.join(["cachesim", *argv, *([] if "--resume" in argv else ["--resume"])])
    return (f"cachesim: {how}; {sweep.saved} of {sweep.total} configs saved in {sweep.checkpoint}; "
            f"continue with: {again}")


if __name__ == "__main__":
    sys.exit(main())
