"""libCacheSim lcp (lcsllm) parse speed, blocks/s, against a plain read of the same bytes in the same run.

    pytest bench/bench_lcp.py -s --benchmark-disable-gc     # prints the figures

A generated trace of ~10 M blocks (conversations that extend earlier ones, so ids repeat as in real traces) is
written plain and zstd-compressed with LcpWriter. For each file: the time to read its (decompressed) bytes in
16 MB chunks and nothing else, then the reader's (iter_requests: batches of BlockRequests, not compiled), and
TraceStream's (parsed and compiled to keys) for context. Two shapes: long requests (~500 blocks, like the Qwen
traces' ~360) and short ones (~8 blocks), where the reader's one Python step per request shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cachesim.readers import TraceStream, iter_requests
from cachesim.readers._base import open_text
from cachesim.readers.lcp import LcpWriter
from cachesim.requests import BlockRequests
from conftest import best_seconds, report

TARGET_BLOCKS = 10_000_000
CHUNK_BYTES = 16 << 20



def _generate(path: Path, mean_blocks: int, compress: bool, seed: int = 0) -> int:
    """~TARGET_BLOCKS blocks: each request extends a recent one's ids by new ones (or starts afresh)."""
    rng = np.random.default_rng(seed)
    total, next_id, t_us = 0, 1, 0
    recent: list[np.ndarray] = []
    with LcpWriter(path, block_size=16, type_names=["text", "image"], compress=compress) as writer:
        while total < TARGET_BLOCKS:
            rows = []
            for _ in range(max(1, 2_000_000 // mean_blocks)):   # a batch of ~2 M blocks
                new = int(rng.integers(1, mean_blocks)) if mean_blocks > 1 else 1
                base = recent[int(rng.integers(len(recent)))] if recent and rng.random() < 0.7 else np.zeros(0)
                ids = np.concatenate([base[: mean_blocks], np.arange(next_id, next_id + new)]).astype(np.uint64)
                next_id += new
                rows.append(ids)
                recent = (recent + [ids])[-64:]
            lengths = np.asarray([len(r) for r in rows], dtype=np.int64)
            offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            n = len(rows)
            t = (t_us + np.arange(n) * 1000) / 1e6
            t_us += n * 1000
            batch = BlockRequests(t=t, tenant=rng.integers(0, 2, n).astype(np.int32), tenant_names=["text", "image"],
                                  session=np.full(n, -1, dtype=np.int64), output_tokens=np.full(n, 10, np.int64),
                                  block_ids=np.concatenate(rows), block_offsets=offsets, prompt_tokens=lengths * 16,
                                  block_size=16)
            writer.write(batch)
            total += int(offsets[-1])
    return total


@pytest.fixture(scope="module", params=[500, 8], ids=["long-requests", "short-requests"])
def lcp_files(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lcp")
    plain, packed = folder / "trace.lcp", folder / "trace.lcp.zst"
    n_blocks = _generate(plain, request.param, compress=False)
    _generate(packed, request.param, compress=True)
    return request.param, n_blocks, plain, packed


def _plain_read(path: Path) -> int:
    buf = bytearray(CHUNK_BYTES)
    n = 0
    with open_text(path) as handle:
        while k := handle.readinto(buf):
            n += k
    return n


def _parse(path: Path) -> int:
    return sum(int(r.requests.block_offsets[-1]) for r in iter_requests(path, format="lcp"))


def _compile(path: Path) -> int:
    return sum(batch.n_blocks for batch in TraceStream(path, format="lcp"))


@pytest.mark.parametrize("which", ["plain", "zstd"])
def test_lcp_blocks_per_second(benchmark, lcp_files, which):
    mean_blocks, n_blocks, plain, packed = lcp_files
    path = plain if which == "plain" else packed
    assert _parse(path) == n_blocks
    read_s = best_seconds(lambda: _plain_read(path))
    parse_s = benchmark.pedantic(_parse, args=(path,), rounds=3, iterations=1) and benchmark.stats.stats.min
    compile_s = best_seconds(lambda: _compile(path), rounds=1)
    size_mb = path.stat().st_size / 1e6
    benchmark.extra_info.update(blocks=n_blocks, file_mb=round(size_mb, 1),
                                read_blocks_per_s=round(n_blocks / read_s),
                                parse_blocks_per_s=round(n_blocks / parse_s),
                                compile_blocks_per_s=round(n_blocks / compile_s),
                                parse_over_read=round(parse_s / read_s, 2))
    text = (f"{n_blocks / parse_s / 1e6:.0f} M blocks/s parsed ({parse_s / read_s:.1f}x the plain read's "
            f"{n_blocks / read_s / 1e6:.0f} M/s); {n_blocks / compile_s / 1e6:.1f} M/s compiled")
    report(f"lcp {which}, ~{mean_blocks} blocks/request ({size_mb:.0f} MB)", text)
    print(f"\nlcp {which} ({mean_blocks} blocks/request, {n_blocks:,} blocks, {size_mb:.0f} MB): plain read "
          f"{read_s:.3f} s, parse {parse_s:.3f} s, parse + compile {compile_s:.3f} s")
    # the reader does a few numpy passes over what a plain read copies once; more than that would be a per-block
    # Python step. Loose, for a loaded machine: compare the printed ratio, not this bound
    assert parse_s / read_s < (30 if mean_blocks >= 100 else 60)
