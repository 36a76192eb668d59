"""Benchmarks print a summary of throughput ratios at the end (machines here are noisy: compare ratios)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

RESULTS: list[tuple[str, str]] = []


def pytest_addoption(parser):
    parser.addoption("--update-docs", action="store_true", default=False,
                     help="write the results into bench/plots/ and docs/performance.md (tracked files)")


def pytest_configure(config):
    from field.results import UPDATE_ENV

    if config.getoption("--update-docs"):
        os.environ[UPDATE_ENV] = "1"


def report(name: str, text: str) -> None:
    RESULTS.append((name, text))


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.write_sep("=", "cachesim throughput and memory")
        for name, text in RESULTS:
            terminalreporter.write_line(f"{name:<48} {text}")
    from field.results import unsaved_sections

    if unsaved_sections():
        terminalreporter.write_line(f"results of {', '.join(unsaved_sections())} not written to bench/plots/ or "
                                    "docs/performance.md; rerun with --update-docs to write them")


def best_seconds(fn, rounds: int = 3) -> float:
    """The fastest of ``rounds`` wall-clock runs of ``fn()``: the least disturbed by the machine's other work."""
    import time

    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
