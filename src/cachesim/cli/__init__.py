"""The ``cachesim`` command line. Bad input ends in one clear line on stderr (exit 2), never a traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from cachesim import units
from cachesim._contract import DEFAULT_TOKEN_BLOCK_SIZE, VERSION
from cachesim.requests import TraceError

EXIT_BAD_INPUT = 2

def _argument(parse: Callable) -> Callable:
    """A units parser as an argparse type: its ValueError becomes argparse's one-line usage error."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


parse_count = _argument(units.parse_count)
parse_seconds = _argument(units.parse_seconds)


def _add_replay(sub) -> None:
    p = sub.add_parser("replay", help="replay a trace through an emulated prefix cache",
                       description="Replay a trace through an emulated prefix cache and print what hit. "
                                   "Without TRACE, replays the built-in synthetic agent workload.")
    _add_input_args(p, "replay")
    _add_cache_args(p)
    p.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' for stdout)")
    p.add_argument("--per-request", metavar="CSV", help="write per-request outputs as CSV")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    p.set_defaults(run=_run_replay)


def _add_input_args(p, what: str) -> None:
    """Where the trace comes from and how to read it (read by _load_input)."""
    p.add_argument("trace", nargs="?", help=f"trace file (JSONL of a known format, CSV, or a compiled .npz) to "
                                            f"{what}; omit to use the built-in agent workload")
    p.add_argument("--format", help="trace format (default: sniffed from the content)")
    p.add_argument("--preset", help="engine preset: vllm (16-token blocks, hit cap prompt-1) or sglang "
                                    "(token-level, hit cap prompt-1)")
    p.add_argument("--block-size", type=parse_count, metavar="N", help="tokens per block for token-id traces "
                   "(default 16, or the preset's)")
    p.add_argument("--workload", choices=["native", "chatty"], default="native",
                   help="harness style of the built-in workload (when no TRACE is given)")
    p.add_argument("--users", type=parse_count, default=8, help="users in the built-in workload")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in workload")
    p.add_argument("--impl", choices=["core", "reference"], help="engine implementation (default: the compiled "
                   "core; the reference model is slow and meant for checking)")
    _add_reading_flags(p)
    p.add_argument("--synthesize", action="store_true", help="arrival/length-only traces (Azure): give each "
                   "request content from the built-in agent workload (--seed, --workload), keeping the trace's "
                   "arrivals and lengths")


def _add_cache_args(p, isolation: bool = True) -> None:
    """The cache's configuration (read by _cache_config)."""
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--capacity", type=parse_count, metavar="BLOCKS", help="cache capacity in block slots "
                     "(e.g. 100k); default unbounded")
    cap.add_argument("--capacity-tokens", type=parse_count, metavar="N", help="cache capacity in tokens, "
                     "divided by the block size")
    p.add_argument("--ttl", type=parse_seconds, metavar="SECONDS", help="uniform TTL refreshed on use "
                   "(e.g. 300, 5m, 1h); default none")
    p.add_argument("--hit-cap", choices=["prompt-1"], help="cap hits so at least one prompt token is computed")
    p.add_argument("--warmup", metavar="N|Ns", help="leave the first N requests (or N seconds, e.g. 600s) "
                   "out of the counts")
    p.add_argument("--policy", help="eviction policy: lru (default), fifo, lfu, slru, priority, sieve, s3fifo")
    p.add_argument("--victims", choices=["leaves", "any"], default="leaves", help="evict only leaf blocks "
                   "(default; keeps the cache prefix-closed) or any block, counting the orphans")
    p.add_argument("--interference", action="store_true", help="track who evicted whom (lost_to, evictions_by)")
    if isolation:
        p.add_argument("--isolation", choices=["tenant"], help="tenants never share cache entries")


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
        block_size = args.block_size or _preset_block_size(args) or DEFAULT_TOKEN_BLOCK_SIZE
        trace = compile_trace(workload.requests, block_size, impl=args.impl)
        label = (f"built-in agent workload ({args.workload} harness, {args.users} users, seed {args.seed}; "
                 "pass a TRACE file to replay your own)")
        return trace, label, None
    path = Path(args.trace)
    if path.suffix == ".npz":
        return Trace.load(path, mmap=True), str(path), None
    from cachesim.readers import TraceStream, detect_format

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
    from cachesim.replay import CacheConfig
    from cachesim.units import parse_warmup

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
                       isolation=getattr(args, "isolation", None), warmup_requests=warmup_requests,
                       warmup_s=warmup_s, victims=args.victims, interference=args.interference)


def _load_whole_trace(args):
    """The whole trace in memory (for commands that replay it several times) and where it came from."""
    source, label, stream = _load_input(args)
    if stream is None:
        return source, label
    from cachesim.readers import read_trace

    trace = read_trace(args.trace, format=args.format, block_size=args.block_size,
                       default_block_size=stream.default_block_size, skip_invalid=args.skip_invalid,
                       keep_order=args.keep_order, impl=args.impl, tenant_field=args.tenant_field,
                       tokenizer=args.tokenizer)
    return trace, label


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
    p.add_argument("--dense", action="store_true",
                   help="number the block keys 0, 1, 2... (Trace.dense()): every later replay or sweep of the file "
                        "finds its blocks by array instead of by hashing, with the same results")
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
    if args.dense:
        trace = trace.dense()
    trace.save(args.output)
    size_in, size_out = Path(args.input).stat().st_size, Path(args.output).stat().st_size
    print(f"{args.output}: {trace.n_requests:,} requests, {trace.n_blocks:,} blocks of {trace.block_size} tokens; "
          f"{size_out:,} bytes; the input is {size_in:,} bytes ({size_in / max(size_out, 1):.1f}x)")
    return 0


COMMANDS: list[Callable] = [_add_replay, _add_convert]


def _add_trace_source(p, what: str, isolation: bool) -> None:
    """Input and cache arguments of the commands that replay one trace several ways."""
    _add_input_args(p, what)
    _add_cache_args(p, isolation=isolation)
    p.add_argument("--workers", type=parse_count, help="parallel replays (default: one per CPU)")
    p.add_argument("--executor", choices=["thread", "process"], default="thread",
                   help="run replays in threads (default; the core releases the GIL) or processes")
    p.add_argument("--json", metavar="OUT", help="write the comparison as JSON to OUT ('-' for stdout)")


def _write_json(args, data: dict) -> None:
    import orjson

    text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    if args.json == "-":
        sys.stdout.write(text)
    elif args.json:
        Path(args.json).write_text(text)


def _parse_quota(text: str) -> tuple[str, int]:
    name, sep, blocks = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected TENANT=BLOCKS, got {text!r}")
    return name, parse_count(blocks)


def _parse_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.5, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction strictly between 0 and 1, got {text!r}")
    return value


def _add_interference(sub) -> None:
    p = sub.add_parser("interference", help="tenants sharing a cache: counterfactual isolation and remedies",
                       description="Replay a trace's tenants sharing one cache, each alone (counterfactual), and "
                                   "under each remedy (namespace isolation, per-tenant quotas, a reserved partition "
                                   "for a priority tenant); print their hit ratios side by side. See "
                                   "docs/interference.md.")
    _add_trace_source(p, "share", isolation=False)
    p.add_argument("--name", help="tenant name for the TRACE's requests when mixing in an agent "
                                  "(default: the file name's stem)")
    p.add_argument("--add-agent", choices=["chatty", "native"], help="mix in a generated agent workload as one "
                   "more tenant (compiled at the trace's block size)")
    p.add_argument("--agent-users", type=parse_count, default=32, help="users of the generated agent")
    p.add_argument("--agent-seed", type=int, default=0, help="seed of the generated agent")
    p.add_argument("--agent-name", help="tenant name of the generated agent (default: agent-STYLE)")
    p.add_argument("--keep-tenants", action="store_true", help="when mixing, keep each source's own tenants "
                   "(as SOURCE/TENANT) instead of one tenant per source")
    p.add_argument("--priority", metavar="TENANT", help="compare a reserved partition for this tenant")
    p.add_argument("--reserve", type=_parse_fraction, default=0.5, help="the priority tenant's share of the "
                   "capacity (default 0.5)")
    p.add_argument("--quota", type=_parse_quota, action="append", metavar="TENANT=BLOCKS",
                   help="a tenant's quota (repeatable); tenants without one split the rest equally")
    p.add_argument("--alone", choices=["same", "share"], default="same", help="counterfactual capacity: the "
                   "full capacity (default) or an equal share")
    p.add_argument("--heatmap", metavar="PNG|SVG", help="draw the shared cache's hits_from tenant x tenant matrix")
    p.add_argument("--save-trace", metavar="OUT.npz", help="save the (mixed) trace, e.g. for 'cachesim fleet'")
    p.set_defaults(run=_run_interference)


def _run_interference(args) -> int:
    from dataclasses import replace

    from cachesim.interference import compare_remedies, merge_traces, print_report

    trace, label = _load_whole_trace(args)
    if args.add_agent:
        from cachesim.trace import compile_trace
        from cachesim.workloads import agent_workload

        agent = agent_workload(style=args.add_agent, n_users=args.agent_users, seed=args.agent_seed)
        agent_trace = compile_trace(agent.requests, trace.block_size, impl=args.impl)
        name = args.name or (Path(args.trace).stem if args.trace else "workload")
        agent_name = args.agent_name or f"agent-{args.add_agent}"
        trace = merge_traces([(name, trace), (agent_name, agent_trace)], keep_tenants=args.keep_tenants)
        label += (f" + generated {args.add_agent} agent as {agent_name!r} ({args.agent_users} users, seed "
                  f"{args.agent_seed}, {agent_trace.n_requests:,} requests)")
    if args.save_trace:
        trace.save(args.save_trace)
    # who evicted whom in the shared cache is part of this report: track it whatever --interference says
    config = replace(_cache_config(args, trace.block_size, trace.block_source), interference=True)
    report = compare_remedies(trace, config, priority=args.priority, reserve=args.reserve,
                              quotas=dict(args.quota) if args.quota else None, alone_capacity=args.alone,
                              impl=args.impl, workers=args.workers, executor=args.executor)
    if args.json != "-":
        print_report(report, label)
    data = report.to_dict()
    data["trace"] = {"label": label, "requests": trace.n_requests, "blocks": trace.n_blocks,
                     "block_size": trace.block_size}
    _write_json(args, data)
    if args.heatmap:
        try:
            from cachesim.plot import tenant_heatmap
        except ImportError as exc:
            raise ValueError(str(exc)) from None
        try:
            tenant_heatmap(report.shared.hits_from, report.tenant_names, args.heatmap,
                           title="shared cache: tokens tenant R hit in entries tenant O inserted")
        except ImportError as exc:
            raise ValueError(str(exc)) from None
        if args.json != "-":
            print(f"heat map written to {args.heatmap}")
    return 0


def _add_fleet(sub) -> None:
    from cachesim.fleet import ROUTER_DESCRIPTIONS, ROUTERS, ROUTING_KEYS

    p = sub.add_parser("fleet", help="replay a trace on N replicas behind a router",
                       description="Route each request to one of N replicas, each with its own cache, and compare "
                                   "routers by hit ratio, estimated time to first token and utilisation. Routers: "
                                   + "; ".join(f"{k}: {v}" for k, v in ROUTER_DESCRIPTIONS.items())
                                   + ". See docs/interference.md.")
    _add_trace_source(p, "route", isolation=True)
    p.add_argument("--replicas", type=parse_count, default=4, help="number of replicas (default 4); --capacity "
                   "is per replica")
    p.add_argument("--router", default="all", help=f"router(s), comma-separated: {', '.join(ROUTERS)}, or all "
                   "(default)")
    p.add_argument("--prefix-blocks", type=parse_count, help="prefix-hash: leading blocks hashed (default: "
                   "256 tokens' worth, at least 1)")
    p.add_argument("--routing-key", choices=ROUTING_KEYS, default="tenant",
                   help="prefix-hash: what plays prompt_cache_key (default tenant)")
    p.add_argument("--overflow-per-min", type=float, default=15.0, help="prefix-hash: requests/min per routing "
                   "key before it spills to more replicas (default 15)")
    p.add_argument("--cache-threshold", type=float, default=0.5, help="cache-aware: match rate needed (0.5)")
    p.add_argument("--balance-abs", type=int, default=32, help="cache-aware: absolute imbalance threshold (32)")
    p.add_argument("--balance-rel", type=float, default=1.0001, help="cache-aware: relative imbalance threshold")
    p.add_argument("--overlap-weight", type=float, default=1.0, help="cost: weight of prefill blocks (1.0)")
    p.add_argument("--prefill-tps", type=float, default=20_000.0, help="load model: prefill tokens/s per replica")
    p.add_argument("--decode-tps", type=float, default=2_000.0, help="load model: decode tokens/s per replica "
                   "(aggregate over its batch)")
    p.add_argument("--output-tokens", type=int, default=256, help="load model: output length of requests whose "
                   "trace gives none")
    p.add_argument("--per-replica", action="store_true", help="print each router's per-replica table")
    p.set_defaults(run=_run_fleet)


def _run_fleet(args) -> int:
    from cachesim.fleet import ROUTERS, LoadModel, RouterConfig, print_fleet, run_fleet

    names = list(ROUTERS) if args.router == "all" else [r.strip() for r in args.router.split(",") if r.strip()]
    trace, label = _load_whole_trace(args)
    config = _cache_config(args, trace.block_size, trace.block_source)
    load = LoadModel(prefill_tokens_per_s=args.prefill_tps, decode_tokens_per_s=args.decode_tps,
                     default_output_tokens=args.output_tokens)
    prefix_blocks = args.prefix_blocks or max(1, 256 // trace.block_size)
    results = []
    for name in names:
        router = RouterConfig(name, seed=args.seed, prefix_blocks=prefix_blocks, routing_key=args.routing_key,
                              overflow_per_min=args.overflow_per_min, cache_threshold=args.cache_threshold,
                              balance_abs_threshold=args.balance_abs, balance_rel_threshold=args.balance_rel,
                              overlap_weight=args.overlap_weight)
        results.append(run_fleet(trace, args.replicas, router, config=config, load=load, impl=args.impl,
                                 workers=args.workers, executor=args.executor))
    if args.json != "-":
        print_fleet(results, label, per_replica=args.per_replica)
    _write_json(args, {"trace": {"label": label, "requests": trace.n_requests, "blocks": trace.n_blocks,
                                 "block_size": trace.block_size},
                       "replicas": args.replicas, "routers": [r.to_dict() for r in results]})
    return 0


COMMANDS += [_add_interference, _add_fleet]
def _parse_option(text: str) -> tuple[str, object]:
    """``name=value`` for a rule-set field; the value is read as JSON when it parses (numbers, true, ...)."""
    import json

    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, list):
        value = tuple(value)
    return name.strip(), value


def _add_prices(sub) -> None:
    p = sub.add_parser("prices", help="list the provider price registry (dated rows with sources)",
                       description="List the price registry: USD per 1M tokens, each row dated and with its "
                                   "source. --file overrides or extends it with your own TOML rows.")
    p.add_argument("--file", metavar="TOML", help="your price file (same layout as the shipped prices.toml)")
    p.add_argument("--provider", help="only this provider's rows")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(run=_run_prices)


def _run_prices(args) -> int:
    from cachesim.providers.cli_support import print_prices

    print_prices(args.file, args.provider, as_json=args.json)
    return 0


def _add_cost(sub) -> None:
    p = sub.add_parser("cost", help="what a trace costs under a provider's prompt cache",
                       description="Replay token-level requests under a provider's prompt-cache rules and bill "
                                   "them: uncached input, cache writes by TTL, reads, output; dollars with and "
                                   "without the cache; miss causes. Without TRACE, uses the built-in agent "
                                   "workload.")
    p.add_argument("trace", nargs="?", help="provider trace (JSONL with tokens, breakpoints, boundaries, usage)")
    p.add_argument("--provider", default="anthropic", help="anthropic, openai, openai-5.6, gemini or deepseek")
    p.add_argument("--model", help="model name as in `cachesim prices` (default: the provider's default)")
    p.add_argument("--set", dest="options", action="append", type=_parse_option, default=[], metavar="NAME=VALUE",
                   help="a rule option, e.g. ttft_s=0.5, isolation=tenant, cache_key=session (repeatable)")
    p.add_argument("--long-ttl", choices=["none", "first"], default="none",
                   help="built-in workload: mark the first of several breakpoints 1h")
    p.add_argument("--workload", choices=["native", "chatty"], default="native")
    p.add_argument("--users", type=parse_count, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prices", metavar="TOML", help="your price file, overriding the registry's rows")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT ('-' for stdout)")
    p.add_argument("--per-request", metavar="CSV", help="write one row per request as CSV")
    p.add_argument("--impl", choices=["core", "reference"], default="core")
    p.add_argument("--vs", action="append", type=_parse_option, default=[], metavar="NAME=VALUE",
                   help="what would a change save: replay again with this rule option (or provider=, model=, "
                        "long_ttl=) changed and compare (repeatable)")
    p.set_defaults(run=_run_cost)


def _run_cost(args) -> int:
    from cachesim.providers.cli_support import run_cost

    return run_cost(args)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="what an agent harness's style costs under Anthropic and OpenAI caching",
                       description="Generate the same queries from a cache-friendly (native) and a cache-hostile "
                                   "(chatty) agent harness, replay both under the Anthropic and OpenAI rules, and "
                                   "compare requests, tokens, hit ratio and dollars per query.")
    p.add_argument("--users", type=parse_count, default=8, help="users (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prices", metavar="TOML", help="your price file, overriding the registry's rows")
    p.add_argument("--json", metavar="OUT", help="write the figures as JSON to OUT ('-' for stdout)")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    import json

    from cachesim.demo import print_demo, run_demo

    demo = run_demo(n_users=args.users, seed=args.seed, prices_file=args.prices)
    if args.json == "-":
        sys.stdout.write(json.dumps(demo, indent=2) + "\n")
        return 0
    print_demo(demo)
    if args.json:
        Path(args.json).write_text(json.dumps(demo, indent=2) + "\n")
    return 0


COMMANDS += [_add_prices, _add_cost, _add_demo]
def _parse_list(parse_one: Callable, unbounded: str) -> Callable:
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


def _add_mrc(sub) -> None:
    p = sub.add_parser("mrc", help="hit-ratio curve of an LRU prefix cache at every capacity (and TTL), one pass",
                       description="Print (and plot) the LRU hit-ratio curve of a trace: hit ratio against cache "
                                   "capacity, for one or more TTLs, from one pass over the trace. Exact (equal "
                                   "to a replay at each capacity) unless --sample is given.")
    _add_input_args(p, "profile")
    p.add_argument("--capacities", type=_parse_list(parse_count, "unbounded"), metavar="LIST",
                   help="capacities in blocks, e.g. 1k,10k,100k,none (default: a log-spaced grid up to the "
                        "trace's distinct blocks, then unbounded)")
    p.add_argument("--ttl", type=_parse_list(parse_seconds, "no expiry"), metavar="LIST",
                   help="TTLs refreshed on use, e.g. 300,1h (the no-TTL curve is always shown too)")
    p.add_argument("--kv-bytes-per-token", type=parse_count, metavar="BYTES",
                   help="KV-cache bytes per token of the model, to state capacities in GB (e.g. 160k)")
    p.add_argument("--hit-cap", choices=["prompt-1"], help="cap hits so at least one prompt token is computed")
    p.add_argument("--isolation", choices=["tenant"], help="tenants never share cache entries")
    p.add_argument("--warmup", metavar="N|Ns", help="leave the first N requests (or N seconds) out of the counts")
    p.add_argument("--sample", type=float, metavar="RATE", help="SHARDS-style sampling rate in (0, 1) for huge "
                   "traces: an estimate (docs/mrc.md gives its measured error)")
    p.add_argument("--always-tokens", type=int, default=2048, metavar="N",
                   help="with --sample, track every block of a request's first N tokens (default 2048)")
    p.add_argument("--plot", metavar="PNG", help="plot hit ratio against capacity to PNG (needs cachesim[plot])")
    p.add_argument("--json", metavar="OUT", help="write the curves as JSON to OUT ('-' for stdout)")
    p.set_defaults(run=_run_mrc)


def _run_mrc(args) -> int:
    import orjson

    from cachesim.mrc import default_capacities, plot_curve, print_curves, stack_profile

    hit_cap = args.hit_cap
    if args.preset:
        from cachesim.presets import get_preset

        hit_cap = hit_cap or get_preset(args.preset).hit_cap
    if args.sample is not None and not 0 < args.sample < 1:
        raise ValueError(f"--sample must be a rate between 0 and 1, got {args.sample}")
    trace, label = _load_whole_trace(args)
    profile = stack_profile(trace, sample_rate=args.sample or 1.0, always_tokens=args.always_tokens,
                            hit_cap=hit_cap, isolation=args.isolation, warmup=args.warmup)
    capacities = args.capacities or default_capacities(profile)
    ttls = [None] + [x for x in (args.ttl or []) if x is not None]
    table = profile.table(capacities, ttls)
    curves = [table.curve(k) for k in range(len(ttls))]
    if args.json:
        data = {"trace": label, "requests": trace.n_requests, "distinct_blocks": profile.distinct_keys,
                "longest_request_blocks": profile.longest_request_blocks,
                "curves": [c.to_dict(args.kv_bytes_per_token) for c in curves]}
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode() + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).write_text(text)
    if args.json != "-":
        print_curves(curves, trace, label, profile, args.kv_bytes_per_token)
    if args.plot:
        plot_curve(curves, args.plot, args.kv_bytes_per_token, title=f"LRU hit-ratio curve: {Path(label).name}")
        if args.json != "-":
            print(f"plot written to {args.plot}")
    return 0


COMMANDS += [_add_mrc]


_SWEEP_AXIS_OPTIONS = {  # option -> grid axis; each takes a comma-separated list
    "capacity": "capacity_blocks", "policy": "policy", "ttl": "ttl_s", "block_size": "block_size",
    "hit_cap": "hit_cap", "isolation": "isolation", "warmup": "warmup", "preset": "preset",
}


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="replay a trace under every configuration of a grid",
                       description="Replay a trace under every configuration of a grid (capacities x policies x "
                                   "TTLs x block sizes ...) and write one row per configuration. Without TRACE, "
                                   "sweeps the built-in synthetic agent workload.")
    p.add_argument("trace", nargs="?", help="trace file (Mooncake JSONL, native JSONL, or a compiled .npz)")
    p.add_argument("--format", help="trace format (default: sniffed from the content)")
    p.add_argument("--grid", metavar="TOML", help="grid file: one `axis = [values]` line per axis")
    axes = p.add_argument_group("axes (comma-separated values; each adds to or replaces an axis of --grid)")
    axes.add_argument("--capacity", metavar="LIST", help="capacities in blocks, e.g. 1k,10k,100k,unbounded")
    axes.add_argument("--policy", metavar="LIST", help="eviction policies, e.g. lru,s3fifo")
    axes.add_argument("--ttl", metavar="LIST", help="TTLs, e.g. none,5m,1h")
    axes.add_argument("--block-size", metavar="LIST", help="tokens per block, e.g. 16,32 (token-id traces only)")
    axes.add_argument("--hit-cap", metavar="LIST", help="hit caps: none,prompt-1")
    axes.add_argument("--isolation", metavar="LIST", help="isolation: none,tenant")
    axes.add_argument("--warmup", metavar="LIST", help="warmups: requests (100) or seconds (600s)")
    axes.add_argument("--preset", metavar="LIST", help="engine presets: vllm,sglang")
    p.add_argument("-o", "--out", metavar="FILE", help="write the table (.csv, .json or .parquet); rows are "
                   "checkpointed beside it as they finish")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep from its checkpoint")
    p.add_argument("--executor", default=None, help="processes (default), serial, dask (a local cluster) or ray")
    p.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler (tcp://HOST:PORT) or Ray cluster "
                   "(ray://HOST:PORT) to run on")
    p.add_argument("--workers", type=parse_count, help="local worker processes (default: one per core)")
    p.add_argument("--shared-dir", metavar="DIR", help="where the compiled trace is shared from (must be visible "
                   "to every worker: a shared filesystem for a remote cluster)")
    p.add_argument("--users", type=parse_count, default=8, help="users in the built-in workload")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in workload")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_const", const=True, default=None,
                     help="show the progress bar even when stderr is not a terminal")
    bar.add_argument("--no-progress", dest="progress", action="store_const", const=False)
    p.set_defaults(run=_run_sweep)


def _run_sweep(args) -> int:
    from cachesim.sweep import checkpoint_path, load_grid, print_sweep, run_sweep

    grid: dict = dict(load_grid(args.grid)) if args.grid else {}
    for option, axis in _SWEEP_AXIS_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            grid[axis] = value.split(",")
    if not grid:
        raise ValueError("nothing to sweep: give --grid FILE or axes such as --capacity 1k,10k,100k")
    trace, label = args.trace, None
    if trace is None:
        from cachesim.workloads import agent_workload

        trace = agent_workload(n_users=args.users, seed=args.seed).requests
        label = f"built-in agent workload ({args.users} users, seed {args.seed})"
    executor = args.scheduler or args.executor
    if args.scheduler and args.executor not in (None, "dask", "ray"):
        raise ValueError(f"--scheduler runs on Dask or Ray, not on --executor {args.executor}")
    if args.scheduler and args.executor == "ray" and not args.scheduler.startswith("ray://"):
        executor = "ray://" + args.scheduler.split("://")[-1]
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".csv", ".json", ".parquet", ".pq"):
        raise ValueError(f"{out}: unknown output format {out.suffix or '(none)'}; use .csv, .json or .parquet")
    checkpoint = checkpoint_path(out) if out is not None else None
    result = run_sweep(trace, grid, executor, workers=args.workers, checkpoint=checkpoint, resume=args.resume,
                       progress=args.progress, shared_dir=args.shared_dir, label=label, format=args.format)
    print_sweep(result)
    if out is not None:
        result.write(out)
        checkpoint.unlink(missing_ok=True)  # the table holds every row now
        print(f"wrote {len(result.rows)} rows to {out}")
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page of a sweep or replay result",
                       description="Render a sweep result (cachesim sweep -o RESULT.json) or a replay result "
                                   "(cachesim replay --json RESULT.json) as one HTML page with the figures "
                                   "embedded and the summary tables.")
    p.add_argument("result", help="RESULT.json from cachesim sweep or cachesim replay")
    p.add_argument("-o", "--out", metavar="HTML", default="report.html", help="output page (default report.html)")
    p.add_argument("--title", help="page title")
    p.set_defaults(run=_run_report)


def _run_report(args) -> int:
    from cachesim.html_report import write_report

    write_report(args.result, args.out, title=args.title)
    print(f"wrote {args.out}")
    return 0


COMMANDS.extend([_add_sweep, _add_report])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachesim", description="Prompt-cache emulator: replay LLM request "
                                     "traces through an emulated prefix cache.")
    parser.add_argument("--version", action="version", version=f"cachesim {VERSION}")
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
