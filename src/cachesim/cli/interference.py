"""``cachesim interference``: tenants sharing one cache, each alone, and under each remedy."""

from __future__ import annotations

import argparse
from pathlib import Path

from cachesim.cli._options import (
    add_command,
    add_trace_source,
    cache_config,
    console,
    load_whole_trace,
    parse_count,
    parse_seed,
    real,
    require_figure,
    require_trace_output,
    trace_summary,
    write_json,
)


def _parse_quota(text: str) -> tuple[str, int]:
    name, sep, blocks = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected TENANT=BLOCKS, got {text!r}")
    return name, parse_count(blocks)


def add_parser(sub) -> None:
    p = add_command(sub, "interference", tables=True,
                    help="tenants sharing a cache: counterfactual isolation and remedies",
                       description="Replay a trace's tenants sharing one cache, each alone (counterfactual), and "
                                   "under each remedy (namespace isolation, per-tenant quotas, a reserved partition "
                                   "for a priority tenant); print their hit ratios side by side. See "
                                   "docs/interference.md.")
    add_trace_source(p, "share", isolation=False)
    p.add_argument("--name", help="tenant name for the TRACE's requests when mixing in an agent "
                                  "(default: the file name's stem)")
    p.add_argument("--add-agent", choices=["chatty", "native"], help="mix in a generated agent workload as one "
                   "more tenant (compiled at the trace's block size)")
    p.add_argument("--agent-users", type=parse_count, default=32, help="users of the generated agent")
    p.add_argument("--agent-seed", type=parse_seed, default=0, help="seed of the generated agent")
    p.add_argument("--agent-name", help="tenant name of the generated agent (default: agent-STYLE)")
    p.add_argument("--keep-tenants", action="store_true", help="when mixing, keep each source's own tenants "
                   "(as SOURCE/TENANT) instead of one tenant per source")
    p.add_argument("--priority", metavar="TENANT", help="compare a reserved partition for this tenant")
    p.add_argument("--reserve", type=real(above=0.0, below=1.0), default=0.5, help="the priority tenant's share of the "
                   "capacity (default 0.5)")
    p.add_argument("--quota", type=_parse_quota, action="append", metavar="TENANT=BLOCKS",
                   help="a tenant's quota (repeatable); tenants without one split the rest equally")
    p.add_argument("--alone", choices=["same", "share"], default="same", help="counterfactual capacity: the "
                   "full capacity (default) or an equal share")
    p.add_argument("--heatmap", metavar="PNG|SVG", help="draw the shared cache's hits_from tenant x tenant matrix")
    p.add_argument("--save-trace", metavar="OUT.npz", help="save the (mixed) trace, e.g. for 'cachesim fleet'")


def run(args) -> int:
    from dataclasses import replace

    if args.save_trace:
        require_trace_output(args.save_trace, "--save-trace")
    require_figure(args.heatmap, "--heatmap")

    from cachesim.interference import compare_remedies
    from cachesim.report import print_report
    from cachesim.trace import merge_traces

    trace, label = load_whole_trace(args)
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
    if args.quota:
        unknown = sorted(set(dict(args.quota)) - set(trace.tenant_names))
        if unknown:
            raise ValueError(f"--quota names no tenant of the trace: {', '.join(unknown)}; the trace has "
                             f"{', '.join(trace.tenant_names)}")
    if args.save_trace:
        trace.save(args.save_trace)
    # who evicted whom in the shared cache is part of this report: track it whatever --interference says
    config = replace(cache_config(args, trace.block_size, trace.block_source), interference=True)
    report = compare_remedies(trace, config, priority=args.priority, reserve=args.reserve,
                              quotas=dict(args.quota) if args.quota else None, alone_capacity=args.alone,
                              impl=args.impl, workers=args.workers, executor=args.executor)
    if args.json != "-":
        print_report(report, label, console=console(args))
    data = report.to_dict()
    data["trace"] = trace_summary(trace, label)
    write_json(args, data)
    if args.heatmap:
        try:
            from cachesim.figures import tenant_heatmap
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
