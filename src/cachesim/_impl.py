"""Choosing the implementation: the compiled core, or the reference model when asked for by name."""

from __future__ import annotations

import os
from types import ModuleType

IMPLEMENTATIONS = ("core", "reference")

_BUILD_HINT = (
    "cachesim's compiled core (cachesim._core) is not built. Install the package with a C compiler present:\n"
    "    pip install .            (or: pip install -e '.[test]' for development)\n"
    "or build it in place:  python setup.py build_ext --inplace\n"
    "The pure-Python reference model is never a silent fallback; to use it on purpose set CACHESIM_PUREPYTHON=1 "
    "or pass impl='reference'."
)


def default_impl() -> str:
    return "reference" if os.environ.get("CACHESIM_PUREPYTHON", "") not in ("", "0") else "core"


def load(impl: str | None = None) -> ModuleType:
    """The module implementing compile_* and Engine: ``cachesim._core`` or ``cachesim._reference``."""
    impl = impl or default_impl()
    if impl == "core":
        try:
            from cachesim import _core
        except ImportError as exc:
            raise ImportError(_BUILD_HINT) from exc
        return _core
    if impl == "reference":
        from cachesim import _reference
        return _reference
    raise ValueError(f"unknown impl {impl!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
