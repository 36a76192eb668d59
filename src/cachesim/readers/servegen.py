"""Alibaba ServeGen's offline (batch) traces: one request of a production batch job a line, 16-token blocks.

Defined by alibaba/ServeGen (``data/offline/README.md``; the SOSP'26 ACDC paper's traces ``trace_a`` to
``trace_f``)::

    {"request_id": 0, "type": "multimodal", "input_length": 446, "hash_ids": [655296, ...], "img_ids": ["img_00001"]}

- a batch job is submitted whole, so there are no arrival times: every request arrives at 0 s, in the file's
  order (``request_id``, the order of the submitted input file);
- ``hash_ids`` are 16-token prefix blocks, ``len == ceil(input_length / 16)``, in one namespace across the
  traces (a row that breaks it is refused, or read by its ids with ``ReadOptions.lengths = "from-ids"``);
- the tenant is ``type`` (``text`` / ``multimodal``), or the field ``--tenant-field`` names; no session;
  ``img_ids`` are not read (the images' tokens are in ``input_length`` and their blocks in ``hash_ids``);
- the content-hash traces have no ``output_length`` (-1, unknown); the stat traces (``trace_d`` to
  ``trace_f``: lengths and durations, no ``hash_ids``) give a prefix cache nothing to match and are refused
  with that reason.
"""

from __future__ import annotations

from collections.abc import Iterator

from cachesim.readers import mooncake
from cachesim.readers._base import (
    Columns,
    ReadOptions,
    ReadResult,
    Row,
    Source,
    count,
    fixed_block_size,
    int_list,
    json_batches,
    label,
    require,
)
from cachesim.requests import TraceError

NAME = "servegen"
BLOCK_SIZE = 16


def sniff(first: dict | None, head: bytes) -> bool:
    return (first is not None and "request_id" in first and "input_length" in first and "type" in first
            and ("hash_ids" in first or "duration" in first) and "timestamp" not in first)


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    fixed_block_size(options, BLOCK_SIZE, "ServeGen")
    tenant_field = options.tenant_field or "type"

    def parse(obj: dict, line_no: int) -> Row:
        require(obj, "request_id", (int,), "an integer request id")
        if "hash_ids" not in obj and "duration" in obj:
            raise TraceError("missing: this is a ServeGen stat trace (lengths and durations, no block ids), which "
                             "gives a prefix cache nothing to match; the content-hash traces have hash_ids",
                             field="hash_ids")
        prompt = count(obj, "input_length", positive=True)
        output = count(obj, "output_length", required=False)
        ids = int_list(obj, "hash_ids", 2**64 - 1)
        if tenant_field not in obj:
            raise TraceError("missing (the tenant field)", field=tenant_field)
        tenant = label(obj, tenant_field)
        prompt = mooncake.block_prompt(ids, prompt, BLOCK_SIZE, options)  # last: the row is read from here on
        return Row(t=0.0, values=ids, prompt_tokens=prompt, output_tokens=output, tenant=tenant)

    return json_batches(source, options, Columns("blocks", BLOCK_SIZE), parse)
