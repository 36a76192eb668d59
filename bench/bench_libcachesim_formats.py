"""libCacheSim's oracleGeneral format: read and write rates on a generated 20 M-record file (480 MB).

    pytest bench/bench_libcachesim_formats.py --benchmark-only -s     # prints the figures

- read, records/s: the reader's bounded batches (iter_requests), and those compiled (TraceStream, what a replay
  consumes), against reading the same bytes with nothing done to them, in the same run;
- write, records/s: write_oracle_general of the compiled trace (next_access_vtime included), against numpy writing
  the same records it was handed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cachesim.readers import TraceStream, iter_requests, read_trace
from cachesim.readers.oracle import RECORD, write_oracle_general
from conftest import best_seconds, report

N_RECORDS = 20_000_000



@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    """20 M one-block requests: Zipf(1.1) ids over 5 M objects, a thousand a second, unit sizes."""
    path = tmp_path_factory.mktemp("bench") / "zipf.oracleGeneral"
    rng = np.random.default_rng(1)
    records = np.empty(N_RECORDS, dtype=RECORD)
    records["clock_time"] = np.arange(N_RECORDS, dtype=np.uint64) // 1000
    records["obj_id"] = rng.zipf(1.1, N_RECORDS).astype(np.uint64) % 5_000_000
    records["obj_size"] = 1
    records["next_access_vtime"] = -1
    records.tofile(path)
    return path


def _plain_read(path: Path) -> int:
    """The file's bytes into one reused 16 MB buffer: the floor any reader stands on."""
    buf = bytearray(16 << 20)
    n = 0
    with open(path, "rb") as handle:
        while k := handle.readinto(buf):
            n += k
    return n // RECORD.itemsize


def _reader(path: Path) -> int:
    return sum(len(batch.lines) for batch in iter_requests(path))


def _stream(path: Path) -> int:
    return sum(batch.n_requests for batch in TraceStream(path))


def test_oracle_general_read_rate(benchmark, big_file):
    assert _plain_read(big_file) == _reader(big_file) == N_RECORDS
    plain_s = best_seconds(lambda: _plain_read(big_file))
    reader_s = benchmark.pedantic(_reader, args=(big_file,), rounds=3, iterations=1) and benchmark.stats.stats.min
    stream_s = best_seconds(lambda: _stream(big_file))
    rates = {name: N_RECORDS / s for name, s in (("plain", plain_s), ("reader", reader_s), ("stream", stream_s))}
    benchmark.extra_info.update(records=N_RECORDS, **{f"{k}_records_per_s": round(v) for k, v in rates.items()})
    print(f"\noracleGeneral, {N_RECORDS:,} records ({big_file.stat().st_size:,} B): plain read "
          f"{rates['plain'] / 1e6:.1f} M records/s; reader {rates['reader'] / 1e6:.1f} M/s "
          f"({reader_s / plain_s:.1f}x the plain read's time); reader + compile (TraceStream) "
          f"{rates['stream'] / 1e6:.1f} M/s")
    report("oracleGeneral read (20 M records)", f"{rates['reader'] / 1e6:6.1f} M records/s; plain read "
           f"{rates['plain'] / 1e6:.1f} M/s; with compile {rates['stream'] / 1e6:.1f} M/s")
    # the reader builds ~7 columns a record from 24 bytes; far slower than that means a Python step crept in
    assert reader_s / plain_s < 20


def test_oracle_general_write_rate(benchmark, big_file, tmp_path):
    trace = read_trace(big_file)
    out = tmp_path / "out.oracleGeneral"
    write_s = benchmark.pedantic(write_oracle_general, args=(out, trace), rounds=2, iterations=1) and \
        benchmark.stats.stats.min
    records = np.fromfile(out, dtype=RECORD)
    plain = tmp_path / "plain.oracleGeneral"
    plain_s = best_seconds(lambda: records.tofile(plain), rounds=2)
    print(f"\noracleGeneral write, {N_RECORDS:,} records: {N_RECORDS / write_s / 1e6:.1f} M records/s "
          f"(next_access_vtime included); numpy writing the finished records {N_RECORDS / plain_s / 1e6:.1f} M/s")
    report("oracleGeneral write (20 M records)", f"{N_RECORDS / write_s / 1e6:6.1f} M records/s; tofile "
           f"{N_RECORDS / plain_s / 1e6:.1f} M/s")
    assert (records["next_access_vtime"] >= -1).all() and len(records) == N_RECORDS
