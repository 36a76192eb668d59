"""``cachesim cost``: a trace billed under a provider's prompt-cache rules, and what a change (``--vs``) saves."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cachesim._impl import IMPLEMENTATIONS
from cachesim.cli._options import (
    add_command,
    add_reading_flags,
    console,
    emit,
    parse_count,
    print_notes,
    read_whole,
    recorded_warnings,
    synthesized,
)
from cachesim.providers.rules import PROVIDERS

_LONG_TTL = ("none", "first")


def _pair(text: str) -> tuple[str, str]:
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), raw


def _typed(parse, name: str, raw: str) -> tuple[str, object]:
    """(name, value) as ``parse(name, raw)`` reads it; its ValueError, which names the option, as argparse's."""
    try:
        return name, parse(name, raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rule_option(text: str) -> tuple[str, object]:
    """``--set NAME=VALUE``: a rule option, its value read by the option's declared type (providers/options.py)."""
    from cachesim.providers.options import parse_option

    name, raw = _pair(text)
    if name == "model":
        raise argparse.ArgumentTypeError("the model is --model, not --set model=...")
    return _typed(parse_option, name, raw)


def _change(text: str) -> tuple[str, object]:
    """``--vs NAME=VALUE``: a rule option, or the provider, model or built-in workload's 1h markers to change."""
    from cachesim.providers.options import Option, parse_option
    from cachesim.providers.rules import PROVIDERS

    name, raw = _pair(text)
    whole_run = {"provider": Option("str", choices=tuple(PROVIDERS)), "long_ttl": Option("str", choices=_LONG_TTL)}
    if name in whole_run:
        return _typed(lambda n, r: parse_option(n, r, whole_run[n]), name, raw)
    return _typed(parse_option, name, raw)


def add_parser(sub) -> None:
    p = add_command(sub, "cost", tables=True, help="what a trace costs under a provider's prompt cache",
                       description="Replay token-level requests under a provider's prompt-cache rules and bill "
                                   "them: uncached input, cache writes by TTL, reads, output; dollars with and "
                                   "without the cache; miss causes. Without TRACE, uses the built-in agent "
                                   "workload.")
    p.add_argument("trace", nargs="?", help="a token-level trace: API request logs, Claude Code transcripts, native "
                   "JSONL with breakpoints, boundaries and usage (docs/formats.md), or a directory of them (every "
                   "*.jsonl below it, gzip/zstd too, e.g. ~/.claude/projects/PROJECT)")
    p.add_argument("--provider", choices=PROVIDERS, help=", ".join(PROVIDERS) + " (default: the provider of the "
                   "models the log names, else anthropic)")
    p.add_argument("--model", help="model name as in `cachesim prices` (default: the provider's default)")
    p.add_argument("--set", dest="options", action="append", type=_rule_option, default=[], metavar="NAME=VALUE",
                   help="a rule option, e.g. ttft_s=0.5, isolation=tenant, cache_key=session (repeatable)")
    p.add_argument("--long-ttl", choices=_LONG_TTL, default="none",
                   help="built-in workload: mark the first of several breakpoints 1h")
    p.add_argument("--users", type=parse_count, default=8, help="users in the built-in workload")
    p.add_argument("--prices", metavar="TOML", help="your price file, overriding the registry's rows")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT ('-' for stdout)")
    p.add_argument("--per-request", metavar="CSV", help="write one row per request as CSV")
    p.add_argument("--impl", choices=IMPLEMENTATIONS, default="core")
    p.add_argument("--vs", action="append", type=_change, default=[], metavar="NAME=VALUE",
                   help="what would a change save: replay again with this rule option (or provider=, model=, "
                        "long_ttl=) changed and compare (repeatable)")
    add_reading_flags(p)


def run(args) -> int:
    from cachesim.providers import ProviderInput, make_rules, simulate
    from cachesim.providers.engine import combine, observed_cost
    from cachesim.providers.prices import load_prices
    from cachesim.providers.report import (
        calibration,
        print_calibration,
        print_cost,
        print_variant,
        report_dict,
        retention_bounds,
        write_requests_csv,
    )

    prices = load_prices(args.prices)
    workload, read = None, None
    if args.trace is None:
        from cachesim.workloads import agent_workload

        workload = agent_workload(style=args.workload, n_users=args.users, seed=args.seed)
        inp = ProviderInput.from_workload(workload, long_ttl=args.long_ttl)
        label = (f"built-in agent workload ({args.workload} harness, {args.users} users, seed {args.seed}; "
                 "pass a TRACE file to bill your own)")
    else:
        with recorded_warnings() as caught:
            try:
                read, label = _read_input(args, Path(args.trace))
                inp = ProviderInput.from_read(read)
            finally:
                print_notes(caught)
    args.provider_given = args.provider is not None
    args.provider = args.provider or (_provider_of(read) if read is not None else None) or "anthropic"
    if (read is not None and read.extras.get("explicit_markers") and args.provider == "anthropic"
            and "automatic" not in dict(args.options)):
        args.options = [*args.options, ("automatic", False)]   # the harness's own markers, not the top-level one
    rules = make_rules(args.provider, args.model, **dict(args.options))
    groups = _by_model(args, read, rules) if read is not None and args.model is None else [(None, inp, rules)]
    if len(groups) > 1 and args.vs:
        raise ValueError(f"this log's requests went to {len(groups)} models ({', '.join(r.model for _, _, r in groups)}"
                         "); give --model to compare variants of one")
    changed = _changed(args, inp, workload) if args.vs else None  # a bad --vs fails before any replay
    parts, logged_bill = [], np.full(inp.n_requests, np.nan)
    for index, part, part_rules in groups:
        index = np.arange(inp.n_requests) if index is None else index
        parts.append((index, simulate(part, part_rules, prices=prices, impl=args.impl)))
        bill = observed_cost(part, part_rules, prices)
        logged_bill[index] = np.nan if bill is None else bill
    result = combine(parts, inp.n_requests)
    bounds = retention_bounds(inp, rules, prices) if len(groups) == 1 else None
    report = {"trace": label, **report_dict(result)}   # the page of `cachesim report` names its trace
    if len(groups) > 1:
        report["models"] = {}
        for index, r in parts:
            report["models"][r.model] = report["models"].get(r.model, 0) + int(len(index))
    known_bill = logged_bill[~np.isnan(logged_bill)]
    tie_out = calibration(result, inp, logged_bill if len(known_bill) else None)
    if tie_out:
        report["calibration"] = tie_out
    if bounds:
        report["in_memory_bounds"] = bounds
    variant = None
    if changed is not None:
        vs_result = simulate(*changed, prices=prices, impl=args.impl)
        variant = {"changes": dict(args.vs), "summary": vs_result.summary()}
        report["vs"] = variant
    if args.json != "-":
        print_cost(result, label, console=console(args), bounds=bounds)
        if tie_out:
            print_calibration(tie_out, console=console(args))
        if variant:
            print_variant(result.summary(), variant, console=console(args))
    emit(args.json, json.dumps(report, indent=2, default=str) + "\n")
    if args.per_request:
        write_requests_csv(result, args.per_request)
    return 0


TRACE_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson")


# what a logged model id says of its provider (a Codex rollout names gpt-5.1-codex, a transcript claude-...)
_PROVIDER_PREFIXES = (("claude", "anthropic"), ("gpt-", "openai"), ("o1", "openai"), ("o3", "openai"),
                      ("o4", "openai"), ("codex", "openai"), ("gemini", "gemini"), ("deepseek", "deepseek"))


def _provider_of_model(name: str) -> str | None:
    return next((provider for prefix, provider in _PROVIDER_PREFIXES if name.startswith(prefix)), None)


def _provider_of(read) -> str | None:
    """The provider every model the log names belongs to, or None (no models, or several providers)."""
    providers = {_provider_of_model(name) for name in read.extras.get("model_names") or []}
    return providers.pop() if len(providers) == 1 else None


def _by_model(args, read, rules) -> list[tuple]:
    """(request positions, input, rules) per model the log names: caches and prices are per model, so each model's
    requests are billed on their own (a model switch inside a session starts a new cache). Requests the log names
    no model for get the --provider's default."""
    from cachesim.providers import ProviderInput, make_rules

    codes = read.extras.get("model")
    if codes is None or not (codes >= 0).any():
        return [(None, ProviderInput.from_read(read), rules)]
    names = read.extras["model_names"]
    groups = []
    for code in sorted(set(codes.tolist()), key=lambda c: -int((codes == c).sum())):   # most requests first
        index = np.flatnonzero(codes == code)
        # a directory may hold Claude Code and Codex sessions: each model under its own provider unless --provider
        own = _provider_of_model(names[code]) if code >= 0 else None
        if code < 0 or (args.provider_given and own not in (None, args.provider)):
            part_rules = rules   # asked what this traffic costs elsewhere: that provider's default model
        else:
            provider = args.provider if args.provider_given or own is None else own
            part_rules = make_rules(provider, names[code], **(dict(args.options) if provider == args.provider else {}))
        groups.append((index, ProviderInput.from_read(read.subset(index)), part_rules))
    return groups


def _read_input(args, path: Path):
    """The trace (or every trace file below a directory) as one read result, and its label."""
    from cachesim.providers import ProviderInput
    from cachesim.readers._base import ReadResult

    synthetic = synthesized(args, path)
    if synthetic is not None:
        requests, label = synthetic
        return ReadResult(requests, _numbers(requests.n_requests), str(path), {}), label
    if not path.is_dir():
        return read_whole(args, path).in_time_order(), str(path)
    from cachesim.readers import detect_format
    from cachesim.requests import TraceError

    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(TRACE_SUFFIXES))
    results, foreign = [], []
    for file in files:
        if args.format is None:
            try:   # agent folders hold other JSON lines too (Claude Code's history.jsonl): not traces, not fatal
                detect_format(file)
            except TraceError:
                foreign.append(file.relative_to(path))
                continue
        result = read_whole(args, file)
        ProviderInput.from_read(result)   # each file checked on its own, so an error names its file and line
        results.append(result)
    if foreign:
        import warnings

        warnings.warn(f"{len(foreign):,} files below {path} are not traces of a known format and were skipped "
                      f"(first: {', '.join(map(str, foreign[:3]))})", stacklevel=2)
    if not results:
        raise ValueError(f"{path}: no trace files below it (looked for {', '.join(TRACE_SUFFIXES)})")
    merged = _merged(results, str(path))
    sessions = len(set(merged.requests.session[merged.requests.session >= 0].tolist()))
    return merged, f"{path} ({len(results)} files, {sessions} sessions)"


def _numbers(n: int):
    return np.arange(1, n + 1, dtype=np.int64)


def _merged(results: list, path: str):
    """Files read one by one as one trace: tenants by name across files, each file's sessions its own."""
    import dataclasses

    from cachesim.readers._base import Interner, ReadResult, concat

    def union(lists) -> list[str]:
        interned = Interner()
        for names in lists:
            for name in names:
                interned.code(name)
        return list(interned.names)

    def recode(codes: np.ndarray, names: list[str], into: list[str]) -> np.ndarray:
        table = np.asarray([into.index(name) for name in names] + [-1], dtype=codes.dtype)   # -1 stays -1
        return table[codes] if len(codes) else codes

    # every file interns its own labels: tenants, models and segment kinds are put in one numbering by name
    tenants = union(r.requests.tenant_names for r in results)
    models = union(r.extras.get("model_names", []) for r in results)
    kinds = union(r.extras.get("segment_kinds", []) for r in results)
    recoded, next_session = [], 0
    for result in results:
        r, extras = result.requests, dict(result.extras)
        session = np.where(r.session >= 0, r.session + next_session, -1)
        next_session += int(r.session.max(initial=-1)) + 1
        requests = dataclasses.replace(r, tenant=recode(r.tenant, r.tenant_names, tenants), tenant_names=tenants,
                                       session=session)
        if "model" in extras:
            extras["model"], extras["model_names"] = recode(extras["model"], extras["model_names"], models), models
        if "segments" in extras:
            seg = extras["segments"]
            columns = {**seg.columns, "kind": recode(seg.columns["kind"], extras["segment_kinds"], kinds)}
            extras["segments"], extras["segment_kinds"] = dataclasses.replace(seg, columns=columns), kinds
        recoded.append(ReadResult(requests, result.lines, result.path, extras, result.unit))
    whole = concat(recoded)
    whole = whole.subset(np.argsort(whole.requests.t, kind="stable"))   # files side by side in time: no note
    return ReadResult(whole.requests, whole.lines, path, whole.extras, whole.unit)


def _changed(args, inp, workload) -> tuple:
    """The input and rules of the ``--vs`` replay: provider, model, rule options, or the input's 1h markers
    (``long_ttl``, built-in workload only, so ``workload`` is None for a trace)."""
    from cachesim.providers import ProviderInput, make_rules

    changes = dict(args.vs)
    options = dict(args.options)
    provider = changes.pop("provider", args.provider)
    model = changes.pop("model", args.model if provider == args.provider else None)
    if "long_ttl" in changes:
        if workload is None:
            raise ValueError("--vs long_ttl=... applies to the built-in workload; a trace carries its own markers")
        inp = ProviderInput.from_workload(workload, long_ttl=changes.pop("long_ttl"))
    if provider != args.provider:
        options = {}          # options of one provider mean nothing to another
    options.update(changes)
    return inp, make_rules(provider, model, **options)
