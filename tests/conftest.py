"""Shared fixtures: every engine test runs against the compiled core and the reference model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from cachesim import _impl

settings.register_profile("dev", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
# the long run of the properties the issues state at 10^4 examples (isolation, the twins): minutes, not the suite
settings.register_profile("long", max_examples=10_000, deadline=None, derandomize=False, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
# a command that runs past the progress interval on a loaded machine would add a line to stderr that tests
# comparing stderr do not expect; the tests of those lines set their own interval
os.environ.setdefault("CACHESIM_PROGRESS_INTERVAL_S", "3600")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

SHARED_TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
MOONCAKE_CONVERSATION = SHARED_TRACES / "mooncake" / "conversation_trace.jsonl"
DATA = Path(__file__).parent / "data"


def pytest_collection_modifyitems(config, items):
    """Under CACHESIM_PUREPYTHON=1 the suite runs on the reference model: tests marked ``core`` (they name the
    compiled core or its kernels, or need its speed) are skipped, and say so, rather than reported as passed."""
    if _impl.default_impl() != "reference":
        return
    skip = pytest.mark.skip(reason="needs the compiled core (marked 'core'); this run is CACHESIM_PUREPYTHON=1, "
                                   "the reference model. The default run covers it")
    for item in items:
        if item.get_closest_marker("core") is not None:
            item.add_marker(skip)


@pytest.fixture(params=["core", "reference"], scope="session")
def impl(request) -> str:
    return request.param


def require_shared(path: Path) -> Path:
    """The path of a shared trace, or a skip that says why (the traces live beside the checkout, not in it)."""
    if not path.exists():
        pytest.skip(f"{path} is absent: the real traces live in ../shared/traces beside the checkout")
    return path
