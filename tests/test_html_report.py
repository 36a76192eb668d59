"""The HTML report: self-contained, escaped, and rendering in headless Chromium with no console errors."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

import cachesim
from cachesim.report import render_report, write_report
from cachesim.requests import BlockRequests
from cachesim.sweep import run_sweep

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed: run "
                                    ".ci/setup-chromium (Debian: apt-get install -y chromium) to run this test")
pytestmark = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                reason="the report's figures need the 'plot' extra (matplotlib)")


def two_tenants() -> BlockRequests:
    """Blocks [1, 2] of 4 tokens asked at t = 0 (tenant a), 10 (b) and 100 (a): 16 of 24 tokens hit unbounded."""
    return BlockRequests.from_lists([[1, 2], [1, 2], [1, 2]], [8, 8, 8], 4, t=[0, 10, 100], tenant=["a", "b", "a"])


@pytest.fixture(scope="module")
def sweep_json(tmp_path_factory) -> Path:
    result = run_sweep(two_tenants(), {"capacity": [1, 2, "unbounded"], "ttl": ["none", 50]}, "serial",
                       label="<b>tiny</b> & trace")
    path = tmp_path_factory.mktemp("report") / "sweep.json"
    result.write(path)
    return path


@pytest.fixture(scope="module")
def replay_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "replay.json"
    path.write_text(cachesim.replay(two_tenants()).to_json())
    return path


def test_sweep_page_is_self_contained_and_escaped(sweep_json):
    page = render_report(orjson.loads(sweep_json.read_bytes()))
    assert page.count("<img ") == 4  # hit ratio, tokens computed, and a heat map per TTL at unbounded capacity
    # nothing is fetched: every src/href is inline data
    assert all(ref.startswith("data:") for ref in re.findall(r'(?:src|href)="([^"]*)"', page))
    assert "<script" not in page.lower()
    assert "&lt;b&gt;tiny&lt;/b&gt; &amp; trace" in page and "<b>tiny" not in page
    # the unbounded, no-TTL row: 16 of 24 tokens hit (0.6667), 8 computed
    assert re.search(r"<td[^>]*>unbounded</td><td[^>]*>none</td><td[^>]*>0\.6667</td>", page)
    assert "<td class=\"num\">8</td>" in page


def test_replay_page_has_summary_and_heat_map(replay_json):
    page = render_report(orjson.loads(replay_json.read_bytes()))
    assert page.count("<img ") == 2  # per-tenant bars and the hits_from heat map
    assert 'alt="interference: hit tokens by requester and owner"' in page
    assert re.search(r"<td class=\"text\">token hit ratio</td><td class=\"num\">0\.6667</td>", page)


def test_cli_report_and_its_errors(sweep_json, tmp_path, capsys):
    from cachesim.cli import main

    out = tmp_path / "r.html"
    assert main(["report", str(sweep_json), "-o", str(out), "--title", "capacity study"]) == 0
    assert "<title>capacity study</title>" in out.read_text()
    capsys.readouterr()
    for content, message in [(b"{", "malformed JSON"), (b"[1]", "not a cachesim result (expected a JSON object)"),
                             (b'{"kind": "cachesim-sweep"}', "not a cachesim result"),
                             (b'{"hello": 1}', "not a cachesim result")]:
        bad = tmp_path / "bad.json"
        bad.write_bytes(content)
        assert main(["report", str(bad), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"cachesim: error: {bad}: {message}") and len(err.strip().splitlines()) == 1, err


# -- headless Chromium -----------------------------------------------------------------------------------------

_PROBE = ("<script>addEventListener('load', () => { const broken = [...document.images]"
          ".filter(i => !i.complete || i.naturalWidth === 0); document.title = 'images=' + document.images.length"
          " + ';broken=' + broken.length; });</script>")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=5000", *args], capture_output=True, text=True, timeout=90)


def load_in_chromium(page: Path, tmp_path: Path) -> tuple[list[str], str]:
    """Open ``page``: the console messages it logged, and the title a test-only probe sets after load
    (``images=N;broken=M``, M counting images that did not decode)."""
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
    proc = _chromium(tmp_path, "--dump-dom", probe.as_uri())
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    title = re.search(r"<title>(.*?)</title>", proc.stdout)
    return console, title.group(1) if title else f"no DOM (exit {proc.returncode}): {proc.stderr[-400:]}"


def screenshot(page: Path, tmp_path: Path) -> Path:
    shot = tmp_path / f"{page.stem}.png"
    _chromium(tmp_path, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri())
    return shot


def _varied(png: Path) -> bool:
    """The screenshot shows something: its pixels are not one colour."""
    from matplotlib.image import imread

    pixels = imread(png)
    return bool((pixels.reshape(-1, pixels.shape[-1]) != pixels.reshape(-1, pixels.shape[-1])[0]).any())


@needs_chromium
def test_the_chromium_probe_catches_console_errors_and_broken_images(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><title>x</title></head><body><img src="data:image/png;base64,AAAA" '
                   'alt="broken"><script>console.error("boom")</script></body></html>')
    console, title = load_in_chromium(bad, tmp_path)
    assert any('"boom"' in line for line in console)
    assert title == "images=1;broken=1"


@needs_chromium
def test_sweep_report_renders_in_headless_chromium(sweep_json, tmp_path):
    page = tmp_path / "sweep.html"
    write_report(sweep_json, page)
    console, title = load_in_chromium(page, tmp_path)
    assert console == []
    assert title == "images=4;broken=0"
    shot = screenshot(page, tmp_path)
    assert shot.exists() and shot.stat().st_size > 10_000 and _varied(shot)


@needs_chromium
def test_replay_report_renders_in_headless_chromium(replay_json, tmp_path):
    page = tmp_path / "replay.html"
    write_report(replay_json, page)
    console, title = load_in_chromium(page, tmp_path)
    assert console == [] and title == "images=2;broken=0"
    assert _varied(screenshot(page, tmp_path))


# -- figures ---------------------------------------------------------------------------------------------------

def test_metric_figure_draws_each_series_and_unbounded_as_a_level():
    from cachesim.figures import metric_figure

    rows = [{"capacity_blocks": c, "policy": p, "tokens_computed": y}
            for p, ys in (("lru", (90, 50, 10)), ("fifo", (95, 60, 10)))
            for c, y in zip((10, 1000, None), ys, strict=True)]
    fig = metric_figure(rows, "tokens_computed", series=["policy"])
    ax = fig.axes[0]
    curves = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()
              if not line.get_label().startswith("_")}
    assert curves == {"lru": ([10, 1000], [90, 50]), "fifo": ([10, 1000], [95, 60])}
    levels = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert levels == [10, 10]  # both unbounded rows
    assert ax.get_xscale() == "log"  # capacities 100x apart
    assert ax.get_ylabel() == "tokens computed (prompt - hit tokens)"


def test_interference_figure_shows_the_matrix_and_keeps_the_busiest_tenants():
    import numpy as np

    from cachesim.figures import MAX_HEATMAP_TENANTS, interference_figure

    small = [[5, 0], [7, 1]]
    image = interference_figure(small, ["a", "b"]).axes[0].get_images()[0]
    assert image.get_array().tolist() == small

    n = MAX_HEATMAP_TENANTS + 6
    matrix = np.zeros((n, n), dtype=np.int64)
    quiet = [0, 3, 9, 12, 20, 29]  # these six hit nothing and own nothing that was hit
    for i in range(n):
        if i not in quiet:
            matrix[i, i] = 100 + i
    fig = interference_figure(matrix, [f"t{i}" for i in range(n)])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [f"t{i}" for i in range(n) if i not in quiet]


@pytest.mark.parametrize(("grid", "heat_maps"), [
    ({"ttl": ["none", 50, 200]}, 1),                                  # no series: one heat map, the roomiest
    ({"policy": ["lru"]}, 1),                                         # nothing varies
    ({"hit_cap": ["none", "prompt-1"], "isolation": ["none", "tenant"]}, 2),  # categorical x, two series
    ({"warmup": [0, 1, "50s"]}, 1),                                   # mixed requests and seconds
])
def test_sweep_figures_for_any_grid_shape(grid, heat_maps):
    from cachesim.figures import figure_png, sweep_figures

    figures = sweep_figures(run_sweep(two_tenants(), grid, "serial"))
    assert len(figures) == 2 + heat_maps
    assert all(figure_png(f).startswith(b"\x89PNG") for f in figures)


def test_cost_columns_get_a_figure_of_their_own():
    from cachesim.figures import default_metrics, sweep_figures
    from cachesim.sweep import SweepResult

    rows = [{"capacity_blocks": c, "token_hit_ratio": r, "tokens_computed": t, "cost_usd": t * 3e-6}
            for c, r, t in ((10, 0.1, 900), (100, 0.5, 500), (None, 0.9, 100))]
    assert default_metrics(rows) == ["token_hit_ratio", "tokens_computed", "cost_usd"]
    result = SweepResult(axes={"capacity_blocks": [10, 100, None]}, rows=rows, trace={})
    titles = [f.axes[0].get_title() for f in sweep_figures(result)]
    assert titles == ["token hit ratio against capacity (blocks)",
                      "tokens computed (prompt - hit tokens) against capacity (blocks)",
                      "cost usd against capacity (blocks)"]
