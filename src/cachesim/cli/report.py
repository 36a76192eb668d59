"""``cachesim report``: one self-contained HTML page of any command's JSON result."""

from __future__ import annotations

from cachesim.cli._options import parse_count


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page of a replay, sweep, mrc, cost, fleet or "
                                      "interference result",
                       description="Render the JSON of cachesim replay --json, sweep -o RESULT.json, mrc --json, "
                                   "cost --json, fleet --json or interference --json (the kind is read from the "
                                   "content) as one HTML page: the trace and configuration, the figures embedded, "
                                   "the tables the command prints.")
    p.add_argument("result", help="RESULT.json written by one of those commands")
    p.add_argument("-o", "--out", metavar="HTML", default="report.html", help="output page (default report.html)")
    p.add_argument("--title", help="page title")
    p.add_argument("--kv-bytes-per-token", type=parse_count, metavar="BYTES",
                   help="KV-cache bytes per token of the model, to state capacities in GB (e.g. 160k); an mrc "
                        "result run with --kv-bytes-per-token carries its own")


def run(args) -> int:
    from cachesim.report import write_report

    write_report(args.result, args.out, title=args.title, kv_bytes_per_token=args.kv_bytes_per_token)
    print(f"wrote {args.out}")
    return 0
