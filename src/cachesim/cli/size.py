"""``cachesim size``: the smallest LRU cache reaching a target token hit ratio, per TTL, in blocks, tokens and
bytes of a model's KV cache, from one streamed pass (exact: equal to a replay at that capacity)."""

from __future__ import annotations

import argparse

from cachesim.cli._options import (
    add_command,
    add_hit_cap_and_isolation,
    add_input_args,
    emit,
    preset,
    stream_input,
)

DEFAULT_TTLS = "none,5m,1h"   # no expiry, and the two TTLs providers sell (5 minutes, 1 hour)


def add_parser(sub) -> None:
    p = add_command(sub, "size", help="smallest cache reaching a target token hit ratio, per TTL, in blocks, tokens "
                                    "and bytes of a model",
                       description="Find the smallest LRU prefix cache whose token hit ratio (hit tokens / prompt "
                                   "tokens) reaches --target, for each TTL: in blocks, tokens and, with --model, "
                                   "bytes. Exact, from one pass over the trace; says when a target is out of reach "
                                   "and what the ceiling (the unbounded cache's hit ratio) is.")
    add_input_args(p, "size a cache for")
    p.add_argument("--target", required=True, metavar="RATIO", help="token hit ratio to reach, e.g. 30%% or 0.3")
    p.add_argument("--model", metavar="NAME|CONFIG", help="state sizes in bytes for this model: a built-in name "
                   "(cachesim.models.MODELS: llama-3.1-8b, deepseek-v3, ...) or a Hugging Face config.json")
    p.add_argument("--ttl", default=DEFAULT_TTLS, metavar="LIST", help="TTLs refreshed on use, none = no expiry "
                   f"(default {DEFAULT_TTLS})")
    add_hit_cap_and_isolation(p)
    p.add_argument("--warmup", metavar="N|Ns", help="leave the first N requests (or N seconds) out of the counts")
    p.add_argument("--json", metavar="OUT", help="write the answers as JSON to OUT ('-' for stdout)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")


def _ttls(text: str) -> list[float | None]:
    """--ttl's list, no expiry first when asked, each TTL once (in the order given)."""
    from cachesim.units import parse_seconds

    ttls: list[float | None] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            ttl = None if item.lower() in ("none", "inf", "unbounded") else parse_seconds(item)
        except ValueError as exc:
            raise ValueError(f"--ttl: {exc}") from None
        if ttl not in ttls:
            ttls.append(ttl)
    if not ttls:
        raise ValueError(f"--ttl: expected a comma-separated list of TTLs such as none,5m,1h, got {text!r}")
    return ttls


def _inputs(args):
    """--target, --model and --ttl read before the trace is, so a bad one costs nothing."""
    from cachesim.models import get_model
    from cachesim.units import parse_ratio

    try:
        target = parse_ratio(args.target)
    except ValueError as exc:
        raise ValueError(f"--target: {exc}") from None
    try:
        model = get_model(args.model) if args.model else None
    except ValueError as exc:
        raise ValueError(f"--model: {exc}") from None
    return target, model, _ttls(args.ttl)


def answer(sizes_of, target: float, model) -> list[dict]:
    """Per TTL: the smallest capacity reaching ``target`` (None when out of reach) and the ceiling."""
    from cachesim.models import bytes_for

    block_size = sizes_of.stack.block_size or 0
    rows = []
    for ttl in sizes_of.ttls_s:
        hit_tokens, hit_blocks = sizes_of.hit_tokens(ttl), sizes_of.hit_blocks(ttl)
        total = sizes_of.prompt_tokens
        capacity = sizes_of.min_capacity(target, ttl)
        # the smallest capacity that already hits all an unbounded cache hits
        full = int(hit_tokens.searchsorted(hit_tokens[-1])) if hit_tokens[-1] else None
        row = {"ttl_s": ttl, "capacity_blocks": capacity, "capacity_tokens": None, "capacity_bytes": None,
               "token_hit_ratio": None, "block_hit_ratio": None,
               "ceiling_token_hit_ratio": float(hit_tokens[-1] / total) if total else 0.0,
               "ceiling_block_hit_ratio": float(hit_blocks[-1] / sizes_of.blocks) if sizes_of.blocks else 0.0,
               "ceiling_capacity_blocks": full}
        if capacity is not None:
            row.update(capacity_tokens=capacity * block_size,
                       capacity_bytes=bytes_for(capacity, block_size, model) if model else None,
                       token_hit_ratio=float(hit_tokens[capacity] / total),
                       block_hit_ratio=float(hit_blocks[capacity] / sizes_of.blocks))
        rows.append(row)
    return rows


def run(args) -> int:
    import orjson

    from cachesim._contract import RATIO_DEFINITIONS
    from cachesim.mrc import CapacityHistogram
    from cachesim.report.size import print_sizes

    target, model, ttls = _inputs(args)
    hit_cap = args.hit_cap or (preset(args).hit_cap if args.preset else None)
    # streamed: the pass keeps its stack and a count per depth and TTL, nothing per block of the trace
    sizes_of = CapacityHistogram(ttls, hit_cap=hit_cap, isolation=args.isolation, warmup=args.warmup)
    label = stream_input(args, "size", sizes_of.feed, lambda: sizes_of.stack.requests)
    data = {"trace": label, "requests": sizes_of.stack.requests, "block_size": sizes_of.stack.block_size,
            "policy": "lru", "hit_cap": hit_cap, "isolation": args.isolation, "warmup": args.warmup,
            "target_token_hit_ratio": target, "model": model.to_dict() if model else None,
            "prompt_tokens": sizes_of.prompt_tokens, "blocks": sizes_of.blocks,
            "sizes": answer(sizes_of, target, model), "definitions": dict(RATIO_DEFINITIONS)}
    if args.json:
        emit(args.json, orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    if args.json != "-":
        print_sizes(data)
    return 0
