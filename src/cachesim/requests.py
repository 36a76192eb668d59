"""Raw request batches: what readers and workload generators produce, before keys are compiled.

Two shapes, both columnar (numpy), never one Python object per token or block:

- :class:`TokenRequests` — prompts as token ids (cut into blocks of any ``block_size`` at compile time);
- :class:`BlockRequests` — prompts as block ids given by the trace (e.g. Mooncake ``hash_ids``),
  each request with its prompt length in tokens and the trace's block size.

Both carry ``t`` (seconds), ``tenant`` (small ints indexing ``tenant_names``), ``session``
(int64, -1 for none) and ``output_tokens`` (int64, -1 when unknown).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TraceError", "TokenRequests", "BlockRequests", "Ragged", "offsets_from_lengths"]


class TraceError(ValueError):
    """Bad input, located: ``file:line: field: message`` (file and line when known).

    ``unit`` says what ``line`` counts: ``"line"`` (text files, ``file:12:``), ``"request"`` (binary files whose
    records are requests, ``file: request 12:``) or ``"byte"`` (an offset into a binary file, ``file: byte 8,240:``).
    """

    def __init__(self, message: str, *, field: str | None = None, file: str | None = None,
                 line: int | None = None, unit: str = "line"):
        self.message = message
        self.field = field
        self.file = file
        self.line = line
        self.unit = unit
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file is not None and self.line is not None and self.unit != "line":
            where = f"{self.file}: {self.unit} {self.line:,}: "
        elif self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        elif self.line is not None:
            where = f"request {self.line}: "
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.message}"

    def located(self, file: str | None = None, line: int | None = None, unit: str = "line") -> TraceError:
        """The same error with a file and/or line filled in where it had none."""
        if self.line is not None:
            line, unit = self.line, self.unit
        return TraceError(self.message, field=self.field, file=self.file if self.file is not None else file,
                          line=line, unit=unit)


def offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    """CSR offsets (int64, n+1) from per-row lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


@dataclass
class Ragged:
    """A list per request, columnar: CSR offsets [n+1] and columns of the flattened items."""

    offsets: np.ndarray
    columns: dict

    def take(self, order: np.ndarray) -> Ragged:
        lengths = np.diff(self.offsets)[order]
        offsets = offsets_from_lengths(lengths)
        index = np.repeat(self.offsets[:-1][order] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Ragged(offsets, {k: v[index] for k, v in self.columns.items()})

    @staticmethod
    def concat(parts: list[Ragged]) -> Ragged:
        lengths = np.concatenate([np.diff(p.offsets) for p in parts])
        return Ragged(offsets_from_lengths(lengths),
                      {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns})

    def row(self, i: int) -> dict:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return {k: v[a:b] for k, v in self.columns.items()}


def _as_tenants(tenant, n: int, tenant_names: Sequence[str] | None):
    if tenant is None:
        return np.zeros(n, dtype=np.int32), list(tenant_names or ["default"])
    arr = np.asarray(tenant)
    if arr.dtype.kind in "iu":
        n_names = int(arr.max(initial=-1)) + 1
        names = list(tenant_names) if tenant_names is not None else [str(i) for i in range(n_names)]
        if n and (arr.min() < 0 or arr.max() >= len(names)):
            raise TraceError(f"tenant index outside 0..{len(names) - 1}", field="tenant")
        return arr.astype(np.int32, copy=False), names
    # labels: intern in order of first appearance
    names_out: list[str] = list(tenant_names or [])
    index = {name: i for i, name in enumerate(names_out)}
    codes = np.empty(n, dtype=np.int32)
    for i, label in enumerate(arr.tolist()):
        label = str(label)
        code = index.get(label)
        if code is None:
            code = index[label] = len(names_out)
            names_out.append(label)
        codes[i] = code
    return codes, names_out


@dataclass
class _RequestColumns:
    t: np.ndarray                       # float64 [n], seconds
    tenant: np.ndarray                  # int32 [n], index into tenant_names
    tenant_names: list[str]
    session: np.ndarray                 # int64 [n], -1 = none
    output_tokens: np.ndarray           # int64 [n], -1 = unknown

    @property
    def n_requests(self) -> int:
        return len(self.t)


@dataclass
class TokenRequests(_RequestColumns):
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))        # uint32 [total tokens]
    token_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # int64 [n+1], CSR

    @classmethod
    def from_lists(cls, prompts: Sequence[Sequence[int]], t=None, tenant=None, session=None,
                   output_tokens=None, tenant_names: Sequence[str] | None = None) -> TokenRequests:
        """Build from Python lists of token ids (convenient for small inputs and tests)."""
        n = len(prompts)
        lengths = np.fromiter((len(p) for p in prompts), dtype=np.int64, count=n)
        flat = np.fromiter((tok for p in prompts for tok in p), dtype=np.int64, count=int(lengths.sum()))
        return cls.from_arrays(flat, offsets_from_lengths(lengths), t=t, tenant=tenant, session=session,
                               output_tokens=output_tokens, tenant_names=tenant_names)

    @classmethod
    def from_arrays(cls, tokens, token_offsets, t=None, tenant=None, session=None, output_tokens=None,
                    tenant_names: Sequence[str] | None = None) -> TokenRequests:
        offsets = np.asarray(token_offsets, dtype=np.int64)
        n = len(offsets) - 1
        tokens = np.asarray(tokens)
        if tokens.dtype != np.uint32:
            if tokens.size and (tokens.dtype.kind not in "iu" or tokens.min() < 0 or tokens.max() > 0xFFFFFFFF):
                bad = int(np.flatnonzero((tokens < 0) | (tokens > 0xFFFFFFFF))[0]) if tokens.dtype.kind in "iu" else 0
                row = int(np.searchsorted(offsets, bad, side="right") - 1)
                raise TraceError("token ids must be integers in 0..2**32-1", field="tokens", line=row)
            tokens = tokens.astype(np.uint32)
        codes, names = _as_tenants(tenant, n, tenant_names)
        return cls(t=_times(t, n), tenant=codes, tenant_names=names, session=_ints(session, n),
                   output_tokens=_ints(output_tokens, n), tokens=tokens, token_offsets=offsets)


@dataclass
class BlockRequests(_RequestColumns):
    block_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))     # uint64 [total blocks]
    block_offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # int64 [n+1], CSR
    prompt_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # int64 [n]
    block_size: int = 512
    # a compiled trace written back out (Parquet in keys mode): block_ids are already chained keys, compiled
    # as they are; tail_tokens [n] is each request's last-block count and block_source the original trace's
    # (a token-cut trace may leave a partial tail uncached, so the block count need not be ceil(prompt / size))
    keys_given: bool = False
    tail_tokens: np.ndarray | None = None
    block_source: str = "ids"

    @classmethod
    def from_lists(cls, block_ids: Sequence[Sequence[int]], prompt_tokens, block_size: int, t=None, tenant=None,
                   session=None, output_tokens=None, tenant_names: Sequence[str] | None = None) -> BlockRequests:
        n = len(block_ids)
        lengths = np.fromiter((len(b) for b in block_ids), dtype=np.int64, count=n)
        flat = np.fromiter((i for b in block_ids for i in b), dtype=np.uint64, count=int(lengths.sum()))
        codes, names = _as_tenants(tenant, n, tenant_names)
        return cls(t=_times(t, n), tenant=codes, tenant_names=names, session=_ints(session, n),
                   output_tokens=_ints(output_tokens, n), block_ids=flat,
                   block_offsets=offsets_from_lengths(lengths),
                   prompt_tokens=np.asarray(prompt_tokens, dtype=np.int64), block_size=int(block_size))


def _times(t, n: int) -> np.ndarray:
    if t is None:
        return np.arange(n, dtype=np.float64)
    return np.asarray(t, dtype=np.float64)


def _ints(values, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, -1, dtype=np.int64)
    return np.asarray(values, dtype=np.int64)
