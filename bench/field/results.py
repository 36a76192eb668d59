"""Benchmark results kept as JSON beside the plots and rendered into docs/performance.md between markers,
so one benchmark run regenerates the document's tables (a partial run updates only its own rows).

Tracked files are written only when asked (``pytest bench/ --update-docs``, or CACHESIM_BENCH_UPDATE_DOCS=1):
measuring must not dirty a checkout. Without it a run's rows are kept in memory, so its own tables and
summary still see them."""

from __future__ import annotations

import json
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLOTS = ROOT / "bench" / "plots"
DOC = ROOT / "docs" / "performance.md"
UPDATE_ENV = "CACHESIM_BENCH_UPDATE_DOCS"
_unsaved: dict[str, dict] = {}   # sections recorded by this run but not written


def updating() -> bool:
    """Whether this run writes bench/plots and docs/performance.md."""
    return os.environ.get(UPDATE_ENV) == "1"


def unsaved_sections() -> list[str]:
    return sorted(_unsaved)


def load(section: str) -> dict:
    """The rows recorded so far in bench/plots/<section>.json ("_machine" holds the machine's description)."""
    if section in _unsaved:
        return dict(_unsaved[section])
    path = PLOTS / f"{section}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record(section: str, row: str, values: dict) -> dict:
    """Merge one row into bench/plots/<section>.json (stamped with the date and machine) and return the section;
    only in memory unless updating()."""
    data = load(section)
    data[row] = dict(values, measured=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    data["_machine"] = machine()
    if not updating():
        _unsaved[section] = data
        return dict(data)
    PLOTS.mkdir(parents=True, exist_ok=True)
    (PLOTS / f"{section}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 2**20:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {cores} cores{memory}, Python {platform.python_version()}, {platform.system()}"


def write_section(name: str, markdown: str) -> None:
    """Replace the text between <!-- name:begin --> and <!-- name:end --> in docs/performance.md (when updating)."""
    if not updating() or not DOC.exists():
        return
    text = DOC.read_text()
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        return
    DOC.write_text(pattern.sub(lambda m: m.group(1) + markdown.rstrip() + "\n" + m.group(2), text))


def ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
