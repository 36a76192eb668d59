"""Benchmarks print a summary of throughput ratios at the end (machines here are noisy: compare ratios)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

RESULTS: list[tuple[str, str]] = []


def report(name: str, text: str) -> None:
    RESULTS.append((name, text))


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    if RESULTS:
        terminalreporter.write_sep("=", "cachesim throughput and memory")
        for name, text in RESULTS:
            terminalreporter.write_line(f"{name:<48} {text}")
