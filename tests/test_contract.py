"""Each name of the contract exists once (cachesim._contract), and the layers import downwards only.

These read the source as text and syntax trees: a second policy list, a second list of per-request output fields,
a second input-error class or version string, a module importing the CLI, or a second thread/process pool would
each pass every behavioural test and still let two copies drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cachesim import _contract

SRC = Path(__file__).resolve().parents[1] / "src" / "cachesim"
DOCS = Path(__file__).resolve().parents[1] / "docs"
REGISTRY = SRC / "_contract.py"


def _python_sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p != REGISTRY)


def _is_data(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) or isinstance(node, ast.Tuple) and all(map(_is_data, node.elts))


def _string_collections(path: Path):
    """(line, strings) for every tuple, list or set literal of a module, and every dict literal whose values are
    plain data (a table of names: ``{"lru": 0, ...}``), with the string constants it spells out. A dict whose
    values are computed (a summary being built, a dispatch table of functions) names no second list."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict) and node.values and all(map(_is_data, node.values)):
            items = node.keys
        else:
            continue
        strings = {item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)}
        if strings:
            yield node.lineno, strings


_QUOTED = re.compile(r"\"([^\"\n]*)\"|'([^'\n]*)'")


def _pyx_string_lines(path: Path):
    """(line number, quoted strings) of every line of a Cython file (its literals rarely span lines)."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        yield number, {a or b for a, b in _QUOTED.findall(line.split("#", 1)[0])}


def _copies_of(names: tuple[str, ...], at_least: int) -> list[str]:
    """Places outside the registry that spell out ``at_least`` or more of ``names`` in one literal."""
    wanted = set(names)
    found = []
    for path in _python_sources():
        for line, strings in _string_collections(path):
            if len(strings & wanted) >= at_least:
                found.append(f"{path.relative_to(SRC)}:{line}")
    for path in sorted(SRC.glob("*.pyx")):
        for line, strings in _pyx_string_lines(path):
            if len(strings & wanted) >= at_least:
                found.append(f"{path.relative_to(SRC)}:{line}")
    return found


def test_the_registry_check_finds_a_copy(tmp_path, monkeypatch):
    # the scanner itself: a planted copy of the policy list is found
    planted = tmp_path / "planted.py"
    planted.write_text('NAMES = ("lru", "fifo", "lfu")\nOTHER = {"sieve": 1, "s3fifo": 2, "lru": 3}\n')
    assert [line for line, strings in _string_collections(planted) if len(strings & set(_contract.POLICIES)) >= 3] \
        == [1, 2]


def test_policy_names_are_listed_once():
    assert _copies_of(_contract.POLICY_NAMES, 3) == []


def test_output_and_tenant_fields_are_listed_once():
    assert _copies_of(_contract.OUTPUT_FIELDS, 4) == []
    # summaries share their names with the statistics columns (requests, prompt_tokens, ...); a copy of the
    # columns spells out the ones only the columns have
    columns_only = ("evictions_caused", "expired_owned", "uncached_blocks", "hit_requests")
    assert set(columns_only) <= set(_contract.TENANT_FIELDS)
    assert _copies_of(columns_only, 3) == []


def test_one_engine_input_error_and_one_version():
    defining = [f"{p.relative_to(SRC)}" for p in [*_python_sources(), *SRC.glob("*.pyx")]
                if re.search(r"^class EngineInputError\b", p.read_text(), re.M)]
    assert defining == []   # only _contract.py defines it
    assert not [p for p in _python_sources() if re.search(r"__version__\s*=\s*['\"]", p.read_text())]
    import cachesim
    from cachesim import _impl
    assert cachesim.__version__ == _contract.VERSION
    assert cachesim.replay.__module__  # the package imported whole
    assert _impl.load("reference").EngineInputError is _contract.EngineInputError
    assert _impl.load("reference").OUTPUT_FIELDS is _contract.OUTPUT_FIELDS


@pytest.mark.core
def test_the_core_takes_its_names_from_the_registry():
    from cachesim import _core

    assert _core.EngineInputError is _contract.EngineInputError
    assert _core.TENANT_FIELDS is _contract.TENANT_FIELDS
    assert _core.OUTPUT_FIELDS is _contract.OUTPUT_FIELDS
    assert {name: spec.code for name, spec in _contract.POLICIES.items()} == _core.POLICY_CODES


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def test_nothing_below_the_cli_imports_it():
    cli_parts = {"cachesim.cli", *(f"cachesim.cli.{p.stem}" for p in (SRC / "cli").glob("*.py"))} \
        if (SRC / "cli").is_dir() else {"cachesim.cli"}
    below = [p for p in _python_sources() if "cli" not in p.relative_to(SRC).parts[:1]
             and p.name not in ("cli.py", "__main__.py")]
    offenders = [str(p.relative_to(SRC)) for p in below if _imports(p) & cli_parts]
    assert offenders == []


def test_one_executor():
    # thread and process pools are made in parallel.py alone, so --executor means one thing everywhere
    makers = re.compile(r"\b(ThreadPoolExecutor|ProcessPoolExecutor)\s*\(")
    offenders = [str(p.relative_to(SRC)) for p in _python_sources()
                 if p.name != "parallel.py" and makers.search(p.read_text())]
    assert offenders == []


def test_docs_policy_table_is_the_registry():
    text = (DOCS / "policies.md").read_text()
    table = re.findall(r"^\| `([a-z0-9-]+)` \|", text, re.M)
    assert table == list(_contract.POLICY_NAMES)


def test_cli_choices_come_from_the_registry():
    from cachesim.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    replay = sub.choices["replay"]
    options = {a.dest: a for a in replay._actions}
    assert tuple(options["policy"].choices) == _contract.POLICY_NAMES
    assert tuple(options["victims"].choices) == _contract.VICTIMS
    assert tuple(options["hit_cap"].choices) == tuple(c for c in _contract.HIT_CAPS if c)
    assert tuple(options["isolation"].choices) == tuple(c for c in _contract.ISOLATIONS if c)


def test_one_validation_of_a_configuration():
    # every engine and CacheConfig refuse the same bad values with the same words
    import cachesim
    from cachesim import _impl

    bad = [dict(capacity_blocks=0), dict(capacity_blocks=2**31), dict(policy="nope"), dict(ttl_s=-1.0),
           dict(hit_cap="prompt-2"), dict(victims="all"), dict(ghost_blocks=-1)]
    impls = ["reference"] + (["core"] if _impl.default_impl() == "core" else [])
    for kwargs in bad:
        messages = set()
        with pytest.raises(ValueError) as exc:
            cachesim.CacheConfig(**kwargs)
        messages.add(str(exc.value))
        for impl in impls:
            with pytest.raises(ValueError) as exc:
                _impl.load(impl).Engine(**kwargs)
            messages.add(str(exc.value))
        assert len(messages) == 1, (kwargs, messages)
