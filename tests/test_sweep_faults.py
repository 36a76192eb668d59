"""Sweeps that were stopped: a checkpoint whose last line was cut off mid-write."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import cachesim
from cachesim.cli import main
from cachesim.requests import TraceError
from cachesim.sweep import checkpoint_path, run_sweep
from test_sweep import GRID, StopAfter, three_requests

TORN = b'{"id":"{\\"capacity_blocks\\":2,\\"ttl_s\\":50.0}","metr'  # a row cut off before its newline


def interrupted_checkpoint(tmp_path: Path, rows: int) -> tuple[Path, bytes]:
    """A checkpoint of ``rows`` finished rows, then a torn one; and its bytes before the tear."""
    ckpt = tmp_path / "sweep.partial.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(three_requests(), GRID, StopAfter(rows), checkpoint=ckpt)
    whole = ckpt.read_bytes()
    assert whole.count(b"\n") == 1 + rows and whole.endswith(b"\n")
    ckpt.write_bytes(whole + TORN)
    return ckpt, whole


# -- a torn last line ------------------------------------------------------------------------------------------

def test_resume_cuts_the_torn_line_off_before_appending(tmp_path):
    ckpt, whole = interrupted_checkpoint(tmp_path, rows=2)
    note = rf"sweep.partial.jsonl: dropped its last line, .* \({len(TORN)} bytes\)"
    with pytest.warns(UserWarning, match=note), pytest.raises(KeyboardInterrupt):
        run_sweep(three_requests(), GRID, StopAfter(0), checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == whole  # exactly the whole lines: header and two rows


def test_a_sweep_interrupted_twice_after_a_tear_still_resumes(tmp_path):
    ckpt, whole = interrupted_checkpoint(tmp_path, rows=2)
    second = StopAfter(1)
    with pytest.warns(UserWarning, match="dropped its last line"), pytest.raises(KeyboardInterrupt):
        run_sweep(three_requests(), GRID, second, checkpoint=ckpt, resume=True)
    lines = ckpt.read_bytes().split(b"\n")
    assert ckpt.read_bytes().startswith(whole) and len(lines) == 1 + 3 + 1 and lines[-1] == b""
    assert orjson.loads(lines[3])["id"] == '{"capacity_blocks":2,"ttl_s":null}'  # the third configuration

    last = StopAfter(100)
    resumed = run_sweep(three_requests(), GRID, last, checkpoint=ckpt, resume=True)
    assert [(p["capacity_blocks"], p["ttl_s"]) for p in last.ran] == [(2, 50.0), (None, None), (None, 50.0)]
    # unbounded: b at t=10 and a at t=100 hit both 4-token blocks (16 tokens); TTL 50 s: only b's request (8)
    assert [r["hit_tokens"] for r in resumed.rows[4:]] == [16, 8]
    assert resumed.rows == run_sweep(three_requests(), GRID, "serial").rows


def test_a_torn_header_is_dropped_and_the_sweep_starts_afresh(tmp_path):
    ckpt = tmp_path / "sweep.partial.jsonl"
    ckpt.write_bytes(b'{"kind":"cachesim-sweep-chec')
    everything = StopAfter(100)
    with pytest.warns(UserWarning, match="dropped its last line"):
        run_sweep(three_requests(), GRID, everything, checkpoint=ckpt, resume=True)
    assert len(everything.ran) == 6
    lines = ckpt.read_bytes().split(b"\n")
    assert orjson.loads(lines[0])["kind"] == "cachesim-sweep-checkpoint" and len(lines) == 1 + 6 + 1


def test_a_file_that_is_not_a_checkpoint_is_refused_not_truncated(tmp_path):
    ckpt = tmp_path / "notes.txt"
    ckpt.write_bytes(b"my notes, no newline")
    with pytest.raises(TraceError, match="notes.txt:1: not a cachesim sweep checkpoint"):
        run_sweep(three_requests(), GRID, "serial", checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == b"my notes, no newline"


@pytest.mark.parametrize("bad", [b"not json", b"[1, 2]", b'{"id": "x"}'])
def test_a_malformed_line_before_the_last_is_a_located_error_and_nothing_is_cut(tmp_path, bad):
    ckpt, whole = interrupted_checkpoint(tmp_path, rows=2)
    header, first, second, _ = whole.split(b"\n")
    damaged = b"\n".join([header, first, bad, second]) + b"\n" + TORN
    ckpt.write_bytes(damaged)
    with pytest.raises(TraceError, match="sweep.partial.jsonl:3: malformed checkpoint line"):
        run_sweep(three_requests(), GRID, "serial", checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == damaged


def test_the_cli_notes_the_repair_in_one_line(tmp_path, capsys):
    out = tmp_path / "s.json"
    ckpt = checkpoint_path(out)
    npz = tmp_path / "t.npz"
    cachesim.compile_trace(three_requests()).save(npz)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(str(npz), GRID, StopAfter(2), checkpoint=ckpt)
    ckpt.write_bytes(ckpt.read_bytes() + TORN)
    assert main(["sweep", str(npz), "--capacity", "1,2,unbounded", "--ttl", "none,50", "-o", str(out),
                 "--executor", "serial", "--resume"]) == 0
    err = capsys.readouterr().err
    assert err == (f"cachesim: note: {ckpt}: dropped its last line, cut off mid-write when the sweep was stopped "
                   f"({len(TORN)} bytes); that configuration runs again\n")
    assert len(orjson.loads(out.read_bytes())["rows"]) == 6
