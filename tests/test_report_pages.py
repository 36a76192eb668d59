"""A page for every result kind: each command's JSON, made by the CLI on a small fixture, renders to one
self-contained page that names its trace, draws its figures, shows the command's columns, and looks like a page
in headless Chromium (a screenshot of many colours, every image decoded, nothing on the console)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import orjson
import pytest

from cachesim.cli import main
from conftest import DATA
from test_html_report import _chromium, load_in_chromium, needs_chromium

pytestmark = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                reason="the report's figures need the 'plot' extra (matplotlib)")

TRACE = DATA / "native_blocks16.jsonl"   # two tenants (text, image), 4 requests of blocks of 16 tokens

# kind -> the command that writes its JSON ({out}: the JSON file)
COMMANDS = {
    "replay": ["replay", str(TRACE), "--capacity", "3", "--json", "{out}"],
    "replay-interference": ["replay", str(TRACE), "--capacity", "3", "--interference", "--json", "{out}"],
    "sweep": ["sweep", str(TRACE), "--capacity", "1,3,6,unbounded", "--policy", "lru,fifo", "--ttl", "none,1,5",
              "--executor", "serial", "-o", "{out}"],
    "mrc": ["mrc", str(TRACE), "--ttl", "1", "--kv-bytes-per-token", "160KB", "--json", "{out}"],
    "cost": ["cost", "--users", "2", "--vs", "provider=openai", "--json", "{out}"],
    "fleet": ["fleet", str(TRACE), "--replicas", "2", "--json", "{out}"],
    "interference": ["interference", str(TRACE), "--capacity", "3", "--json", "{out}"],
}

# kinds whose JSON may not name its trace -> what names it when it does (cost bills the built-in workload)
UNNAMED = {"replay": str(TRACE), "replay-interference": str(TRACE), "cost": "built-in agent workload"}

# kind -> (figure titles, as alt text, in order; the columns of the tables the command prints)
EXPECTED = {
    "replay": (["per tenant: token hit ratio; prompt tokens hit in (or lost to) other tenants' entries",
                "interference: hit tokens by requester and owner"],
               ["metric", "value", "counts", "definition", "tenant", "requests", "prompt tokens", "token hit ratio",
                "hit from others"]),
    "replay-interference": (["per tenant: token hit ratio; prompt tokens hit in (or lost to) other tenants' entries",
                             "interference: hit tokens by requester and owner",
                             "lost to: tokens each tenant missed because another tenant's insertions evicted them"],
                            ["tenant", "requests", "prompt tokens", "token hit ratio", "hit from others",
                             "lost to others", "top evictor", "lost to TTL"]),
    "sweep": (["token hit ratio against capacity (blocks)",
               "tokens computed (prompt - hit tokens) against capacity (blocks)",
               "interference: unbounded, lru, no TTL", "interference: unbounded, lru, TTL 1 s",
               "interference: unbounded, lru, TTL 5 s", "interference: unbounded, fifo, no TTL"],
              ["capacity blocks", "policy", "ttl s", "token hit ratio", "block hit ratio", "request hit ratio",
               "tokens computed", "evictions capacity", "peak occupancy blocks"]),
    "mrc": (["LRU hit-ratio curve: native_blocks16.jsonl (native)"],
            ["capacity blocks", "capacity GB", "token no TTL", "block no TTL", "token TTL 1 s", "block TTL 1 s"]),
    "cost": (["bill breakdown: prompt tokens by how they were billed", "bill per scenario (USD)",
              "bill per tenant (USD)"],
             ["tokens", "share", "tenant", "requests", "prompt tokens", "hit ratio", "read from others",
              "with cache $", "without $", "saved $"]),
    "fleet": (["routers compared: hit ratio, tail time to first token, busiest replica",
               "token hit ratio per tenant and router"],
              ["router", "token hit ratio", "TTFT mean s", "TTFT p50 s", "TTFT p99 s", "util max", "util mean",
               "requests max/mean", "predicted/hit", "replica", "utilisation", "peak blocks", "evictions",
               "round-robin", "cache-aware"]),
    "interference": (["token hit ratio per tenant: alone, shared and each remedy",
                      "shared cache: tokens tenant R hit in entries tenant O inserted",
                      "lost to: tokens each tenant missed because another tenant's insertions evicted them"],
                     ["tenant", "requests", "prompt tokens", "alone", "shared", "drop", "namespace", "quotas",
                      "lost to others", "top evictor", "lost to TTL"]),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Path]:
    """Each kind's JSON, written by its command."""
    folder = tmp_path_factory.mktemp("results")
    out = {}
    for kind, argv in COMMANDS.items():
        path = folder / f"{kind}.json"
        assert main([a.replace("{out}", str(path)) for a in argv]) == 0, kind
        out[kind] = path
    return out


def render(result: Path, tmp_path: Path, *options: str) -> tuple[Path, str]:
    page = tmp_path / f"{result.stem}.html"
    assert main(["report", str(result), "-o", str(page), *options]) == 0
    return page, page.read_text()


def headers(page: str) -> set[str]:
    return set(re.findall(r"<th[^>]*>([^<]*)</th>", page))


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_page_names_its_trace_draws_its_figures_and_shows_the_cli_columns(kind, results, tmp_path, capsys):
    page_path, page = render(results[kind], tmp_path)
    capsys.readouterr()
    data = orjson.loads(results[kind].read_bytes())
    trace = re.search(r'<p class="trace"><b>Trace:</b> ([^<]*)</p>', page).group(1)
    if kind in UNNAMED and "trace" not in data:
        # replay --json and cost --json do not record the trace: the page says so and names the result file
        assert trace.startswith(f"not recorded in {results[kind]} ")
    else:
        assert UNNAMED.get(kind, str(TRACE)) in trace
    assert "<b>Configuration:</b>" in page
    titles, columns = EXPECTED[kind]
    assert re.findall(r'<img src="data:image/png;base64,[^"]+" alt="([^"]*)"', page) == [
        t.replace("'", "&#x27;") for t in titles]
    assert page.count("<img ") == len(titles)
    missing = set(columns) - {h.replace("&amp;", "&") for h in headers(page)}
    assert not missing, f"{kind}: columns {missing} not on the page"
    # one self-contained file: every src/href is inline data, no script
    assert all(ref.startswith("data:") for ref in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert "<script" not in page.lower()


def test_replay_interference_rows_carry_the_evictor(results, tmp_path):
    """The "lost to others" and "top evictor" cells the CLI shows: tenant text lost 16 tokens to image."""
    _, page = render(results["replay-interference"], tmp_path)
    assert re.search(r'<td class="text">text</td>(<td class="num">[^<]*</td>){4}<td class="num">16</td>'
                     r'<td class="text">image</td><td class="num">0</td>', page)


def test_interference_table_has_the_all_row_and_recovered_shares(results, tmp_path):
    _, page = render(results["interference"], tmp_path)
    data = orjson.loads(results["interference"].read_bytes())
    shared = data["remedies"]["shared"]["total"]["token_hit_ratio"]
    assert re.search(rf'<tr class="total"><td class="text">all</td>.*?<td class="num">{shared:.4f}</td>', page)
    assert "0.1675 (-300%)" in page  # quotas gives text 0.1675, three times its loss the wrong way


def test_sweep_panels_hold_few_series_and_a_gb_axis_when_kv_bytes_are_known(results):
    """2 policies x 3 TTLs would be 6 lines: small multiples, one panel per policy with a line per TTL."""
    from cachesim.figures import MAX_SERIES, sweep_figures
    from cachesim.sweep import load_result

    result = load_result(results["sweep"])
    curves = sweep_figures(result, kv_bytes_per_token=160_000)[0]
    panels = [ax for ax in curves.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["lru", "fifo"]
    for ax in panels:
        lines = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
        assert lines == ["no TTL", "TTL 1 s", "TTL 5 s"] and len(lines) <= MAX_SERIES
        assert ax.child_axes[0].get_xlabel() == "capacity (GB at 160,000 KV bytes per token)"
    # without KV bytes the top axis counts tokens
    plain = sweep_figures(result)[0].axes[0]
    assert plain.child_axes[0].get_xlabel() == "capacity (tokens, 16 per block)"


def test_report_kv_option_states_gb(results, tmp_path):
    _, page = render(results["replay"], tmp_path, "--kv-bytes-per-token", "160KB")
    assert "0.01 GB at 160,000 KV bytes per token" in page  # 3 blocks x 16 tokens x 160 kB


def test_a_trace_named_in_the_json_is_named_on_the_page(results, tmp_path):
    data = orjson.loads(results["replay"].read_bytes())
    data["trace"] = {"label": "my/trace.jsonl (native)", "requests": 4}
    path = tmp_path / "named.json"
    path.write_bytes(orjson.dumps(data))
    _, page = render(path, tmp_path)
    assert '<p class="trace"><b>Trace:</b> my/trace.jsonl (native)</p>' in page
    assert "<title>cachesim replay: trace.jsonl (native)</title>" in page


@pytest.mark.parametrize(("content", "name", "message"), [
    (b'{"hello": 1}', "u.json", "not a cachesim result: expected the JSON of cachesim replay --json, "),
    (b'{"curves": []}', "m.json", "not a cachesim result: mrc JSON with a missing or malformed field"),
    (b'{"routers": [{}], "replicas": 2, "trace": {}}', "f.json",
     "not a cachesim result: fleet JSON with a missing or malformed field"),
    (b"capacity_blocks,token_hit_ratio\n1,0.5\n", "s.csv", "a sweep table (CSV/Parquet) carries no trace or axes"),
])
def test_json_of_no_kind_is_one_line_and_exit_2(content, name, message, tmp_path, capsys):
    bad = tmp_path / name
    bad.write_bytes(content)
    assert main(["report", str(bad), "-o", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cachesim: error: {bad}: {message}") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.html").exists()


# -- headless Chromium -----------------------------------------------------------------------------------------

def _colours(png: Path) -> tuple[int, float]:
    """Distinct colours in the screenshot, and the share of its pixels that are not the background."""
    import numpy as np
    from matplotlib.image import imread

    pixels = (imread(png)[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    background = np.all(pixels == pixels[0], axis=1)
    return len(np.unique(pixels, axis=0)), float(1 - background.mean())


@needs_chromium
@pytest.mark.parametrize("kind", list(COMMANDS))
def test_page_screenshot_in_headless_chromium(kind, results, tmp_path, capsys):
    page, _ = render(results[kind], tmp_path)
    console, title = load_in_chromium(page, tmp_path)
    assert console == []
    assert title == f"images={len(EXPECTED[kind][0])};broken=0"
    shot = tmp_path / f"{kind}.png"
    _chromium(tmp_path, "--window-size=1200,2000", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 20_000
    colours, drawn = _colours(shot)
    # a page of text and figures: the palette, anti-aliasing and heat maps give hundreds of colours
    assert colours > 200, (kind, colours)
    assert drawn > 0.03, (kind, drawn)
