"""``cachesim convert``: a trace into the compact formats (.npz, Parquet), into libCacheSim's formats (lcp prefix
traces, oracleGeneral key-value traces), and between them."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import warnings
from pathlib import Path

from cachesim.cli._options import (
    add_command,
    add_reading_flags,
    parse_count,
    print_notes,
    reading_options,
    recorded_warnings,
    synthesized,
)

LCP_NAMES = (".lcp", ".lcsllm", ".lcp.zst", ".lcsllm.zst")


def add_parser(sub) -> None:
    p = add_command(sub, "convert", help="convert a trace into .npz, Parquet, or libCacheSim's lcp or oracleGeneral",
                    description="Read a trace (any format, gzip/zstd welcome, .npz and .parquet included) and write "
                                "it as OUTPUT's suffix says. .npz: sorted stably by time and compiled, block keys "
                                "memory-mapped on load. .parquet: a block-id trace is written as it is, streamed "
                                "in bounded memory, its ids delta-coded (Mooncake: 13x smaller than the JSONL), "
                                "and reads back into the same trace; any other trace is written compiled. "
                                ".lcp / .lcp.zst: libCacheSim's prefix trace of the compiled block keys, streamed. "
                                "*.oracleGeneral (.bin, .zst): libCacheSim's key-value trace, one record per block, "
                                "so libCacheSim can replay exactly the stream cachesim replays.")
    p.add_argument("input", help="trace file")
    p.add_argument("output", help="output file: .npz, .parquet, .lcp[.zst] or NAME.oracleGeneral[.bin|.zst]")
    p.add_argument("--block-size", type=parse_count, metavar="N", help="tokens per block (token-id traces: "
                   "default 16; LMBench: required)")
    p.add_argument("--dense", action="store_true",
                   help="number the block keys 0, 1, 2... (Trace.dense()): every later replay or sweep of the file "
                        "finds its blocks by array instead of by hashing, with the same results (.npz; for "
                        "oracleGeneral, obj_id 0, 1, 2... instead of the keys)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: only when stderr is a terminal)")
    add_reading_flags(p)


def run(args) -> int:
    from cachesim._contract import DEFAULT_TOKEN_BLOCK_SIZE
    from cachesim.readers import read_trace
    from cachesim.trace import compile_trace

    kind = output_kind(args.output)
    if args.dense and kind not in ("npz", "oracle"):
        raise ValueError(f"--dense numbers the keys of an .npz or an oracleGeneral file; {args.output} keeps the "
                         "trace's own ids or keys")
    if kind == "lcp":
        with recorded_warnings() as caught:
            try:
                written = _lcp_streamed(args)
            finally:
                print_notes(caught)
        return _said(args, *written)
    with recorded_warnings() as caught:
        synthetic = synthesized(args, Path(args.input))
        trace = None
        if synthetic is not None:
            trace = compile_trace(synthetic[0], args.block_size or DEFAULT_TOKEN_BLOCK_SIZE)
        elif args.output.endswith(".parquet"):
            written = _parquet_as_read(args)
            if written is not None:
                print_notes(caught)
                return _said(args, *written)
        if trace is None:
            trace = read_trace(args.input, block_size=args.block_size, keep_order=args.keep_order,
                               **reading_options(args))
    print_notes(caught)
    if kind == "oracle":
        from cachesim.readers.oracle import write_oracle_general

        # next_access_vtime needs the whole stream, so this one is written from the trace in memory
        with _removed_on_error(args.output):
            write_oracle_general(args.output, trace, ids="dense" if args.dense else "keys",
                                 object_bytes=trace.meta.get("object_bytes", 1))
        return _said(args, trace.n_requests, trace.n_blocks, trace.block_size)
    if args.dense:
        trace = trace.dense()
    trace.save(args.output)
    return _said(args, trace.n_requests, trace.n_blocks, trace.block_size)


def output_kind(path: str) -> str:
    """What convert writes, by the output's name; any other name fails before the input is read."""
    from cachesim.readers import oracle

    name = path.lower()
    for kind, suffixes in (("npz", (".npz",)), ("parquet", (".parquet",)), ("lcp", LCP_NAMES)):
        if name.endswith(suffixes):
            return kind
    if oracle.names(path):
        return "oracle"
    raise ValueError(f"{path}: convert writes .npz, .parquet, .lcp or .lcp.zst (libCacheSim's prefix traces), or "
                     f"NAME.oracleGeneral, .oracleGeneral.bin or .oracleGeneral.zst (libCacheSim's key-value traces); "
                     f"name it {Path(path).stem}.parquet, for instance")


@contextlib.contextmanager
def _removed_on_error(path: str):
    """A file cut off by an error or a signal is removed: what is left under the name is whole."""
    try:
        yield
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def _compiled_batches(args):
    """The input as compiled batches, read and compiled a batch ahead: an .npz in slices, a synthesized trace
    whole, any other file streamed (TraceStream) in bounded memory."""
    from cachesim._contract import DEFAULT_TOKEN_BLOCK_SIZE
    from cachesim.parallel import prefetched
    from cachesim.readers import TraceStream
    from cachesim.trace import Trace, compile_trace

    if Path(args.input).suffix == ".npz":
        return Trace.load(args.input).batches(1 << 22), None
    synthetic = synthesized(args, Path(args.input))
    if synthetic is not None:
        return iter([compile_trace(synthetic[0], args.block_size or DEFAULT_TOKEN_BLOCK_SIZE)]), None
    stream = TraceStream(args.input, block_size=args.block_size, keep_order=args.keep_order,
                         batch_bytes=args.batch_bytes, **reading_options(args))
    return prefetched(stream), stream


def _lcp_streamed(args) -> tuple[int, int, int]:
    """The compiled block keys as an lcp file, batch by batch. Keys name their whole prefix, which is what lcp's
    positional ids mean, so libCacheSim's prefix simulator sees cachesim's prefix tree; the trace's chat ids,
    parents and turns (an lcp or Qwen input) go along. A token trace's partial last block, which cachesim never
    caches, is not written: such a request's input_length is its whole blocks (counted in a note)."""
    import numpy as np

    from cachesim.progress import progress_bar
    from cachesim.readers.lcp import LcpWriter
    from cachesim.requests import BlockRequests

    batches, stream = _compiled_batches(args)
    source = stream.source if stream is not None else None
    writer, cut_tails, no_blocks = None, 0, 0
    with _removed_on_error(args.output), contextlib.ExitStack() as stack:
        update = stack.enter_context(progress_bar(source.total_bytes if source else 0,
                                                  (lambda: source.bytes_read) if source else (lambda: 0),
                                                  "convert", enabled=args.progress))
        for batch in batches:
            batch = batch.keyed()
            if writer is None:
                writer = stack.enter_context(LcpWriter(args.output, block_size=batch.block_size,
                                                       compress=args.output.lower().endswith(".zst")))
            n_blocks = np.diff(batch.block_offsets)
            whole = n_blocks * batch.block_size
            cut_tails += int(np.count_nonzero(batch.prompt_tokens > whole))
            keep = n_blocks > 0   # a prompt shorter than a block has nothing to cache, and lcp no way to say it
            no_blocks += int(np.count_nonzero(~keep))
            if not keep.any():
                continue
            requests = BlockRequests(t=batch.t[keep], tenant=batch.tenant[keep],
                                     tenant_names=list(batch.tenant_names), session=batch.session[keep],
                                     output_tokens=batch.output_tokens[keep], block_ids=batch.block_keys,
                                     # the rows left out hold no blocks, so the other rows' ends stay where they are
                                     block_offsets=np.concatenate([[0], batch.block_offsets[1:][keep]]),
                                     prompt_tokens=np.minimum(batch.prompt_tokens, whole)[keep],
                                     block_size=batch.block_size)
            writer.write(requests, **{k: np.asarray(batch.meta[k])[keep] for k in ("chat_id", "parent_chat_id", "turn")
                                      if k in batch.meta})
            update(writer.n_requests)
        if writer is None or writer.n_requests == 0:   # inside: the empty file goes too
            raise ValueError(f"{args.input}: no request holds a whole block, so an lcp file would hold nothing")
    if no_blocks:
        warnings.warn(f"{no_blocks:,} requests shorter than one block are left out: they have nothing to cache",
                      stacklevel=2)
    if cut_tails:
        warnings.warn(f"{cut_tails:,} requests end in a partial block, which cachesim never caches and the lcp file "
                      "leaves out: their input_length is their whole blocks' tokens", stacklevel=2)
    return writer.n_requests, writer.n_blocks, writer.block_size


def _said(args, requests: int, blocks: int, block_size: int) -> int:
    size_in, size_out = Path(args.input).stat().st_size, Path(args.output).stat().st_size
    print(f"{args.output}: {requests:,} requests, {blocks:,} blocks of {block_size} tokens; "
          f"{size_out:,} bytes; the input is {size_in:,} bytes ({size_in / max(size_out, 1):.1f}x)")
    return 0


def _parquet_as_read(args) -> tuple[int, int, int] | None:
    """A block-id trace streamed into Parquet as its reader gives it (kind ``ids``), batch by batch; None (nothing
    written) when the reader gives token ids or compiled keys, which are written compiled instead."""
    import numpy as np

    from cachesim.progress import progress_bar
    from cachesim.readers import ReadOptions, _format, iter_requests
    from cachesim.readers._base import Source
    from cachesim.readers.parquet import ParquetTraceWriter
    from cachesim.requests import BlockRequests, TraceError

    if Path(args.input).suffix == ".npz":
        return None
    kw = reading_options(args)
    module = _format(args.input, kw.pop("format"))
    options = ReadOptions(block_size=args.block_size, batch_bytes=args.batch_bytes, **kw)
    source = Source(args.input)
    batches = iter_requests(args.input, module.NAME, options, source=source)
    first = next(batches, None)
    if first is None or not isinstance(first.requests, BlockRequests) or first.requests.keys_given:
        return None
    time_field = getattr(module, "TIME_FIELD", "t")
    previous_t = -np.inf
    with ParquetTraceWriter(args.output, kind="ids", block_size=first.requests.block_size) as writer, \
            progress_bar(source.total_bytes, lambda: source.bytes_read, "convert", enabled=args.progress) as update:
        for batch in itertools.chain([first], batches):
            t = batch.requests.t
            if args.keep_order and len(t):
                back = np.flatnonzero(np.diff(t, prepend=previous_t) < 0)
                if back.size:
                    i = int(back[0])
                    raise TraceError(f"arrival time {float(t[i])!r} s is before the previous request's; "
                                     "--keep-order refuses to reorder", field=time_field, file=args.input,
                                     line=int(batch.lines[i]), unit=batch.unit)
            if len(t):
                previous_t = float(t[-1])
                writer.write(batch)
            update(writer.requests)
    options.report_skips()
    return writer.requests, writer.blocks, writer.block_size
