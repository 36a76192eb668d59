"""Mutation fuzzer CLI (issue 16): every class of outcome counted per kind, every non-clean case reported.

    python bench/fuzz/run.py --seed 0 --budget 300 --kind all --out report.json [--jobs 2] [--work DIR]

``--budget`` is per kind. Inputs are kept under ``--work`` (a temp dir by default) so each finding can be rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # plain modules beside this file

import arrays  # noqa: E402
import npz  # noqa: E402
import proc  # noqa: E402
import readers  # noqa: E402

KINDS = ("readers", "arrays", "npz")


def _check_target() -> None:
    """The children must import this worktree's cachesim, not an installed or sibling copy."""
    r = proc.run([sys.executable, "-c", "import cachesim; print(cachesim.__file__)"])
    if r.returncode != 0 or not r.stdout.strip().startswith(str(proc.SRC)):
        raise SystemExit(f"children import cachesim from {r.stdout.strip() or r.stderr.strip()!r}, not {proc.SRC}")


def run_kind(kind: str, seed: int, budget: int, work: Path, jobs: int) -> list[dict]:
    if kind == "readers":
        # thread per child process: the work is in the children, the order of results is the order of cases
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = pool.map(lambda c: readers.run_case(*c), readers.cases(seed, budget, work))
            return [row for rows in results for row in rows]
    if kind == "arrays":
        return arrays.run(seed, budget, work, jobs)
    return npz.run(seed, budget, work, jobs)


def summarize(rows: list[dict]) -> str:
    classes = sorted({r["class"] for r in rows}, key=lambda c: (c not in proc.CLEAN, c))
    kinds = sorted({r["kind"] for r in rows}, key=KINDS.index)
    counts = Counter((r["kind"], r["class"]) for r in rows)
    width = max([len(c) for c in classes] + [8])
    lines = [f"{'class':<{width}} " + " ".join(f"{k:>8}" for k in kinds) + f" {'total':>8}"]
    for c in classes:
        per = [counts[(k, c)] for k in kinds]
        lines.append(f"{c:<{width}} " + " ".join(f"{n:>8}" for n in per) + f" {sum(per):>8}")
    per = [sum(counts[(k, c)] for c in classes) for k in kinds]
    lines.append(f"{'runs':<{width}} " + " ".join(f"{n:>8}" for n in per) + f" {sum(per):>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=200, help="cases per kind")
    ap.add_argument("--kind", choices=(*KINDS, "all"), default="all")
    ap.add_argument("--out", type=Path, help="JSON report of every non-clean case")
    ap.add_argument("--jobs", type=int, default=1, help="child processes at once (the machine is shared)")
    ap.add_argument("--work", type=Path, help="where mutated inputs are kept (default: a new temp dir)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    _check_target()
    work = args.work or Path(tempfile.mkdtemp(prefix="cachesim-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    rows, timing = [], {}
    for kind in KINDS if args.kind == "all" else (args.kind,):
        start = time.monotonic()
        rows += run_kind(kind, args.seed, args.budget, work / kind, args.jobs)
        timing[kind] = round(time.monotonic() - start, 1)
    findings = [r for r in rows if r["class"] not in proc.CLEAN]
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["kind"], Counter())[r["class"]] += 1
    report = {"seed": args.seed, "budget": args.budget, "work": str(work), "seconds": timing,
              "counts": {k: dict(v) for k, v in counts.items()}, "findings": findings}
    if not args.quiet:
        print(summarize(rows))
        print(f"inputs under {work}; {len(findings)} non-clean runs" + (f" -> {args.out}" if args.out else ""))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()
