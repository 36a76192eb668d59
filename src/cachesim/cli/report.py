"""``cachesim report``: one self-contained HTML page of a sweep or replay result."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML page of a sweep or replay result",
                       description="Render a sweep result (cachesim sweep -o RESULT.json) or a replay result "
                                   "(cachesim replay --json RESULT.json) as one HTML page with the figures "
                                   "embedded and the summary tables.")
    p.add_argument("result", help="RESULT.json from cachesim sweep or cachesim replay")
    p.add_argument("-o", "--out", metavar="HTML", default="report.html", help="output page (default report.html)")
    p.add_argument("--title", help="page title")


def run(args) -> int:
    from cachesim.report import write_report

    write_report(args.result, args.out, title=args.title)
    print(f"wrote {args.out}")
    return 0
