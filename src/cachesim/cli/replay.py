"""``cachesim replay``: stream a trace through one emulated prefix cache and report what hit."""

from __future__ import annotations

import argparse
import sys

from cachesim.cli._options import (
    add_cache_args,
    add_command,
    add_input_args,
    cache_config,
    console,
    emit,
    load_input,
    preset,
    print_notes,
    recorded_warnings,
    refuse_other_block_size,
)
from cachesim.requests import TraceError


def add_parser(sub) -> None:
    p = add_command(sub, "replay", tables=True, help="replay a trace through an emulated prefix cache",
                       description="Replay a trace through an emulated prefix cache and print what hit. "
                                   "Without TRACE, replays the built-in synthetic agent workload.")
    add_input_args(p, "replay")
    add_cache_args(p)
    p.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' for stdout)")
    p.add_argument("--per-request", metavar="FILE", help="write per-request outputs as CSV, or as Parquet for a "
                   "name ending .parquet")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")


class _Seen:
    """What the report says about the trace, gathered while it streams past, and which batch the engine is
    serving (so an error in it can name its line in the file)."""

    def __init__(self):
        self.n_requests = self.n_blocks = 0
        self.block_size = 0
        self.block_source = ""
        self.tenant_names: list[str] = []
        self.serving = None
        self.last_line = 0   # the last file line of a request served (the reader may be a batch ahead)

    def watch(self, batches):
        """The batches as they are; ``serving`` is the one handed out, None while the next is being read."""
        for batch in batches:
            self.serving = batch
            yield batch
            self.serving = None

    def add(self, batch) -> None:
        self.n_requests += batch.n_requests
        self.n_blocks += batch.n_blocks
        self.block_size, self.block_source = batch.block_size, batch.block_source
        lines = batch.meta.get("lines")
        if lines is not None and len(lines):
            self.last_line = max(self.last_line, int(lines.max()))


def _at_file_line(exc: TraceError, batch, path) -> TraceError:
    """The engine names a request of the batch it was serving; name that request's line in the file instead."""
    lines = batch.meta.get("lines") if batch is not None else None
    if exc.file is None and exc.line is not None and lines is not None:
        return TraceError(exc.message, field=exc.field, file=path, line=int(lines[exc.line]),
                          unit=batch.meta.get("line_unit", "line"))
    return exc


def run(args) -> int:
    from itertools import chain

    from cachesim.parallel import prefetched
    from cachesim.progress import progress_bar
    from cachesim.replay import Simulator
    from cachesim.trace import Trace

    if args.preset:
        preset(args)  # an unknown preset fails before any reading
    if args.per_request and args.per_request.endswith(".parquet"):
        try:
            import pyarrow.parquet  # noqa: F401  (checked before the replay, not after it)
        except ImportError:
            raise ValueError("--per-request FILE.parquet needs pyarrow: pip install 'cachesim[formats]'") from None
    seen, sim = _Seen(), None
    with recorded_warnings() as caught:  # a reader's notes (rows sorted, skipped) too, --synthesize's included
        try:
            source, label, stream = load_input(args)
            # a file is read and compiled a batch ahead, in a thread, while the core serves (both free the GIL)
            batches = iter(source.batches()) if isinstance(source, Trace) else prefetched(source)
            total = stream.source.total_bytes if stream else 0
            bytes_read = (lambda: stream.source.bytes_read) if stream else (lambda: 0)
            with progress_bar(total, bytes_read, "replay", enabled=args.progress if stream else False) as update:
                first = next(batches)  # the cache is configured for the trace's block size, known from its first batch
                refuse_other_block_size(args, first)
                sim = Simulator(cache_config(args, first.block_size, first.block_source), impl=args.impl,
                                keep_per_request=bool(args.per_request))

                def served(batch) -> None:
                    seen.add(batch)
                    update(sim.requests_fed)

                result = sim.run(seen.watch(chain([first], batches)), on_batch=served)
        except TraceError as exc:
            exc = _at_file_line(exc, seen.serving, args.trace)
            print_notes(caught)
            if sim is None or sim.requests_fed == 0:
                raise exc from None
            where = f" (through line {seen.last_line:,} of {args.trace})" if stream and seen.last_line else ""
            print(f"cachesim: replay stopped after {sim.requests_fed:,} requests{where}; "
                  "the results so far follow", file=sys.stderr)
            partial = {"stopped_by": str(exc), "requests_replayed": sim.requests_fed,
                       "through_line": seen.last_line if stream else None}
            _show_result(args, sim.result(), seen, label, partial)
            raise (exc.located(file=args.trace) if stream else exc) from None
    print_notes(caught)
    _show_result(args, result, seen, label)
    return 0


def _show_result(args, result, seen, label, partial=None) -> None:
    from cachesim.report import print_replay, write_per_request_csv

    seen.tenant_names = result.tenant_names
    import orjson

    data = orjson.loads(result.to_json())
    data["trace"] = label   # so a report page (cachesim report) can name what was replayed
    if partial is not None:  # say so in the JSON too: these counts cover only the requests before the error
        data["partial"] = partial
    text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    if args.json != "-":
        print_replay(result, seen, label if partial is None else f"{label} — PARTIAL: stopped by an error",
                     console=console(args))
    emit(args.json, text + "\n")
    if args.per_request:
        write_per_request_csv(result, args.per_request)
