"""What several commands share: argument types, argument groups, reading the input, the cache configuration,
and writing results out.

Every value is read and range-checked here, by the type of its option, before a command runs: a bad one is
argparse's error, which each command's parser (``add_command``) prints as one line like every other cachesim
error, naming the option and pointing to ``--help`` instead of printing the usage block.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from cachesim import units
from cachesim._contract import (
    DEFAULT_TOKEN_BLOCK_SIZE,
    HIT_CAPS,
    ISOLATIONS,
    POLICY_NAMES,
    VICTIMS,
    check_policy,
    is_policy_plugin,
)
from cachesim._impl import IMPLEMENTATIONS
from cachesim.parallel import EXECUTOR_NAMES
from cachesim.parallel import executor_name as _executor_name
from cachesim.providers.options import Option
from cachesim.requests import TraceError


def add_command(sub, name: str, tables: bool = False, **kwargs) -> argparse.ArgumentParser:
    """A command's parser, whose usage errors are one line on stderr (exit 2); ``tables``: it prints tables, so it
    takes --wide."""
    parser = sub.add_parser(name, **kwargs)
    if tables:
        parser.add_argument("--wide", action="store_true", help="tables at least 160 columns wide (default: the "
                            "terminal's width, or COLUMNS, or 80 in a pipe or file; a table never cuts a number)")

    def error(message: str):
        parser.exit(2, f"cachesim: error: {name}: {message} (see {parser.prog} --help)\n")

    parser.error = error
    return parser


def argument(parse: Callable) -> Callable:
    """A units parser as an argparse type: its ValueError becomes argparse's one-line usage error."""
    def convert(text: str):
        try:
            return parse(text)
        except (ValueError, OverflowError) as exc:  # units.parse_count("inf") overflows
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


def typed(option: Option) -> Callable:
    """An argparse type reading a value of ``option``'s kind and range (providers/options.py: the one reader of
    typed values); ``none`` is no value here."""
    def convert(text: str):
        value = option.parse(text)
        if value is None:
            raise ValueError(f"expected {option.describe()}, got {text!r}")
        return value
    convert.__name__ = option.describe()
    return argument(convert)


def whole(low: int = 0) -> Callable:
    return typed(Option("int", low=low))


def real(**bounds) -> Callable:
    """A finite number within ``bounds`` (Option's low, above, high, below)."""
    return typed(Option("float", **bounds))


parse_count = argument(units.parse_count)
parse_seconds = argument(units.parse_seconds)
parse_seed = whole(0)  # numpy's generators take no negative seed


def one_of(names, what: str) -> Callable:
    """An argparse type for a registry name: the registry's own wording when it is not one (argparse then also
    checks ``choices``, which --help lists)."""
    def convert(text: str):
        if text not in names:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; choose one of {', '.join(names)}")
        return text
    convert.__name__ = what
    return convert


class PolicyChoices(tuple):
    """The built-in policies' names, as argparse's choices: a name with parameters is among them when its name is
    (policy_option has checked the parameters)."""

    def __contains__(self, value) -> bool:
        return isinstance(value, str) and (is_policy_plugin(value) or super().__contains__(value.partition(":")[0]))


def policy_option(text: str) -> str:
    """--policy NAME[:key=value,...] or FILE.py:CLASS[:key=value,...]: checked when the flag is read, in the
    registry's words (a plugin file is imported and its class instantiated once, now)."""
    try:
        check_policy(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _format_name(text: str) -> str:
    """A trace format's name, checked when the flag is read (the readers are imported only then)."""
    from cachesim.readers import FORMATS

    return one_of(tuple(FORMATS), "format")(text)


def executor_name(text: str) -> str:
    """An executor name or alias (``processes``) as its one name, for argparse."""
    try:
        return _executor_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def tokenizer_spec(text: str) -> str:
    """A tokenizer spec that loads (so a file that is no tokenizer fails now, not after the trace is read)."""
    from cachesim.tokenizers import get_tokenizer

    try:
        get_tokenizer(text)
    except (ValueError, OSError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_hit_cap_and_isolation(p, isolation: bool = True) -> None:
    """--hit-cap and --isolation, with their values from the registry."""
    caps = [c for c in HIT_CAPS if c]
    p.add_argument("--hit-cap", choices=caps, help=f"{caps[0]}: cap hits so at least one prompt token is computed")
    if isolation:
        p.add_argument("--isolation", choices=[i for i in ISOLATIONS if i],
                       help="tenant: tenants never share cache entries")


def parse_list(parse_one: Callable, unbounded: str) -> Callable:
    """A comma-separated list parsed item by item; ``none`` (or ``inf``/``unbounded``) stands for ``unbounded``."""
    def parse(text: str) -> list:
        items = []
        for item in text.split(","):
            if item.strip().lower() in ("none", "inf", "unbounded"):
                items.append(None)
            elif item.strip():
                items.append(parse_one(item))
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list (none = {unbounded}), got {text!r}")
        return items
    return parse


def add_input_args(p, what: str) -> None:
    """Where the trace comes from and how to read it (read by load_input)."""
    p.add_argument("trace", nargs="?", help=f"trace file (JSONL of a known format, CSV, or a compiled .npz) to "
                                            f"{what}; omit to use the built-in agent workload")
    p.add_argument("--preset", help="engine preset: vllm (16-token blocks, hit cap prompt-1) or sglang "
                                    "(token-level, hit cap prompt-1)")
    p.add_argument("--block-size", type=parse_count, metavar="N", help="tokens per block for token-id traces "
                   "(default 16, or the preset's)")
    p.add_argument("--users", type=parse_count, default=8, help="users in the built-in workload")
    p.add_argument("--impl", choices=IMPLEMENTATIONS, help="engine implementation (default: the compiled "
                   "core; the reference model is slow and meant for checking)")
    add_reading_flags(p)


def add_cache_args(p, isolation: bool = True) -> None:
    """The cache's configuration (read by cache_config)."""
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--capacity", type=parse_count, metavar="BLOCKS", help="cache capacity in block slots "
                     "(e.g. 100k); default unbounded")
    cap.add_argument("--capacity-tokens", type=parse_count, metavar="N", help="cache capacity in tokens, "
                     "divided by the block size")
    cap.add_argument("--engine-capacity", type=parse_count, metavar="N", help="with --preset, the capacity as "
                     "the engine's log states it: vLLM's num_gpu_blocks (2 of them never hold a cached block), "
                     "SGLang's max_total_num_tokens (docs/engines.md)")
    p.add_argument("--ttl", type=parse_seconds, metavar="SECONDS", help="uniform TTL refreshed on use "
                   "(e.g. 300, 5m, 1h); default none")
    add_hit_cap_and_isolation(p, isolation)
    p.add_argument("--warmup", metavar="N|Ns", help="leave the first N requests (or N seconds, e.g. 600s) "
                   "out of the counts")
    p.add_argument("--policy", type=policy_option, choices=PolicyChoices(POLICY_NAMES), metavar="NAME[:KEY=VALUE,...]",
                   help=f"eviction policy: {', '.join(POLICY_NAMES)} (default lru), with parameters as "
                        "s3fifo:move-to-main-threshold=1, or your own: FILE.py:CLASS[:KEY=VALUE,...], a "
                        "cachesim.HookPolicy in a file (docs/policies.md)")
    p.add_argument("--victims", choices=VICTIMS, default=VICTIMS[0], help="evict only leaf blocks "
                   "(default; keeps the cache prefix-closed) or any block, counting the orphans")
    p.add_argument("--interference", action="store_true", help="track who evicted whom (lost_to, evictions_by)")


def add_reading_flags(p) -> None:
    """How a trace file is read: the one set of reader options of every command that reads one (read by
    reading_options, synthesized and the loaders below)."""
    p.add_argument("--format", type=_format_name, help="trace format (default: sniffed from the content; "
                   "docs/formats.md lists them)")
    p.add_argument("--skip-invalid", action="store_true", help="skip bad records (and report how many) "
                   "instead of stopping at the first")
    p.add_argument("--keep-order", action="store_true", help="refuse requests out of time order instead of "
                   "sorting them stably")
    p.add_argument("--tenant-field", metavar="FIELD", help="Qwen/Bailian traces: the record field that names "
                   "the tenant (default: type)")
    from cachesim.readers._base import LENGTHS

    p.add_argument("--lengths", type=one_of(LENGTHS, "lengths mode"), choices=LENGTHS, default=LENGTHS[0],
                   help="block-id traces: a row whose id count is not ceil(length / block size) is refused "
                        "(strict, default) or read from its ids, each one full block (from-ids; how many rows "
                        "were is reported)")
    from cachesim.readers._base import SIZES

    p.add_argument("--sizes", type=one_of(SIZES, "sizes mode"), choices=SIZES, default=SIZES[0],
                   help="transcripts with billed usage (Claude Code): each prompt as long as it was billed, its growth "
                        "spread over the new content (observed, default), or as the tokenizer counts the text "
                        "(tokenized: what a layout change needs)")
    p.add_argument("--tokenizer", type=tokenizer_spec, metavar="SPEC", help="text traces (API logs, "
                   "transcripts): builtin (default, approximate), hf:PATH/tokenizer.json, or tiktoken:ENCODING=PATH")
    p.add_argument("--batch-bytes", type=parse_count, default=16 << 20, metavar="N", help="read this many bytes "
                   "of input per batch (default 16M): the memory a streaming replay holds besides the cache")
    p.add_argument("--synthesize", action="store_true", help="arrival/length-only traces (Azure): give each "
                   "request content from the built-in agent workload (--seed, --workload), keeping the trace's "
                   "arrivals and lengths")
    p.add_argument("--workload", choices=["native", "chatty"], default="native",
                   help="harness style of the built-in workload (no TRACE, or --synthesize)")
    p.add_argument("--seed", type=parse_seed, default=0, help="seed of the built-in workload (no TRACE, or "
                   "--synthesize)")


TRACE_OUTPUTS = (".npz", ".parquet")   # what a compiled trace is written as: Trace.save tells them by suffix


def require_trace_output(path: str, option: str, suffixes: tuple[str, ...] = TRACE_OUTPUTS) -> None:
    """A compiled trace is written as .npz or .parquet: say so before any work rather than write another name."""
    if not any(path.endswith(suffix) for suffix in suffixes):
        raise ValueError(f"{path}: {option} writes {' or '.join(suffixes)}; name it {Path(path).stem}"
                         f"{suffixes[0]}, for instance")


def require_figure(path: str | None, option: str) -> None:
    """A figure's format is its suffix: one cachesim cannot write fails before the work that would fill it."""
    from cachesim.figures import HEATMAP_FORMATS

    if path is not None and Path(path).suffix.lower() not in HEATMAP_FORMATS:
        raise ValueError(f"{option} {path}: a figure is written as {', '.join(HEATMAP_FORMATS)}, not "
                         f"{Path(path).suffix or 'no suffix'!r}")


def reading_options(args) -> dict:
    """The reader keywords (readers.read_requests) the flags of add_reading_flags give."""
    return {"format": args.format, "skip_invalid": args.skip_invalid, "tenant_field": args.tenant_field,
            "tokenizer": args.tokenizer, "lengths": args.lengths, "sizes": args.sizes}


def synthesized(args, path: Path):
    """``--synthesize``: an Azure trace's arrivals and lengths with content from the built-in workload, as
    token requests and a label; None without the flag."""
    if not args.synthesize:
        return None
    from cachesim.readers import azure, detect_format

    if (args.format or detect_format(path)) != azure.NAME:
        raise ValueError("--synthesize gives content to arrival/length-only traces (Azure CSV); this trace "
                         "has its own content")
    arrivals = azure.read_arrivals(path, skip_invalid=args.skip_invalid, keep_order=args.keep_order)
    return azure.synthesize(arrivals, seed=args.seed, style=args.workload), (
        f"{path} (azure arrivals and lengths; content synthesized from the built-in {args.workload} agent "
        f"workload, seed {args.seed})")


def read_whole(args, path: Path, block_size: int | None = None):
    """The whole file as a ReadResult (raw requests and their lines), read with every reader option, for a
    command that compiles it itself (sweep: once per block size)."""
    from cachesim.readers import _format as format_of
    from cachesim.readers import _refuse_disorder, read_requests

    result = read_requests(path, block_size=block_size, **reading_options(args))
    if args.keep_order:  # the readers' own check, as read_trace makes it
        _refuse_disorder(result, getattr(format_of(path, args.format), "TIME_FIELD", "t"))
    return result


def add_trace_source(p, what: str, isolation: bool) -> None:
    """Input and cache arguments of the commands that replay one trace several ways."""
    add_input_args(p, what)
    add_cache_args(p, isolation=isolation)
    p.add_argument("--workers", type=parse_count, help="parallel replays (default: one per CPU)")
    p.add_argument("--executor", type=executor_name, choices=EXECUTOR_NAMES, default="thread",
                   help=f"where the replays run: {', '.join(EXECUTOR_NAMES)} (default thread: the core releases "
                        "the GIL)")
    p.add_argument("--json", metavar="OUT", help="write the comparison as JSON to OUT ('-' for stdout)")


def preset(args):
    """The engine preset --preset names, or None; an unknown name is a ValueError."""
    if args.preset is None:
        return None
    from cachesim.presets import get_preset

    return get_preset(args.preset)


def preset_block_size(args) -> int | None:
    chosen = preset(args)
    return None if chosen is None else chosen.block_size


def token_block_size(args) -> int:
    """The block size token ids are cut at: --block-size, else the preset's, else the default."""
    return args.block_size or preset_block_size(args) or DEFAULT_TOKEN_BLOCK_SIZE


def load_input(args):
    """The trace to replay as an iterable of compiled batches, a one-line description of where it came from,
    and the stream (None when the whole trace is in memory)."""
    from cachesim.trace import Trace, compile_trace

    if args.trace is None:
        from cachesim.workloads import agent_workload

        workload = agent_workload(style=args.workload, n_users=args.users, seed=args.seed)
        trace = compile_trace(workload.requests, token_block_size(args), impl=args.impl)
        label = (f"built-in agent workload ({args.workload} harness, {args.users} users, seed {args.seed}; "
                 "pass a TRACE file to replay your own)")
        return trace, label, None
    path = Path(args.trace)
    if path.suffix == ".npz":
        return Trace.load(path, mmap=True), str(path), None
    synthetic = synthesized(args, path)
    if synthetic is not None:
        requests, label = synthetic
        return compile_trace(requests, token_block_size(args), impl=args.impl), label, None
    from cachesim.readers import TraceStream

    stream = TraceStream(path, block_size=args.block_size, default_block_size=token_block_size(args),
                         keep_order=args.keep_order, impl=args.impl, batch_bytes=args.batch_bytes,
                         **reading_options(args))
    return stream, f"{path} ({stream.format})", stream


def stream_input(args, what: str, feed: Callable, requests_seen: Callable[[], int]) -> str:
    """Feed the input's batches (a trace file streamed, or a compiled one cut in 2^20-block batches) to ``feed``,
    with a progress bar, each batch's block size checked first; print the warnings reading raised. The input's
    label."""
    from cachesim.parallel import prefetched
    from cachesim.progress import progress_bar
    from cachesim.trace import Trace

    source, label, stream = load_input(args)
    total = stream.source.total_bytes if stream else 0
    bytes_read = (lambda: stream.source.bytes_read) if stream else (lambda: 0)
    with recorded_warnings() as caught, \
            progress_bar(total, bytes_read, what, enabled=args.progress if stream else False) as update:
        for batch in source.batches(1 << 20) if isinstance(source, Trace) else prefetched(source):
            refuse_other_block_size(args, batch)
            feed(batch)
            update(requests_seen())
    print_notes(caught)
    return label


def load_whole_trace(args):
    """The whole trace in memory (for commands that replay it several times) and where it came from."""
    source, label, stream = load_input(args)
    if stream is None:
        refuse_other_block_size(args, source)
        return source, label
    from cachesim.readers import read_trace

    with recorded_warnings() as caught:  # what reading reports (skips, --lengths) is a note, as when streaming
        trace = read_trace(args.trace, block_size=args.block_size, default_block_size=stream.default_block_size,
                           keep_order=args.keep_order, impl=args.impl, **reading_options(args))
    print_notes(caught)
    refuse_other_block_size(args, trace)
    return trace, label


def refuse_other_block_size(args, trace) -> None:
    """--block-size names how to cut token ids; a trace whose blocks are already cut (block ids, a compiled .npz)
    at another size cannot be replayed at it, and saying so beats ignoring the flag."""
    if args.block_size is not None and trace.block_size != args.block_size:
        raise TraceError(f"the trace's blocks are {trace.block_size} tokens, not {args.block_size}; a different "
                         "block size needs the token ids", field="block_size")


def cache_config(args, block_size: int, block_source: str):
    """The cache configuration replay() would build from these flags, for a trace of this block size."""
    from cachesim.replay import CacheConfig
    from cachesim.units import parse_warmup

    hit_cap, policy = args.hit_cap, args.policy
    chosen = preset(args) if args.preset else None
    if chosen is not None:
        hit_cap = hit_cap if hit_cap is not None else chosen.hit_cap
        policy = policy if policy is not None else chosen.policy
        if args.block_size is None and chosen.block_size != block_size and block_source == "ids":
            print(f"cachesim: note: preset {args.preset!r} uses {chosen.block_size}-token blocks, but this trace's "
                  f"blocks are fixed at {block_size} tokens; replaying at {block_size}", file=sys.stderr)
    capacity = args.capacity
    if args.capacity_tokens is not None:
        capacity = max(args.capacity_tokens // block_size, 1)
    if getattr(args, "engine_capacity", None) is not None:
        if chosen is None:
            raise ValueError("--engine-capacity is an engine's own capacity number: give its --preset (vllm: "
                             "num_gpu_blocks; sglang: max_total_num_tokens)")
        capacity = chosen.capacity_blocks(args.engine_capacity, block_size)
    warmup_requests, warmup_s = parse_warmup(args.warmup)
    return CacheConfig(capacity_blocks=capacity, policy=policy or "lru", ttl_s=args.ttl, hit_cap=hit_cap,
                       isolation=getattr(args, "isolation", None), warmup_requests=warmup_requests,
                       warmup_s=warmup_s, victims=args.victims, interference=args.interference)


@contextlib.contextmanager
def recorded_warnings():
    """Catch every warning raised inside, to be shown by print_notes rather than in Python's warning format."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def print_notes(caught) -> None:
    for w in caught:
        print(f"cachesim: note: {w.message}", file=sys.stderr)


# The dests of every option through which a command writes a file, and of those naming a directory it writes
# into: main() checks them all before any work starts (tests/test_cli_outputs.py finds any option missing here).
OUTPUT_DESTS = ("json", "per_request", "output", "out", "plot", "heatmap", "save_trace")
OUTPUT_DIR_DESTS = ("shared_dir",)


def _why_unwritable(path: Path, directory: bool) -> str | None:
    """Why nothing could be written at ``path`` (a file, or into a directory), or None if it could."""
    if path.exists():
        if directory != path.is_dir():
            return "not a directory" if directory else "it is a directory"
        return None if os.access(path, os.W_OK | (os.X_OK if directory else 0)) else "permission denied"
    if directory:
        return "no such directory"
    parent = path.parent
    if not parent.exists():
        return f"no such directory {parent}"
    if not parent.is_dir():
        return f"{parent} is not a directory"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"permission denied in {parent}"


def check_outputs(args) -> None:
    """ValueError naming the first output of ``args`` that cannot be written ('-' is stdout)."""
    for dests, directory in ((OUTPUT_DESTS, False), (OUTPUT_DIR_DESTS, True)):
        for dest in dests:
            target = getattr(args, dest, None)
            if isinstance(target, str) and target != "-":  # prices --json is a flag, not a path
                reason = _why_unwritable(Path(target), directory)
                if reason is not None:
                    raise ValueError(f"cannot write {target}: {reason}")


def emit(target: str | None, text: str) -> None:
    """Write text where an OUT option says: '-' is stdout, None is nowhere, anything else a file."""
    if target == "-":
        sys.stdout.write(text)
    elif target:
        Path(target).write_text(text)


def write_json(args, data: dict) -> None:
    import orjson

    emit(args.json, orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def trace_summary(trace, label: str) -> dict:
    """The trace's entry in a comparison's JSON: where it came from and its size."""
    return {"label": label, "requests": trace.n_requests, "blocks": trace.n_blocks, "block_size": trace.block_size}


def console(args):
    """The console a command's tables print to (--wide, or as wide as the screen: report/_tables.screen_width)."""
    from cachesim.report._tables import make_console

    return make_console(wide=getattr(args, "wide", False))


def add_kv_bytes_args(p, more: str = "") -> None:
    """--model or --kv-bytes-per-token: the KV bytes a token takes, to state capacities in bytes."""
    from cachesim.units import parse_bytes

    kv = p.add_mutually_exclusive_group()
    kv.add_argument("--model", metavar="NAME|CONFIG", help="state capacities in GB for this model's KV cache: a "
                    "built-in name (cachesim.models.MODELS, e.g. llama-3.1-8b) or a Hugging Face config.json" + more)
    kv.add_argument("--kv-bytes-per-token", type=argument(parse_bytes), metavar="BYTES",
                    help="the same from a number: bytes, or 128KiB (binary) / 160KB (SI)" + more)


def kv_bytes_per_token(args) -> int | None:
    """From --model (read now, so a bad one is a one-line error before any work) or --kv-bytes-per-token."""
    if getattr(args, "model", None):
        from cachesim.models import get_model

        try:
            return get_model(args.model).kv_bytes_per_token
        except ValueError as exc:
            raise ValueError(f"--model: {exc}") from None
    return getattr(args, "kv_bytes_per_token", None)
