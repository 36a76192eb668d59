"""The ``cachesim`` command line. Bad input ends in one clear line on stderr (exit 2), never a traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from cachesim.requests import TraceError

EXIT_BAD_INPUT = 2

_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9}


def parse_count(text: str) -> int:
    """``"100000"``, ``"100k"``, ``"1.5M"`` -> a positive whole number."""
    raw = text.strip().lower().replace("_", "").replace(",", "")
    scale = _SUFFIXES.get(raw[-1:], 1)
    number = raw[:-1] if scale != 1 else raw
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 100000 or 100k, got {text!r}") from None
    if value != int(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def parse_seconds(text: str) -> float:
    """``"300"``, ``"300s"``, ``"5m"``, ``"1h"`` -> seconds (positive)."""
    raw = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(raw[-1:], None)
    try:
        value = float(raw[:-1]) * scale if scale else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds such as 300, 300s, 5m or 1h, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {text!r}")
    return value


def _add_replay(sub) -> None:
    p = sub.add_parser("replay", help="replay a trace through an emulated prefix cache",
                       description="Replay a trace through an emulated prefix cache and print what hit. "
                                   "Without TRACE, replays the built-in synthetic agent workload.")
    p.add_argument("trace", nargs="?", help="trace file (Mooncake JSONL, native JSONL, or a compiled .npz); "
                                            "omit to replay the built-in agent workload")
    p.add_argument("--format", help="trace format (default: sniffed from the content)")
    p.add_argument("--preset", help="engine preset: vllm (16-token blocks, hit cap prompt-1) or sglang "
                                    "(token-level, hit cap prompt-1)")
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--capacity", type=parse_count, metavar="BLOCKS", help="cache capacity in block slots "
                     "(e.g. 100k); default unbounded")
    cap.add_argument("--capacity-tokens", type=parse_count, metavar="N", help="cache capacity in tokens, "
                     "divided by the block size")
    p.add_argument("--ttl", type=parse_seconds, metavar="SECONDS", help="uniform TTL refreshed on use "
                   "(e.g. 300, 5m, 1h); default none")
    p.add_argument("--block-size", type=parse_count, metavar="N", help="tokens per block for token-id traces "
                   "(default 16, or the preset's)")
    p.add_argument("--hit-cap", choices=["prompt-1"], help="cap hits so at least one prompt token is computed")
    p.add_argument("--isolation", choices=["tenant"], help="tenants never share cache entries")
    p.add_argument("--warmup", metavar="N|Ns", help="leave the first N requests (or N seconds, e.g. 600s) "
                   "out of the counts")
    p.add_argument("--policy", help="eviction policy (default lru)")
    p.add_argument("--workload", choices=["native", "chatty"], default="native",
                   help="harness style of the built-in workload (when no TRACE is given)")
    p.add_argument("--users", type=parse_count, default=8, help="users in the built-in workload")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in workload")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' for stdout)")
    p.add_argument("--per-request", metavar="CSV", help="write per-request outputs as CSV")
    p.add_argument("--impl", choices=["core", "reference"], help="engine implementation (default: the compiled "
                   "core; the reference model is slow and meant for checking)")
    _add_reading_flags(p)
    p.add_argument("--synthesize", action="store_true", help="arrival/length-only traces (Azure): give each "
                   "request content from the built-in agent workload (--seed, --workload), keeping the trace's "
                   "arrivals and lengths")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    p.set_defaults(run=_run_replay)


def _add_reading_flags(p) -> None:
    p.add_argument("--skip-invalid", action="store_true", help="skip bad records (and report how many) "
                   "instead of stopping at the first")
    p.add_argument("--keep-order", action="store_true", help="refuse requests out of time order instead of "
                   "sorting them stably")
    p.add_argument("--tenant-field", metavar="FIELD", help="Qwen/Bailian traces: the record field that names "
                   "the tenant (default: type)")
    p.add_argument("--tokenizer", metavar="SPEC", help="text traces (API logs, transcripts): builtin (default, "
                   "approximate), hf:PATH/tokenizer.json, or tiktoken:ENCODING=PATH")
    p.add_argument("--batch-bytes", type=parse_count, default=16 << 20, metavar="N", help="read this many bytes "
                   "of input per batch (default 16M): the memory a streaming replay holds besides the cache")


def _load_input(args):
    """The trace to replay as an iterable of compiled batches, a one-line description of where it came from,
    and the stream (None when the whole trace is in memory)."""
    from cachesim.trace import Trace, compile_trace

    if args.trace is None:
        from cachesim.workloads import agent_workload

        workload = agent_workload(style=args.workload, n_users=args.users, seed=args.seed)
        block_size = args.block_size or _preset_block_size(args) or 16
        trace = compile_trace(workload.requests, block_size, impl=args.impl)
        label = (f"built-in agent workload ({args.workload} harness, {args.users} users, seed {args.seed}; "
                 "pass a TRACE file to replay your own)")
        return trace, label, None
    path = Path(args.trace)
    if path.suffix == ".npz":
        return Trace.load(path, mmap=True), str(path), None
    from cachesim.readers import DEFAULT_TOKEN_BLOCK_SIZE, TraceStream, detect_format

    if args.synthesize:
        from cachesim.readers import azure

        if (args.format or detect_format(path)) != azure.NAME:
            raise ValueError("--synthesize gives content to arrival/length-only traces (Azure CSV); this trace "
                             "has its own content")
        arrivals = azure.read_arrivals(path, skip_invalid=args.skip_invalid)
        block_size = args.block_size or _preset_block_size(args) or DEFAULT_TOKEN_BLOCK_SIZE
        trace = compile_trace(azure.synthesize(arrivals, seed=args.seed, style=args.workload), block_size,
                              impl=args.impl)
        return trace, (f"{path} (azure arrivals and lengths; content synthesized from the built-in "
                       f"{args.workload} agent workload, seed {args.seed})"), None

    stream = TraceStream(path, format=args.format, block_size=args.block_size,
                         default_block_size=_preset_block_size(args) or DEFAULT_TOKEN_BLOCK_SIZE,
                         skip_invalid=args.skip_invalid, keep_order=args.keep_order, impl=args.impl,
                         batch_bytes=args.batch_bytes, tenant_field=args.tenant_field, tokenizer=args.tokenizer)
    return stream, f"{path} ({stream.format})", stream


def _preset_block_size(args) -> int | None:
    if args.preset is None:
        return None
    from cachesim.presets import get_preset

    return get_preset(args.preset).block_size


def _cache_config(args, block_size: int, block_source: str):
    """The cache configuration replay() would build from these flags, for a trace of this block size."""
    from cachesim.replay import CacheConfig, parse_warmup

    hit_cap, policy = args.hit_cap, args.policy
    if args.preset:
        from cachesim.presets import get_preset

        preset = get_preset(args.preset)
        hit_cap = hit_cap if hit_cap is not None else preset.hit_cap
        policy = policy if policy is not None else preset.policy
        if args.block_size is None and preset.block_size != block_size and block_source == "ids":
            print(f"cachesim: note: preset {args.preset!r} uses {preset.block_size}-token blocks, but this trace's "
                  f"blocks are fixed at {block_size} tokens; replaying at {block_size}", file=sys.stderr)
    capacity = args.capacity
    if args.capacity_tokens is not None:
        capacity = max(args.capacity_tokens // block_size, 1)
    warmup_requests, warmup_s = parse_warmup(args.warmup)
    return CacheConfig(capacity_blocks=capacity, policy=policy or "lru", ttl_s=args.ttl, hit_cap=hit_cap,
                       isolation=args.isolation, warmup_requests=warmup_requests, warmup_s=warmup_s)


class _Seen:
    """What the report says about the trace, gathered while it streams past."""

    def __init__(self):
        self.n_requests = self.n_blocks = 0
        self.block_size = 0
        self.block_source = ""
        self.tenant_names: list[str] = []

    def add(self, batch) -> None:
        self.n_requests += batch.n_requests
        self.n_blocks += batch.n_blocks
        self.block_size, self.block_source = batch.block_size, batch.block_source


def _run_replay(args) -> int:
    import warnings

    from cachesim.progress import progress_bar
    from cachesim.replay import Simulator
    from cachesim.report import print_replay, write_per_request_csv
    from cachesim.trace import Trace

    if args.preset:
        from cachesim.presets import get_preset

        get_preset(args.preset)  # an unknown preset fails before any reading
    source, label, stream = _load_input(args)
    batches = source.batches() if isinstance(source, Trace) else source
    seen, sim = _Seen(), None
    total = stream.source.total_bytes if stream else 0
    bytes_read = (lambda: stream.source.bytes_read) if stream else (lambda: 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with progress_bar(total, bytes_read, "replay", enabled=args.progress if stream else False) as update:
                for batch in batches:
                    if sim is None:
                        if args.block_size is not None and batch.block_size != args.block_size:
                            raise TraceError(f"the trace's blocks are {batch.block_size} tokens, not "
                                             f"{args.block_size}; a different block size needs the token ids",
                                             field="block_size")
                        sim = Simulator(_cache_config(args, batch.block_size, batch.block_source), impl=args.impl,
                                        keep_per_request=bool(args.per_request))
                    try:
                        sim.feed(batch)
                    except TraceError as exc:  # the engine names a request of the batch; name its file line
                        lines = batch.meta.get("lines")
                        if exc.file is None and exc.line is not None and lines is not None:
                            exc = TraceError(exc.message, field=exc.field, file=args.trace, line=int(lines[exc.line]))
                        raise exc from None
                    seen.add(batch)
                    update(sim.requests_fed)
        except TraceError as exc:
            for w in caught:
                print(f"cachesim: note: {w.message}", file=sys.stderr)
            if sim is None or sim.requests_fed == 0:
                raise
            where = f" (through line {stream.last_line:,} of {args.trace})" if stream and stream.last_line else ""
            print(f"cachesim: replay stopped after {sim.requests_fed:,} requests{where}; "
                  "the results so far follow", file=sys.stderr)
            partial = {"stopped_by": str(exc), "requests_replayed": sim.requests_fed,
                       "through_line": stream.last_line if stream else None}
            _show_result(args, sim.result(), seen, f"{label} — PARTIAL: stopped by an error", print_replay,
                         write_per_request_csv, partial)
            raise exc.located(file=args.trace) if stream else exc
    for w in caught:
        print(f"cachesim: note: {w.message}", file=sys.stderr)
    _show_result(args, sim.result(), seen, label, print_replay, write_per_request_csv)
    return 0


def _show_result(args, result, seen, label, print_replay, write_per_request_csv, partial=None) -> None:
    seen.tenant_names = result.tenant_names
    text = result.to_json()
    if partial is not None:  # say so in the JSON too: these counts cover only the requests before the error
        import orjson

        data = orjson.loads(text)
        data["partial"] = partial
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    if args.json == "-":
        sys.stdout.write(text + "\n")
    else:
        print_replay(result, seen, label)
        if args.json:
            Path(args.json).write_text(text + "\n")
    if args.per_request:
        write_per_request_csv(result, args.per_request)


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="compile a trace file into the compact .npz format",
                       description="Read a trace (any format, gzip/zstd welcome), sort it stably by time and save "
                                   "it compiled as .npz: far smaller than JSONL token ids, loads in milliseconds, "
                                   "block keys memory-mapped.")
    p.add_argument("input", help="trace file")
    p.add_argument("output", help="output file (.npz)")
    p.add_argument("--format", help="input format (default: sniffed from the content)")
    p.add_argument("--block-size", type=parse_count, metavar="N", help="tokens per block (token-id traces: "
                   "default 16; LMBench: required)")
    _add_reading_flags(p)
    p.set_defaults(run=_run_convert)


def _run_convert(args) -> int:
    import warnings

    from cachesim.readers import read_trace

    if Path(args.output).suffix != ".npz":
        raise ValueError(f"the compact format is .npz; name the output {Path(args.output).stem}.npz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = read_trace(args.input, format=args.format, block_size=args.block_size,
                           skip_invalid=args.skip_invalid, keep_order=args.keep_order, tenant_field=args.tenant_field,
                           tokenizer=args.tokenizer)
    for w in caught:
        print(f"cachesim: note: {w.message}", file=sys.stderr)
    trace.save(args.output)
    size_in, size_out = Path(args.input).stat().st_size, Path(args.output).stat().st_size
    print(f"{args.output}: {trace.n_requests:,} requests, {trace.n_blocks:,} blocks of {trace.block_size} tokens; "
          f"{size_out:,} bytes; the input is {size_in:,} bytes ({size_in / max(size_out, 1):.1f}x)")
    return 0


COMMANDS: list[Callable] = [_add_replay, _add_convert]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachesim", description="Prompt-cache emulator: replay LLM request "
                                     "traces through an emulated prefix cache.")
    parser.add_argument("--version", action="version", version="cachesim 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args)
    except TraceError as exc:
        print(f"cachesim: error: {exc}", file=sys.stderr)
    except (ValueError, OSError) as exc:
        print(f"cachesim: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("cachesim: interrupted", file=sys.stderr)
        return 130
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
