"""Tables that fit: at 80 columns (a pipe, a file, a CI log) every table of every command shows every number of
its result whole, no line is wider than 80 and nothing is cut with an ellipsis.

Each command runs twice through ``cachesim.cli.main``: once for its tables with COLUMNS=80 (stdout is pytest's
capture, not a terminal: the pipe case), once for its JSON. The numbers a table shows are taken from the JSON and
formatted here as the table documents them (ratios to 4 places, counts with separators, ...); each must appear in
the table's lines as a whole word, as often as the JSON says.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from cachesim.cli import main
from cachesim.report._tables import add_columns, fit_tables, make_console, print_table
from conftest import DATA

# how tables render does not depend on the engine, and the sweep here takes many minutes on the reference
# model: the reference run (CACHESIM_PUREPYTHON=1) leaves this module to the default run
pytestmark = pytest.mark.core

WIDTH = 80
PROVIDERS = ("anthropic", "openai", "openai-5.6", "gemini", "deepseek")


def table_lines(out: str) -> list[str]:
    """The lines of the tables: a row or a header line of a box."""
    return [line for line in out.splitlines() if line[:1] in ("│", "┃")]


def first_cell(line: str) -> str:
    return line[1:].split(line[0], 1)[0].strip()


def whole(text: str, number: str) -> int:
    """How often ``number`` appears in ``text`` as a whole word: no digit, sign, separator or letter touches it."""
    return len(re.findall(rf"(?<![\w.,+\-]){re.escape(number)}(?![\w.,%])", text))


def run(capsys, argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def run_json(capsys, argv: list[str]) -> dict:
    return json.loads(run(capsys, [*argv, "--json", "-"]))


def assert_fits(out: str, rows: list[tuple[str | None, list[str], list[str]]]) -> None:
    """``rows``: (key, numbers on the key's line, numbers anywhere in the tables). A key's row (in every part of a
    split table) is the lines whose first cell is the key; a one-word number is on the first line of its row."""
    lines = out.splitlines()
    assert lines, "no output"
    too_wide = [line for line in lines if len(line) > WIDTH]
    assert not too_wide, f"{len(too_wide)} lines wider than {WIDTH}:\n" + "\n".join(too_wide)
    assert "…" not in out
    body = table_lines(out)
    assert body, "no table in the output"
    text = "\n".join(body)
    want: Counter[str] = Counter()
    for key, on_line, anywhere in rows:
        want.update(on_line)
        want.update(anywhere)
        if key is None:
            continue
        row = "\n".join(line for line in body if first_cell(line) == key)
        assert row, f"no row {key!r} in\n{text}"
        missing = [n for n in on_line if not whole(row, n)]
        assert not missing, f"row {key!r} lacks {missing}:\n{row}"
    short = {n: (whole(text, n), count) for n, count in want.items() if whole(text, n) < count}
    assert not short, f"numbers missing or cut (found, expected): {short}\n{text}"


def ratio4(x: float) -> str:
    return f"{x:.4f}"


def count(n: int) -> str:
    return f"{n:,}"


# --- what each command's tables show, from its JSON ----------------------------------------------------------------

def replay_rows(data: dict) -> list:
    s = data["summary"]
    rows = [("requests counted", [count(s["requests"])], []),
            ("token hit ratio", [ratio4(s["token_hit_ratio"])], [count(s["hit_tokens"]), count(s["prompt_tokens"])]),
            ("block hit ratio", [ratio4(s["block_hit_ratio"])], [count(s["hit_blocks"]), count(s["blocks"])]),
            ("request hit ratio", [ratio4(s["request_hit_ratio"])], [count(s["hit_requests"]),
                                                                      count(s["requests"])]),
            ("inserted blocks", [count(s["inserted_blocks"])], []),
            (None, [count(s["evictions"]["capacity"]), count(s["evictions"]["ttl"])], []),
            ("uncached blocks", [count(s["uncached_blocks"])], []),
            ("peak occupancy", [count(s["peak_occupancy_blocks"])], [])]
    names = data["hits_from"]["tenants"]
    if len(names) < 2:
        return rows
    lost = data.get("lost_to")
    for r, name in enumerate(names):
        t = data["per_tenant"][name]
        others = sum(v for o, v in enumerate(data["hits_from"]["tokens"][r]) if o != r)
        cells = [count(t["requests"]), count(t["prompt_tokens"]), ratio4(t["token_hit_ratio"]), count(others)]
        if lost:
            by = dict(zip(lost["evictors"], lost["tokens"][r], strict=True))
            cells += [count(sum(v for e, v in by.items() if e not in ("ttl", name))), count(by.get("ttl", 0))]
        rows.append((name, cells, []))
    return rows


def fleet_rows(data: dict) -> list:
    rows = []
    for r in data["routers"]:
        s = r["summary"]
        predicted = s["predicted_hit_tokens"]
        rows.append((s["router"], [ratio4(s["token_hit_ratio"]),
                                   *(f"{s[k]:.3f}" for k in ("ttft_mean_s", "ttft_p50_s", "ttft_p99_s",
                                                             "utilisation_max", "utilisation_mean",
                                                             "request_imbalance")),
                                   "—" if predicted is None else f"{predicted / s['hit_tokens']:.3f}"], []))
        for p in r["per_replica"]:  # one table per router, keyed by replica number: counted, not located
            rows.append((None, [count(p["requests"]), count(p["prompt_tokens"]), ratio4(p["token_hit_ratio"]),
                                f"{p['utilisation']:.3f}", f"{p['ttft_mean_s']:.3f}", f"{p['ttft_p99_s']:.3f}",
                                count(p["peak_occupancy_blocks"]), count(p["evictions"])], []))
    for name in data["routers"][0]["per_tenant"]:
        rows.append((name, [count(data["routers"][0]["per_tenant"][name]["requests"]),
                            *(ratio4(r["per_tenant"][name]["token_hit_ratio"]) for r in data["routers"])], []))
    return rows


def interference_rows(data: dict) -> list:
    alone, remedies = data["counterfactual"], data["remedies"]
    others = [name for name in remedies if name != "shared"]
    rows = []
    for name in data["tenants"]:
        shared, a = remedies["shared"]["per_tenant"][name], alone["per_tenant"][name]["token_hit_ratio"]
        cells = [count(shared["requests"]), count(shared["prompt_tokens"]), ratio4(a),
                 ratio4(shared["token_hit_ratio"]), f"{a - shared['token_hit_ratio']:+.4f}"]
        cells += [ratio4(remedies[o]["per_tenant"][name]["token_hit_ratio"]) for o in others]
        shares = [f"({remedies[o]['recovered'][name]:+.0%})" for o in others
                  if remedies[o]["recovered"][name] is not None]
        rows.append((name, cells, shares))
        lost = data["shared_lost_to"][name]
        rows.append((name, [count(sum(v for e, v in lost.items() if e not in ("ttl", name))),
                            count(lost.get("ttl", 0))], []))
    total, a_all = remedies["shared"]["total"], alone["total"]["token_hit_ratio"]
    rows.append(("all", [count(total["requests"]), count(total["prompt_tokens"]), ratio4(a_all),
                         ratio4(total["token_hit_ratio"]), f"{a_all - total['token_hit_ratio']:+.4f}",
                         *(ratio4(remedies[o]["total"]["token_hit_ratio"]) for o in others)], []))
    return rows


def mrc_rows(data: dict) -> list:
    rows = []
    first = data["curves"][0]["points"]
    for i, point in enumerate(first):
        cap = point["capacity_blocks"]
        key = "unbounded" if cap is None or cap < 0 else count(cap)
        cells = [] if key == "unbounded" or point.get("capacity_gb") is None else [f"{point['capacity_gb']:,.2f}"]
        for curve in data["curves"]:
            p = curve["points"][i]
            cells += [ratio4(p["token_hit_ratio"]), ratio4(p["block_hit_ratio"])]
        rows.append((key, cells, []))
    return rows


def sweep_rows(data: dict) -> list:
    def cell(name, value):
        if value is None:
            return "unbounded" if name == "capacity_blocks" else "none"
        if isinstance(value, str):
            return value
        return ratio4(value) if name.endswith("ratio") else count(value) if isinstance(value, int) else f"{value:g}"

    metrics = ("token_hit_ratio", "block_hit_ratio", "request_hit_ratio", "tokens_computed", "evictions_capacity",
               "peak_occupancy_blocks")
    return [(None, [cell(name, row[name]) for name in (*data["axes"], *metrics)], []) for row in data["rows"]]


def cost_rows(data: dict) -> list:
    s = data["summary"]
    prompt = max(s["prompt_tokens"], 1)
    rows = [("uncached input", [count(s["uncached_tokens"]), f"{s['uncached_tokens'] / prompt:.1%}"], []),
            ("cache read", [count(s["read_tokens"]), f"{s['read_tokens'] / prompt:.1%}"], []),
            ("prompt total", [count(s["prompt_tokens"])], []), ("output", [count(s["output_tokens"])], [])]
    n_writes = sum(f is not None for f in (data["rules"].get("write_fields") or ()))
    writes = [s["write_short_tokens"], s["write_long_tokens"]][:n_writes]
    rows += [(None, [count(v), f"{v / prompt:.1%}"], []) for v in writes]
    if len(data["tenants"]) > 1:
        for name, t in data["tenants"].items():
            rows.append((name, [count(t["requests"]), count(t["prompt_tokens"]), f"{t['token_hit_ratio']:.3f}",
                                count(t["read_from_other_tenants"]), f"{t['cost_usd']:.4f}",
                                f"{t['cost_uncached_usd']:.4f}", f"{t['savings_usd']:.4f}"], []))
    return rows


def demo_rows(data: dict) -> list:
    rows = []
    for row in data["rows"]:
        for s in row["styles"].values():
            rows.append((None, [f"{s['requests_per_query']:.1f}", f"{s['prompt_tokens_per_query']:,.0f}",
                                f"{s['token_hit_ratio']:.3f}", f"{s['cost_per_query_usd']:.4f}",
                                f"{s['cost_uncached_per_query_usd']:.4f}"], []))
        if row["cost_multiple"] is not None:
            rows.append((None, [f"{row['cost_multiple']:.1f}x"], []))
    return rows


def prices_rows(data: dict) -> list:
    rates = ("input", "read", "write_5m", "write_1h", "write_30m", "output", "storage_per_hour")
    return [(None, [f"{r[f]:g}" for f in rates if r[f] is not None]
             + ([count(r["above_input_tokens"])] if r["above_input_tokens"] else []), []) for r in data["rows"]]


@pytest.fixture
def at_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))


CASES = {
    "replay": (["replay"], replay_rows),
    "replay-trace": (["replay", str(DATA / "mooncake.jsonl")], replay_rows),
    "replay-interference": (["replay", "--interference", "--capacity", "3k", "--ttl", "5m"], replay_rows),
    "fleet": (["fleet", "--per-replica", "--capacity", "2k"], fleet_rows),
    "interference": (["interference", "--capacity", "2k"], interference_rows),
    "mrc": (["mrc", "--ttl", "none,1m,5m,1h", "--kv-bytes-per-token", "160KB"], mrc_rows),
    "mrc-trace": (["mrc", str(DATA / "native_blocks16.jsonl")], mrc_rows),
    "demo": (["demo", "--users", "2"], demo_rows),
    **{f"cost-{p}": (["cost", "--provider", p], cost_rows) for p in PROVIDERS},
}


@pytest.mark.parametrize("case", CASES)
def test_every_number_of_a_table_is_whole_at_80_columns(case, capsys, at_80):
    argv, rows = CASES[case]
    out = run(capsys, argv)
    assert_fits(out, rows(run_json(capsys, argv)))


def test_a_provider_trace_billed_is_whole_at_80_columns(tmp_path, capsys, at_80):
    """A trace of two tenants with observed usage: the per-tenant table and the observed-vs-predicted lines."""
    system = list(range(30_000))
    lines = [{"t": 5 * i, "tenant": f"team-{i % 2}", "session": f"s{i % 2}", "tokens": system + [i] * (700 * i),
              "breakpoints": [30_000], "usage": {"cache_read": 30_000 if i > 1 else 0, "cache_write": 700 * i}}
             for i in range(6)]
    trace = tmp_path / "billed.jsonl"
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    argv = ["cost", str(trace)]
    out = run(capsys, argv)
    assert "observed vs predicted cache read" in out
    data = run_json(capsys, argv)
    assert len(data["tenants"]) == 2
    assert_fits(out, cost_rows(data))


def test_a_sweep_table_is_whole_at_80_columns(tmp_path, capsys, at_80, monkeypatch):
    """Four axes: ten columns, more than 80 columns hold side by side."""
    monkeypatch.chdir(tmp_path)  # the command names its output file in a line: a short one
    out_json = Path("sweep.json")
    argv = ["sweep", "--users", "3", "--capacity", "500,20k,unbounded", "--ttl", "none,5m", "--hit-cap",
            "none,prompt-1", "--preset", "vllm,sglang", "--executor", "serial", "--no-progress"]
    out = run(capsys, [*argv, "-o", str(out_json)])
    data = json.loads(out_json.read_text())
    assert len(data["axes"]) == 4
    assert_fits(out, sweep_rows(data))


def test_the_price_tables_are_whole_at_80_columns(capsys, at_80):
    out = run(capsys, ["prices"])
    assert_fits(out, prices_rows(json.loads(run(capsys, ["prices", "--json"]))))


def test_a_wide_table_in_a_pipe_is_80_columns_and_columns_widens_it():
    """A real pipe, no COLUMNS: 80 columns even when the test runs in a terminal (stdin or stderr may be one, as
    rich alone would have used); COLUMNS=160 gives the table room to spread."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src")
    argv = [sys.executable, "-m", "cachesim", "fleet", "--capacity", "2k"]
    piped = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    assert max(len(line) for line in piped.splitlines()) == WIDTH  # the routers' table takes the whole width
    assert "…" not in piped
    wide = subprocess.run(argv, capture_output=True, text=True, env={**env, "COLUMNS": "160"}, timeout=120,
                          check=True).stdout
    assert WIDTH < max(len(line) for line in table_lines(wide)) <= 160
    assert len(table_lines(wide)) < len(table_lines(piped))  # headers on fewer lines
    flag = subprocess.run([*argv, "--wide"], capture_output=True, text=True, env=env, timeout=120,
                          check=True).stdout
    assert table_lines(flag) == table_lines(wide)   # --wide in a pipe: the 160 columns COLUMNS=160 gives


def test_a_terminal_gives_its_own_width(tmp_path):
    """stdout a terminal 100 columns wide, no COLUMNS: the console is 100 wide; --wide asks for at least 160."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(Path(__file__).parents[1] / "src")
    code = ("import sys; from cachesim.report._tables import make_console; "
            "print(make_console().width, make_console(wide=True).width, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], stdout=follower, stderr=subprocess.PIPE, text=True,
                          env=env, timeout=60, check=True)
    os.close(follower)
    os.close(leader)
    assert proc.stderr.split() == ["100", "160"]


def test_columns_sets_the_width_and_wide_widens_a_narrow_one(monkeypatch):
    monkeypatch.setenv("COLUMNS", "123")
    assert make_console().width == 123
    assert make_console(wide=True).width == 160
    monkeypatch.setenv("COLUMNS", "200")
    assert make_console(wide=True).width == 200


# --- the layouts, by hand ------------------------------------------------------------------------------------------

def render(table: Table, width: int, keys: int | None = None) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115 (closed with console)
    print_table(console, table, keys)
    text = console.export_text()
    console.file.close()
    return text


def sample() -> Table:
    t = Table(title="per tenant", header_style="bold")
    add_columns(t, ("tenant", "prompt tokens", "token hit ratio", "lost to others"))
    t.add_row("alpha", "1,253,399", "0.9682", "449,600")
    t.add_row("b", "12", "0.5000", "0")
    return t


def test_a_table_that_fits_keeps_its_natural_widths():
    assert render(sample(), 80) == (
        "                         per tenant                          \n"
        "┏━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┓\n"
        "┃ tenant ┃ prompt tokens ┃ token hit ratio ┃ lost to others ┃\n"
        "┡━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━┩\n"
        "│ alpha  │     1,253,399 │          0.9682 │        449,600 │\n"
        "│ b      │            12 │          0.5000 │              0 │\n"
        "└────────┴───────────────┴─────────────────┴────────────────┘\n")


def test_a_narrow_table_wraps_its_headers_not_its_numbers():
    assert render(sample(), 44) == (
        "                 per tenant                 \n"
        "┏━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┓\n"
        "┃        ┃            ┃   token ┃          ┃\n"
        "┃        ┃     prompt ┃     hit ┃  lost to ┃\n"
        "┃ tenant ┃     tokens ┃   ratio ┃   others ┃\n"
        "┡━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━┩\n"
        "│ alpha  │  1,253,399 │  0.9682 │  449,600 │\n"
        "│ b      │         12 │  0.5000 │        0 │\n"
        "└────────┴────────────┴─────────┴──────────┘\n")


def test_narrower_still_the_padding_goes_then_the_columns_split():
    tight = render(sample(), 36)
    assert tight.splitlines()[6] == "│alpha │ 1,253,399│ 0.9682│ 449,600│"
    assert max(len(line) for line in tight.splitlines()) <= 36
    split = fit_tables(sample(), 26)
    assert [[c.header.replace("\n", " ") for c in part.columns] for part in split] == [
        ["tenant", "prompt tokens", "token hit ratio"], ["tenant", "lost to others"]]
    assert split[1].title == "per tenant (continued)"


def test_too_narrow_for_a_split_each_row_becomes_a_block():
    """A key wider than a split part leaves room: one block per row, a name and its value per line."""
    t = Table(title="per tenant", caption="1 more tenant in the JSON output")
    add_columns(t, ("tenant", "prompt tokens", "token hit ratio", "lost to others"))
    t.add_row("a-tenant-with-a-long-name", "1,253,399", "0.9682", "449,600")
    t.add_row("b", "12", "0.5000", "0")
    assert render(t, 30) == (
        "per tenant\n"
        "a-tenant-with-a-long-name\n"
        "  prompt tokens    1,253,399\n"
        "  token hit ratio     0.9682\n"
        "  lost to others     449,600\n"
        "b\n"
        "  prompt tokens           12\n"
        "  token hit ratio     0.5000\n"
        "  lost to others           0\n"
        "1 more tenant in the JSON \n"
        "output\n")
