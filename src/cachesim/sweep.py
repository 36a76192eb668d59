"""Sweeps: replay one trace under every configuration of a grid and collect a tidy table.

    >>> table = cachesim.sweep("conversation_trace.jsonl", {"capacity_blocks": [1000, 10000, None],
    ...                                                      "policy": ["lru"]})

The trace is compiled once (once per block size for token traces), saved as an uncompressed .npz and memory-
mapped by every worker, so a task ships a path and a configuration, never the trace. Rows come back in completion
order, are appended to a checkpoint as they arrive (so an interrupted sweep resumes), and the final table is in
grid order whatever ran it: every executor gives the same table, byte for byte.
"""

from __future__ import annotations

import inspect
import itertools
import os
import re
import shutil
import socket
import sys
import tempfile
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import xxhash

from cachesim._contract import DEFAULT_TOKEN_BLOCK_SIZE, split_policies
from cachesim.parallel import _StopOnSignals, abort, make_executor
from cachesim.replay import RATIO_DEFINITIONS, replay
from cachesim.requests import BlockRequests, TokenRequests, TraceError
from cachesim.trace import Trace, compile_trace
from cachesim.units import parse_count, parse_seconds

__all__ = ["sweep", "run_sweep", "parse_grid", "load_grid", "SweepResult", "load_shared_trace",
           "SWEEP_FORMAT", "DEFAULT_TOKEN_BLOCK_SIZE", "load_result", "run_task"]

SWEEP_FORMAT = "cachesim-sweep"
_CHECKPOINT_FORMAT = "cachesim-sweep-checkpoint"
_NOT_AXES = {"trace", "impl", "keep_per_request"}
_ALIASES = {"capacity": "capacity_blocks", "ttl": "ttl_s"}
_NONE_WORDS = {"none", "null", "off", "unbounded", "inf", "infinite", ""}
DEFINITIONS = {**RATIO_DEFINITIONS, "tokens_computed": "prompt tokens - hit tokens (prefill the cache did not save)"}


# -- grids -----------------------------------------------------------------------------------------------------

def axis_names() -> tuple[str, ...]:
    """Every replay keyword a grid may vary (read off replay's signature, so new keywords are axes at once)."""
    return tuple(n for n in inspect.signature(replay).parameters if n not in _NOT_AXES)


def _parse_value(axis: str, value: Any) -> Any:
    """One axis value from TOML or the command line: "100k" blocks, "5m" of TTL, "none"/"unbounded" for None."""
    if value is None or isinstance(value, str) and value.strip().lower() in _NONE_WORDS:
        if axis == "block_size":
            raise ValueError("block_size must be a number of tokens, not none")
        return None
    if isinstance(value, bool):
        raise ValueError(f"axis {axis}: expected a number or a name, got {value!r}")
    try:
        if axis in ("capacity_blocks", "block_size"):
            return int(value) if isinstance(value, (int, np.integer)) else parse_count(str(value))
        if axis == "ttl_s":
            return float(value) if isinstance(value, (int, float)) else parse_seconds(str(value))
    except ValueError as exc:
        raise ValueError(f"axis {axis}: {exc}") from None
    if axis == "warmup" and isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value.strip() if isinstance(value, str) else value


def parse_grid(grid: Mapping[str, Any]) -> dict[str, list]:
    """Normalise a grid: canonical axis names, each a list of parsed values (a scalar is a one-value axis)."""
    known = axis_names()
    axes: dict[str, list] = {}
    for raw_name, raw_values in grid.items():
        name = _ALIASES.get(raw_name.replace("-", "_"), raw_name.replace("-", "_"))
        if name not in known:
            raise ValueError(f"unknown sweep axis {raw_name!r}; choose from {', '.join(known)} "
                             f"(or the aliases {', '.join(_ALIASES)})")
        if name in axes:
            raise ValueError(f"sweep axis {name!r} is given twice")
        values = raw_values if isinstance(raw_values, (list, tuple)) else [raw_values]
        if isinstance(raw_values, str) and "," in raw_values:
            values = split_policies(raw_values) if name == "policy" else raw_values.split(",")
        if not values:
            raise ValueError(f"sweep axis {name!r} has no values")
        parsed = [_parse_value(name, v) for v in values]
        duplicates = [v for i, v in enumerate(parsed) if v in parsed[:i]]
        if duplicates:
            raise ValueError(f"sweep axis {name!r} repeats {duplicates[0]!r}")
        axes[name] = parsed
    if not axes:
        raise ValueError("the sweep grid is empty: give at least one axis, e.g. capacity_blocks = [1000, 10000]")
    return axes


def load_grid(path: str | Path) -> dict[str, list]:
    """A grid from a TOML file of ``axis = [values]`` lines (a ``[grid]`` table, or top level)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise TraceError(f"cannot open: {exc.strerror}", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise TraceError(f"malformed TOML: {exc}", file=str(path)) from None
    data = data.get("grid", data)
    try:
        return parse_grid(data)
    except ValueError as exc:
        raise TraceError(str(exc), file=str(path)) from None


def configurations(axes: Mapping[str, list]) -> list[dict[str, Any]]:
    """The cartesian product in grid order (the first axis varies slowest)."""
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(axes[n] for n in names))]


def config_id(params: Mapping[str, Any]) -> str:
    """A stable text key of one configuration (checkpoint lines are matched on it)."""
    return orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()


# -- sharing the compiled trace --------------------------------------------------------------------------------

_SHARED: dict[tuple[str, int], Trace] = {}


def load_shared_trace(path: str | Path) -> Trace:
    """A trace saved by :meth:`Trace.save`, its block keys memory-mapped (read-only); cached per process, so
    each worker maps the file once however many tasks it runs. A recompressed .npz is read instead."""
    path = str(path)
    key = (path, os.stat(path).st_mtime_ns)
    trace = _SHARED.get(key)
    if trace is not None:
        return trace
    trace = Trace.load(path, mmap=True)  # the block keys, the bulk of a trace, are mapped, not read
    trace.meta["shared_path"] = os.path.abspath(path)
    if len(_SHARED) >= 8:  # a worker that serves many sweeps keeps only recent traces mapped
        _SHARED.pop(next(iter(_SHARED)))
    _SHARED[key] = trace
    return trace


def _forget(directory: Path) -> None:
    """Drop this process's mappings of files under ``directory`` (about to be deleted)."""
    for key in [k for k in _SHARED if Path(k[0]).resolve().is_relative_to(directory)]:
        del _SHARED[key]


def fingerprint(trace: Trace) -> str:
    """XXH3 of the columns a replay reads: a checkpoint resumes only against the same trace."""
    h = xxhash.xxh3_64()
    for column in (trace.t, trace.tenant, trace.prompt_tokens, trace.block_offsets, trace.block_keys,
                   trace.block_tokens):
        h.update(np.ascontiguousarray(column).view(np.uint8))
    h.update(orjson.dumps([trace.block_size, trace.tenant_names]))
    return h.hexdigest()


# -- the task a worker runs ------------------------------------------------------------------------------------

def _flatten(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Summary metrics as flat columns (nested counts become ``evictions_capacity`` etc.)."""
    row: dict[str, Any] = {}
    for key, value in summary.items():
        if key in ("definitions", "warmup"):
            continue
        if isinstance(value, Mapping):
            for sub, v in value.items():
                row[f"{key}_{sub}"] = v
        else:
            row[key] = value
    row["tokens_computed"] = summary["prompt_tokens"] - summary["hit_tokens"]
    return row


@dataclass(frozen=True)
class StreamedTrace:
    """A trace file each configuration streams itself (``sweep --stream``): nothing is compiled whole, so the
    sweep's memory is one replay's, whatever the file's length, and every configuration reads the file once.
    ``reading`` holds :class:`~cachesim.readers.TraceStream`'s keywords (format, block_size, skip_invalid...)."""

    path: str
    reading: tuple = ()   # sorted (name, value) pairs: hashable and picklable for every executor

    @classmethod
    def of(cls, path: str | Path, **reading: Any) -> StreamedTrace:
        return cls(os.path.abspath(path), tuple(sorted((k, v) for k, v in reading.items() if v is not None)))

    def at(self, block_size: int) -> StreamedTrace:
        """The same token-id file cut at ``block_size``."""
        return StreamedTrace(self.path, tuple(sorted({**dict(self.reading), "block_size": block_size}.items())))

    def open(self, prefetch: int = 1):
        """The file's compiled batches, read ``prefetch`` batches ahead in a thread while the core serves."""
        from cachesim.parallel import prefetched
        from cachesim.readers import TraceStream

        return prefetched(TraceStream(self.path, **dict(self.reading)), prefetch)

    def first_batch(self) -> Trace:
        """The first compiled batch (what the configurations are checked against), without reading further."""
        stream = self.open(prefetch=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the real replays report the notes
            for batch in stream:
                return batch
        raise TraceError("no requests: the file is empty", file=self.path)

    def fingerprint(self) -> str:
        """The file (name, size, modification time) and how it is read: a checkpoint resumes only against it."""
        info = os.stat(self.path)
        return xxhash.xxh3_64(orjson.dumps([self.path, info.st_size, info.st_mtime_ns,
                                            [list(kv) for kv in self.reading]])).hexdigest()


def run_task(task: tuple) -> tuple:
    """Replay one configuration of a shared trace: (index, trace path, replay keywords) -> (index, metrics,
    hits_from or None, notes). Module level and free of closures, so every executor can pickle it. ``notes``
    are what reading a streamed file reported (rows sorted, skipped, read by their ids): the caller says each
    once, since a worker's warnings reach no one."""
    index, path, params = task
    notes: list[str] = []
    if isinstance(path, StreamedTrace):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = replay(path.open(), keep_per_request=False, **params)
        notes = list(dict.fromkeys(str(w.message) for w in caught))
    else:
        result = replay(load_shared_trace(path), keep_per_request=False, **params)
    metrics = {"block_size": result.block_size, **_flatten(result.summary())}
    hits = None
    if len(result.tenant_names) > 1:
        hits = {"tenants": list(result.tenant_names), "tokens": result.hits_from.tolist()}
    return index, metrics, hits, notes


# -- results ---------------------------------------------------------------------------------------------------

@dataclass
class SweepResult:
    """A finished sweep: one row per configuration (axes then metrics), in grid order."""

    axes: dict[str, list]
    rows: list[dict[str, Any]]
    trace: dict[str, Any]
    interference: dict[int, dict] = field(default_factory=dict)   # row index -> {"tenants", "tokens"}

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else list(self.axes)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": SWEEP_FORMAT, "version": 1, "trace": self.trace, "axes": self.axes,
                "columns": self.columns, "rows": self.rows, "definitions": DEFINITIONS,
                "interference": [{"row": i, **m} for i, m in sorted(self.interference.items())]}

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2).decode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<data>") -> SweepResult:
        if data.get("kind") != SWEEP_FORMAT:
            raise TraceError(f"not a cachesim sweep result (kind {data.get('kind')!r})", file=source)
        interference = {int(m["row"]): {"tenants": m["tenants"], "tokens": m["tokens"]}
                        for m in data.get("interference", [])}
        return cls(axes=dict(data["axes"]), rows=list(data["rows"]), trace=dict(data["trace"]),
                   interference=interference)

    def to_frame(self):
        """A pandas DataFrame (needs the ``sweep`` extra); trace and axes ride along in ``.attrs``."""
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=self.columns)
        frame.attrs["cachesim"] = {"trace": self.trace, "axes": self.axes,
                                   "interference": {str(k): v for k, v in self.interference.items()}}
        return frame

    def write(self, path: str | Path) -> None:
        """CSV, JSON or Parquet by the file's suffix."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            path.write_text(self.to_json() + "\n")
        elif suffix == ".csv":
            import csv

            with open(path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns, lineterminator="\n")
                writer.writeheader()
                writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in self.rows)
        elif suffix in (".parquet", ".pq"):
            try:
                frame = self.to_frame()
                frame.attrs = {}  # trace/axes are in the JSON output; parquet keeps plain columns
                frame.to_parquet(path, index=False)
            except ImportError:
                raise ValueError("Parquet output needs the 'sweep' extra: pip install 'cachesim[sweep]'") from None
        else:
            raise ValueError(f"{path}: unknown output format {suffix or '(none)'}; use .csv, .json or .parquet")


# -- checkpoints -----------------------------------------------------------------------------------------------

def _read_checkpoint(path: Path, trace_fingerprint: str) -> tuple[dict[str, tuple[dict, dict | None]], int]:
    """Finished configurations of an interrupted sweep (config id -> (metrics, hits_from)), and how many bytes of
    the file are whole lines: anything after the last newline is a line cut off mid-write."""
    done: dict[str, tuple[dict, dict | None]] = {}
    data = path.read_bytes()
    whole_bytes = data.rfind(b"\n") + 1
    if whole_bytes == 0 and not _checkpoint_header(trace_fingerprint).startswith(data):
        # only a torn header may be dropped whole: any other file is not ours to truncate
        raise TraceError("not a cachesim sweep checkpoint", file=str(path), line=1)
    # a record is written with its newline in one write, so only an unterminated tail can be torn
    for line_no, raw in enumerate(data[:whole_bytes].split(b"\n")[:-1], start=1):
        if line_no > 1 and not raw.strip():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            record = None
        if line_no == 1:
            if not isinstance(record, dict) or record.get("kind") != _CHECKPOINT_FORMAT:
                raise TraceError("not a cachesim sweep checkpoint", file=str(path), line=1)
            if record.get("trace") != trace_fingerprint:
                raise TraceError("this checkpoint is from a different trace; delete it to start afresh",
                                 file=str(path), line=1)
            continue
        if not isinstance(record, dict) or "id" not in record or "metrics" not in record:
            raise TraceError("malformed checkpoint line", file=str(path), line=line_no)
        done[record["id"]] = (record["metrics"], record.get("hits_from"))
    return done, whole_bytes


def _drop_torn_tail(path: Path, whole_bytes: int) -> None:
    """Cut a checkpoint back to its whole lines, so rows appended on resume start on a line of their own."""
    torn = path.stat().st_size - whole_bytes
    if torn:
        os.truncate(path, whole_bytes)
        warnings.warn(f"{path}: dropped its last line, cut off mid-write when the sweep was stopped ({torn} bytes); "
                      "that configuration runs again", stacklevel=3)


def _checkpoint_header(trace_fingerprint: str) -> bytes:
    return orjson.dumps({"kind": _CHECKPOINT_FORMAT, "version": 1, "trace": trace_fingerprint}) + b"\n"


class _Checkpoint:
    def __init__(self, path: Path, trace_fingerprint: str, append: bool):
        self.path = path
        self.handle = open(path, "ab" if append else "wb")  # noqa: SIM115 (open across the sweep; close() ends it)
        if not append or path.stat().st_size == 0:
            self._write(_checkpoint_header(trace_fingerprint))

    def _write(self, line: bytes) -> None:
        self.handle.write(line)
        self.handle.flush()

    def add(self, cid: str, metrics: dict, hits: dict | None) -> None:
        self._write(orjson.dumps({"id": cid, "metrics": metrics, "hits_from": hits}) + b"\n")

    def close(self) -> None:
        self.handle.close()


# -- preparing the traces --------------------------------------------------------------------------------------

def _block_size_of(params: Mapping[str, Any], default: int, tokens: bool) -> int:
    """The block size a configuration replays at: its own, else its preset's (token traces only: id traces keep
    theirs, as replay does), else the default."""
    if params.get("block_size") is not None:
        return int(params["block_size"])
    if tokens and params.get("preset") is not None:
        from cachesim.presets import get_preset

        return get_preset(params["preset"]).block_size
    return default


def _source(trace: Any, label: str | None, format: str | None) -> tuple[Any, str, Any]:
    """(what to compile or replay, a label, the read result for locating errors)."""
    from cachesim.readers import ReadResult

    if isinstance(trace, ReadResult):  # a file the caller read with its own reader options (the CLI)
        return trace.requests, label or trace.path, trace
    if isinstance(trace, (str, Path)):
        path = Path(trace)
        if path.suffix == ".npz":
            return load_shared_trace(path), label or str(path), None
        from cachesim.readers import read_requests

        read = read_requests(path, format=format)
        return read.requests, label or str(path), read
    if isinstance(trace, (Trace, TokenRequests, BlockRequests)):
        return trace, label or type(trace).__name__, None
    raise TypeError(f"cannot sweep {type(trace).__name__}; expected a path, a Trace, TokenRequests or "
                    "BlockRequests")


def _compile_all(source: Any, label: str, read: Any, block_sizes: list[int]) -> dict[int, Trace]:
    """One compiled trace per block size the grid needs; only token ids can be cut at more than one."""
    if isinstance(source, TokenRequests):
        out = {}
        for size in block_sizes:
            try:
                out[size] = compile_trace(source, size, sort=True)
            except TraceError as exc:
                raise (read.locate(exc) if read is not None else exc) from None
        return out
    if isinstance(source, BlockRequests):
        try:
            source = compile_trace(source, sort=True)
        except TraceError as exc:
            raise (read.locate(exc) if read is not None else exc) from None
    fixed = source.block_size
    others = [b for b in block_sizes if b != fixed]
    if others:
        what = "block ids from the trace" if source.block_source == "ids" else "a compiled trace"
        raise ValueError(f"{label}: cannot sweep block sizes {sorted(set(block_sizes))}: its blocks are fixed at "
                         f"{fixed} tokens ({what}); a block-size axis needs a trace of token ids")
    return {fixed: source}


def _check_configs(configs: list[dict], traces: dict[int, Trace], block_of: dict[str, int]) -> None:
    """Validate every configuration before running any: replay an empty trace with it, so exactly replay's own
    checks (CacheConfig: policy names, capacities, TTLs...) apply, and new policies need no change here."""
    seen = set()
    for params in configs:
        cid = config_id(params)
        if cid in seen:
            continue
        seen.add(cid)
        trace = traces[block_of[cid]]
        try:
            replay(trace.slice(0, 0), keep_per_request=False, **params)
        except (ValueError, TraceError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
            raise ValueError(f"sweep configuration ({shown}): {exc}") from None


def _trace_info(label: str, traces: dict[int, Trace], fp: str) -> dict[str, Any]:
    first = next(iter(traces.values()))
    return {"label": label, "requests": first.n_requests, "tenants": len(first.tenant_names),
            "block_source": first.block_source, "block_sizes": sorted(traces),
            "blocks": {str(b): t.n_blocks for b, t in sorted(traces.items())}, "fingerprint": fp}


# -- the shared directory and its clean-up ---------------------------------------------------------------------

_SHARED_DIR_PREFIX = "cachesim-sweep-"
_SHARED_DIR_OWNER = re.compile(re.escape(_SHARED_DIR_PREFIX) + r"([0-9a-f]{8})-(\d+)-")


def _host_tag() -> str:
    # a pid names a process only on the machine that issued it, and a shared_dir may be seen by several
    return xxhash.xxh3_64_hexdigest(socket.gethostname().encode())[:8]


def _shared_dir(parent: str | Path | None) -> tempfile.TemporaryDirectory:
    """The directory the compiled traces are shared from, named after its owner (host and pid) so that a later
    sweep can tell whether it was left by a process that no longer exists."""
    return tempfile.TemporaryDirectory(prefix=f"{_SHARED_DIR_PREFIX}{_host_tag()}-{os.getpid()}-", dir=parent)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; a pid no process could have: not ours
        return True
    return True


def _remove_stale_shared_dirs(parent: str | Path | None) -> None:
    """Delete the shared directories that killed sweeps (kill -9, a crash) had no chance to remove: those in
    ``parent`` made on this host by a process that is gone. A running sweep's, another host's, and any this
    naming does not describe are left alone."""
    if os.name != "posix":  # elsewhere os.kill(pid, 0) would not ask, it would terminate
        return
    host = _host_tag()
    for entry in Path(parent if parent is not None else tempfile.gettempdir()).glob(_SHARED_DIR_PREFIX + "*"):
        owner = _SHARED_DIR_OWNER.match(entry.name)
        if owner and owner[1] == host and entry.is_dir() and not _process_exists(int(owner[2])):
            shutil.rmtree(entry, ignore_errors=True)


# -- the sweep -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StoppedSweep:
    """What a sweep stopped by a signal kept: ``saved`` of ``total`` configurations, in ``checkpoint`` (None:
    nowhere, the sweep had no checkpoint)."""

    saved: int
    total: int
    checkpoint: Path | None


def run_sweep(trace: Any, grid: Mapping[str, Any] | str | Path, executor: Any = None, *, workers: int | None = None,
              checkpoint: str | Path | None = None, resume: bool = False, progress: bool | None = None,
              shared_dir: str | Path | None = None, label: str | None = None,
              format: str | None = None) -> SweepResult:
    """Run every configuration of ``grid`` on ``trace``; see :func:`sweep`. Returns a :class:`SweepResult`."""
    axes = load_grid(grid) if isinstance(grid, (str, Path)) else parse_grid(grid)
    configs = configurations(axes)
    if isinstance(trace, StreamedTrace):
        label = label or trace.path
        first = trace.first_batch()
        tokens = first.block_source == "tokens"
        block_of = {config_id(p): _block_size_of(p, first.block_size, tokens) for p in configs}
        streams = {size: trace.at(size) if tokens else trace for size in sorted(set(block_of.values()))}
        traces = {size: (first if size == first.block_size or not tokens else streams[size].first_batch())
                  for size in streams}
        if not tokens:
            _compile_all(first, label, None, sorted(streams))   # an id trace's one block size: refuses others
        fp = trace.fingerprint()
    else:
        source, label, read = _source(trace, label, format)
        tokens = isinstance(source, TokenRequests)
        default_block = DEFAULT_TOKEN_BLOCK_SIZE if tokens else source.block_size
        block_of = {config_id(p): _block_size_of(p, default_block, tokens) for p in configs}
        traces = _compile_all(source, label, read, sorted(set(block_of.values())))
        fp = xxhash.xxh3_64(orjson.dumps([fingerprint(t) for _, t in sorted(traces.items())])).hexdigest()
        streams = None
    _check_configs(configs, traces, block_of)

    done: dict[str, tuple[dict, dict | None]] = {}
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if checkpoint.exists() and checkpoint.stat().st_size:
            if not resume:
                raise ValueError(f"{checkpoint}: an interrupted sweep left this checkpoint; pass resume=True "
                                 "(--resume) to continue it, or delete it to start afresh")
            done, whole_bytes = _read_checkpoint(checkpoint, fp)
            _drop_torn_tail(checkpoint, whole_bytes)
    elif resume:
        raise ValueError("resume needs a checkpoint file (the CLI keeps one beside the output)")

    metrics: dict[int, dict] = {}
    interference: dict[int, dict] = {}
    todo = []
    for index, params in enumerate(configs):
        previous = done.get(config_id(params))
        if previous is not None:
            metrics[index] = previous[0]
            if previous[1] is not None:
                interference[index] = previous[1]
        else:
            todo.append((index, params))

    if todo:
        _remove_stale_shared_dirs(shared_dir)
        with _StopOnSignals() as stop, _shared_dir(shared_dir) as tmp:
            paths = dict(streams) if streams is not None else {}
            for size, compiled in traces.items():
                if streams is not None:
                    break   # each configuration streams the file itself: nothing to compile or share
                mapped = compiled.meta.get("shared_path")
                if mapped is None:
                    mapped = str(Path(tmp).resolve() / f"trace-b{size}.npz")
                    # numbered once here, every replay of the sweep indexes its blocks by array; a save cut short
                    # by a signal ends in zipfile's own error, hiding the signal
                    with stop.deferred():
                        compiled.dense().save(mapped)
                    stop.raise_if_signalled()
                paths[size] = mapped
            tasks = [(index, paths[block_of[config_id(params)]], params) for index, params in todo]
            sink = _Checkpoint(checkpoint, fp, append=bool(done)) if checkpoint is not None else None
            try:
                _execute(tasks, configs, executor, workers, progress, len(configs) - len(todo), sink, metrics,
                         interference, stop)
            except (KeyboardInterrupt, SystemExit) as exc:
                # for whoever reports the stop (cachesim.cli.main): how far it got, and where that is kept
                exc.cachesim_sweep = StoppedSweep(len(metrics), len(configs), checkpoint)
                raise
            finally:
                if sink is not None:
                    sink.close()
                _forget(Path(tmp).resolve())  # the serial executor mapped them here; free the space

    rows = [{**params, **_metrics_without_axes(metrics[i], params)} for i, params in enumerate(configs)]
    info = _trace_info(label, traces, fp)
    if streams is not None:   # only the first batch was compiled here: the counts come from the replays
        info.update(requests=rows[0]["requests_seen"] if rows else None, streamed=True,
                    blocks={str(block_of[config_id(p)]): r["blocks"] for p, r in zip(configs, rows, strict=True)
                            if not p.get("warmup")})
    return SweepResult(axes=axes, rows=rows, trace=info, interference=interference)


def _metrics_without_axes(metrics: dict, params: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in params}


def _execute(tasks, configs, executor, workers, progress, already_done, sink, metrics, interference,
             stop: _StopOnSignals) -> None:
    from cachesim.progress import track

    # processes unless told: a task ships only the path of a memory-mapped trace, so a process costs no copy
    said: set[str] = set()   # every streamed configuration reads the same file and reports the same notes
    with stop.deferred():
        runner, owned = make_executor(executor, workers, default="process")
    try:
        stop.raise_if_signalled()
        with track("sweep", len(configs), "configs", completed=already_done, enabled=progress,
                   where=f" on {runner.name}") as bar:
            for index, row, hits, notes in runner.run(run_task, tasks):
                for note in notes:
                    if note not in said:
                        said.add(note)
                        warnings.warn(note, stacklevel=2)
                with stop.deferred():  # a row is kept whole, in the table and the checkpoint, or not at all
                    metrics[index] = row
                    if hits is not None:
                        interference[index] = hits
                    if sink is not None:
                        sink.add(config_id(configs[index]), row, hits)
                stop.raise_if_signalled()
                bar.update(advance=1, last=", ".join(f"{k}={v}" for k, v in configs[index].items()))
    except BaseException:
        if owned:
            abort(runner)  # a signal or a failed task: end the workers, do not wait for what they run
        raise
    if owned:
        runner.close()


def sweep(trace: Any, grid: Mapping[str, Any] | str | Path, executor: Any = None, **options: Any):
    """Replay ``trace`` under every configuration of ``grid`` and return a tidy table.

    ``trace``: a path (any readable trace or a compiled .npz), a :class:`Trace`, or raw Token/BlockRequests.
    ``grid``: a mapping axis -> values (or a TOML file of them). Axes are replay's keywords — capacity_blocks
    (None = unbounded), policy, ttl_s, block_size (token traces only), hit_cap, isolation, warmup, preset —
    with the aliases ``capacity`` and ``ttl`` and units as on the command line ("100k", "5m", "unbounded").
    ``executor``: None (local processes), "serial", "thread", "dask", "tcp://HOST:PORT", "ray", a distributed.Client,
    or a
    concurrent.futures executor. Options: workers, checkpoint (+ resume), progress, shared_dir (where the
    memory-mapped traces go: a directory every worker sees, for a remote cluster), label, format (of a path).

    Returns a pandas DataFrame (``.attrs["cachesim"]`` holds the trace and axes) when pandas is installed,
    otherwise the list of row dicts. :func:`run_sweep` returns the :class:`SweepResult` itself.
    """
    result = run_sweep(trace, grid, executor, **options)
    try:
        return result.to_frame()
    except ImportError:
        return result.rows


def checkpoint_path(out: str | Path) -> Path:
    """Where the CLI checkpoints a sweep that writes ``out``."""
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")




def load_result(path: str | Path) -> SweepResult:
    """A sweep result saved as JSON."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise TraceError(f"malformed JSON: {exc}", file=str(path)) from None
    return SweepResult.from_dict(data, source=str(path))



class _CallableModule(types.ModuleType):
    """``cachesim.sweep(trace, grid)`` calls :func:`sweep`, while ``cachesim.sweep`` stays this module (so
    ``import cachesim.sweep as s`` and pickled references to its functions keep working)."""

    def __call__(self, trace: Any, grid: Mapping[str, Any] | str | Path, executor: Any = None, **options: Any):
        return sweep(trace, grid, executor, **options)


sys.modules[__name__].__class__ = _CallableModule
