"""The one check of a Trace before compiled code reads it (cachesim.trace.validate, and under it each twin's
``first_trace_fault``): every fault found at the right request, the twins agreeing on damaged arrays, and the
check cut across threads giving the answer it gives whole."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachesim import _impl
from cachesim import trace as trace_module
from cachesim._contract import TRACE_FAULTS
from cachesim.requests import TraceError

IMPLS = ["reference"] + (["core"] if _impl.default_impl() == "core" else [])
BLOCK_SIZE = 4
RESERVED = 2**64 - 1


def _columns(lengths, tokens_per_block=BLOCK_SIZE):
    """A sound trace's columns: request r has lengths[r] blocks of distinct keys, full blocks, t = r."""
    n = len(lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    m = int(offsets[-1])
    return {"t": np.arange(n, dtype=np.float64), "tenant": np.zeros(n, np.int32),
            "prompt_tokens": np.array([max(1, x * tokens_per_block) for x in lengths], np.int64),
            "block_offsets": offsets, "block_tokens": np.full(m, tokens_per_block, np.uint32),
            "block_keys": np.arange(1, m + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)}


def _fault(impl, cols, n_tenants=1, max_prompt=10**7, first=0, stop=-1):
    return _impl.load(impl).first_trace_fault(
        cols["t"], cols["tenant"], cols["prompt_tokens"], cols["block_offsets"], cols["block_tokens"],
        cols["block_keys"], BLOCK_SIZE, n_tenants, max_prompt, first, stop)


def _set(cols, name, index, value):
    cols[name] = cols[name].copy()
    cols[name][index] = value
    return cols


# Each damage to a sound trace of requests with 2, 3, 1, 4 blocks (blocks 0-1, 2-4, 5, 6-9), by hand: the
# request it breaks and the fault it is.
CASES = [
    ("interior offset past the end", lambda c: _set(c, "block_offsets", 2, 10**9), 1, "block_offsets"),
    ("offsets falling", lambda c: _set(c, "block_offsets", 2, 1), 1, "block_offsets"),
    ("time NaN", lambda c: _set(c, "t", 2, np.nan), 2, "t_not_finite"),
    ("time -inf", lambda c: _set(c, "t", 0, -np.inf), 0, "t_not_finite"),
    ("time negative", lambda c: _set(c, "t", 0, -1.0), 0, "t_negative"),
    ("time falling", lambda c: _set(c, "t", 3, 1.5), 3, "t_decreasing"),
    ("tenant -1", lambda c: _set(c, "tenant", 1, -1), 1, "tenant"),
    ("tenant past the last", lambda c: _set(c, "tenant", 3, 1), 3, "tenant"),
    ("empty prompt", lambda c: _set(c, "prompt_tokens", 2, 0), 2, "prompt_empty"),
    ("prompt over the limit", lambda c: _set(c, "prompt_tokens", 2, 10**7 + 1), 2, "prompt_limit"),
    ("block of 0 tokens", lambda c: _set(c, "block_tokens", 4, 0), 1, "block_tokens"),
    ("block over the block size", lambda c: _set(c, "block_tokens", 9, BLOCK_SIZE + 1), 3, "block_tokens"),
    ("blocks fuller than the prompt", lambda c: _set(c, "prompt_tokens", 1, 3 * BLOCK_SIZE - 1), 1, "overfull"),
    ("the reserved key", lambda c: _set(c, "block_keys", 5, RESERVED), 2, "reserved_key"),
    ("a key twice in one request", lambda c: _set(c, "block_keys", 8, c["block_keys"][6]), 3, "repeated_key"),
    # the same key in two requests is a shared prefix, not a fault
    ("a key in two requests", lambda c: _set(c, "block_keys", 6, c["block_keys"][0]), 4, None),
    # faults in one request: the first in TRACE_FAULTS' order is the one reported
    ("time and tenant", lambda c: _set(_set(c, "tenant", 2, 5), "t", 2, np.nan), 2, "t_not_finite"),
    ("overfull and repeated", lambda c: _set(_set(c, "prompt_tokens", 3, 1), "block_keys", 9, c["block_keys"][6]),
     3, "overfull"),
    # two requests: the earlier one is reported whatever its fault
    ("repeat before a bad time", lambda c: _set(_set(c, "t", 3, np.nan), "block_keys", 3, c["block_keys"][2]),
     1, "repeated_key"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name, damage, bad_request, fault", CASES, ids=[c[0] for c in CASES])
def test_each_fault_is_found_at_its_request(impl, name, damage, bad_request, fault):
    cols = damage(_columns([2, 3, 1, 4]))
    assert _fault(impl, cols) == (bad_request, -1 if fault is None else TRACE_FAULTS.index(fault))


@pytest.mark.parametrize("impl", IMPLS)
def test_a_range_is_checked_on_its_own_and_reports_in_trace_numbers(impl):
    cols = _set(_columns([2, 3, 1, 4]), "block_keys", 8, _columns([2, 3, 1, 4])["block_keys"][6])
    assert _fault(impl, cols, first=0, stop=3) == (3, -1)          # the fault lies beyond the range
    assert _fault(impl, cols, first=3, stop=4) == (3, TRACE_FAULTS.index("repeated_key"))
    cols = _set(_columns([2, 3, 1, 4]), "t", 2, 0.5)                # falls below request 1's time
    assert _fault(impl, cols, first=2, stop=4) == (2, TRACE_FAULTS.index("t_decreasing"))
    # a range that begins where a damaged offset points before the trace is refused, not read there
    cols = _set(_columns([2, 3, 1, 4]), "block_offsets", 2, -3)
    assert _fault(impl, cols, first=2, stop=4) == (2, TRACE_FAULTS.index("block_offsets"))


@st.composite
def damaged_columns(draw):
    lengths = draw(st.lists(st.integers(0, 12), min_size=1, max_size=10))
    cols = _columns(lengths)
    n, m = len(lengths), int(sum(lengths))
    keys = draw(st.sampled_from(["distinct", "few"]))
    if keys == "few" and m:   # keys from a small set: repeats within and across requests
        cols["block_keys"] = np.array(draw(st.lists(st.integers(1, 6), min_size=m, max_size=m)), np.uint64)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["t", "tenant", "prompt_tokens", "block_offsets", "block_tokens",
                                     "block_keys"]))
        size = len(cols[name])
        if size == 0 or (name == "block_offsets" and size < 3):
            continue
        index = draw(st.integers(1 if name == "block_offsets" else 0, size - (2 if name == "block_offsets" else 1)))
        value = {"t": st.sampled_from([np.nan, np.inf, -1.0, 0.5, 1e9]),
                 "tenant": st.integers(-2, 3),
                 "prompt_tokens": st.integers(-1, 60),
                 "block_offsets": st.integers(-5, m + 5),
                 "block_tokens": st.integers(0, BLOCK_SIZE + 2),
                 "block_keys": st.sampled_from([RESERVED, 1, 2, 3])}[name]
        cols = _set(cols, name, index, draw(value))
    n_tenants = draw(st.integers(1, 3))
    first = draw(st.integers(0, n))
    return cols, n_tenants, first, draw(st.integers(first, n))


@pytest.mark.core
@given(damaged_columns())
def test_the_twins_agree_on_damaged_columns(case):
    cols, n_tenants, first, stop = case
    whole = _fault("core", cols, n_tenants)
    assert whole == _fault("reference", cols, n_tenants)
    assert _fault("core", cols, n_tenants, first=first, stop=stop) == \
        _fault("reference", cols, n_tenants, first=first, stop=stop)


@pytest.mark.core
@given(damaged_columns(), st.integers(1, 4))
def test_the_check_cut_across_threads_answers_as_whole(case, blocks_per_thread):
    cols, n_tenants, _, _ = case
    whole = _fault("core", cols, n_tenants)
    cut = trace_module._first_fault(cols, BLOCK_SIZE, n_tenants, 10**7, threads=4,
                                    blocks_per_thread=blocks_per_thread)
    assert cut == whole


def test_validate_names_the_request_and_field_and_says_how_many_are_sound():
    import dataclasses

    import cachesim

    requests = cachesim.TokenRequests.from_lists([[1, 2, 3, 4, 5, 6, 7, 8]] * 4, t=[0.0, 1.0, 2.0, 3.0])
    trace = cachesim.compile_trace(requests, 4)
    keys = np.array(trace.block_keys)
    keys[5] = keys[4]   # request 2's two blocks share a key
    with pytest.raises(TraceError) as info:
        trace_module.validate(dataclasses.replace(trace, block_keys=keys))
    assert info.value.line == 2 and info.value.field == "block_keys" and info.value.valid_requests == 2
    assert "repeats within the request" in str(info.value)
    tokens = np.array(trace.block_tokens)
    tokens[1] = 9
    with pytest.raises(TraceError, match="a block of 9 tokens where blocks hold 1..4") as info:
        trace_module.validate(dataclasses.replace(trace, block_tokens=tokens))
    assert info.value.line == 0 and info.value.field == "block_tokens"


def _rewrite_npz(path, out, change):
    """Copy the .npz at path to out, members through change(name, bytes) -> bytes | None (None drops it)."""
    import zipfile

    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = change(info.filename, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data, compress_type=info.compress_type)


def _npy(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _saved(tmp_path):
    import cachesim

    # requests 1 and 2 are shorter than a block: they have none
    requests = cachesim.TokenRequests.from_lists([[1, 2, 3, 4, 5], [1, 2], [1, 2, 3]], t=[0.0, 1.0, 2.0])
    trace = cachesim.compile_trace(requests, 4)
    trace.meta["observed_cache_read_tokens"] = np.array([0, 0, 4], dtype=np.int64)
    path = tmp_path / "trace.npz"
    trace.save(path)
    return path


def test_a_member_dropped_from_a_saved_trace_is_named(tmp_path):
    from cachesim.trace import Trace

    path = _saved(tmp_path)
    assert Trace.load(path).meta["observed_cache_read_tokens"].tolist() == [0, 0, 4]
    cut = tmp_path / "cut.npz"
    _rewrite_npz(path, cut, lambda name, data: None if name == "meta/observed_cache_read_tokens.npy" else data)
    with pytest.raises(TraceError, match="member meta/observed_cache_read_tokens is missing"):
        Trace.load(cut)
    # a file from before the manifest (no members.npy) loads as it did
    old = tmp_path / "old.npz"
    _rewrite_npz(path, old, lambda name, data: None if name == "members.npy" else data)
    assert Trace.load(old).n_requests == 3


def test_a_blockless_request_with_a_last_block_is_damage(tmp_path):
    from cachesim.trace import Trace

    path = _saved(tmp_path)   # request 1 has no blocks: its tail is 0 in a sound file
    assert Trace.load(path).block_offsets.tolist() == [0, 1, 1, 1]
    bad = tmp_path / "bad.npz"
    _rewrite_npz(path, bad, lambda name, data: _npy(np.array([4, 7, 0], np.uint32)) if name == "tail_tokens.npy"
                 else data)
    with pytest.raises(TraceError, match="request 1 has no blocks but a last block of 7 tokens"):
        Trace.load(bad)


def test_a_block_source_that_is_not_one_is_refused(tmp_path):
    import dataclasses

    import cachesim
    from cachesim.trace import Trace, validate

    trace = cachesim.compile_trace(cachesim.TokenRequests.from_lists([[1, 2, 3, 4]], t=[0.0]), 4)
    with pytest.raises(TraceError, match="block source must be one of tokens, ids, mixed"):
        validate(dataclasses.replace(trace, block_source="[0 1 2]"))
    path = tmp_path / "trace.npz"
    trace.save(path)
    bad = tmp_path / "bad.npz"
    _rewrite_npz(path, bad, lambda name, data: _npy(np.arange(3)) if name == "block_source.npy" else data)
    with pytest.raises(TraceError, match="block source must be one of"):
        Trace.load(bad)


@pytest.mark.parametrize("mmap", [False, True])
def test_a_damaged_npy_header_is_a_located_error(tmp_path, mmap):
    """A flipped byte in a member's header (a Python literal numpy tokenizes) raised tokenize.TokenError, which
    no handler caught: a traceback from every command (fuzzer, npz seed 7, case 281)."""
    from cachesim.trace import Trace

    path = _saved(tmp_path)
    bad = tmp_path / "bad.npz"
    # the header dict loses its closing brace: "EOF in multi-line statement" inside numpy
    _rewrite_npz(path, bad, lambda name, data: data.replace(b"}", b" ", 1) if name == "block_keys.npy" else data)
    with pytest.raises(TraceError, match=r"block_keys.npy: damaged .npy header"):
        Trace.load(bad, mmap=mmap)


def test_a_header_that_claims_more_than_its_member_holds_allocates_nothing(tmp_path):
    from cachesim.trace import Trace

    path = _saved(tmp_path)
    bad = tmp_path / "bad.npz"
    import io

    buf = io.BytesIO()   # a sound header claiming 3e11 float64 (2.4 TB), then 3 values
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (300000000000,)})
    big = buf.getvalue() + np.zeros(3, np.float64).tobytes()
    _rewrite_npz(path, bad, lambda name, data: big if name == "t.npy" else data)
    with pytest.raises(TraceError, match=r"t.npy: its header says \(300000000000,\) x 8 bytes, the member holds 24"):
        Trace.load(bad)
