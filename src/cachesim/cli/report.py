"""``cachesim report``: one self-contained HTML page of any command's JSON result."""

from __future__ import annotations

from cachesim.cli._options import add_command, add_kv_bytes_args, kv_bytes_per_token


def add_parser(sub) -> None:
    p = add_command(sub, "report", help="one self-contained HTML page of a replay, sweep, mrc, cost, fleet or "
                                      "interference result",
                       description="Render the JSON of cachesim replay --json, sweep -o RESULT.json, mrc --json, "
                                   "cost --json, fleet --json or interference --json (the kind is read from the "
                                   "content) as one HTML page: the trace and configuration, the figures embedded, "
                                   "the tables the command prints.")
    p.add_argument("result", help="RESULT.json written by one of those commands")
    p.add_argument("-o", "--out", metavar="HTML", default="report.html", help="output page (default report.html)")
    p.add_argument("--title", help="page title")
    add_kv_bytes_args(p, "; an mrc result run with either carries its own")


def run(args) -> int:
    from cachesim.report import write_report

    write_report(args.result, args.out, title=args.title, kv_bytes_per_token=kv_bytes_per_token(args))
    print(f"wrote {args.out}")
    return 0
