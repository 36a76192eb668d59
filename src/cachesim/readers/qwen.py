"""Alibaba Qwen / Bailian (ATC'25) JSONL: one request per line.

    {"chat_id": 7, "parent_chat_id": -1, "timestamp": 61.114, "input_length": 521, "output_length": 18,
     "type": "text", "turn": 1, "hash_ids": [1089, 1090, ...]}

``timestamp`` is seconds; ``hash_ids`` are 16-token blocks (``len == ceil(input_length / 16)``, the last one
partial). ``parent_chat_id`` is -1 at a conversation's start; the session is the conversation's root chat id
(a parent not seen earlier in the file is taken as a root). The tenant is ``type`` unless
``ReadOptions.tenant_field`` names another field (``--tenant-field``).
"""

from __future__ import annotations

from collections.abc import Iterator

from cachesim.readers._base import (Columns, ReadOptions, ReadResult, Row, Source, check_block_count, count,
                                    fixed_block_size, int_list, json_batches, label, require, seconds)
from cachesim.requests import TraceError

NAME = "qwen"
TIME_FIELD = "timestamp"
BLOCK_SIZE = 16


def sniff(first: dict | None, head: bytes) -> bool:
    return first is not None and "chat_id" in first and "parent_chat_id" in first and "hash_ids" in first


def batches(source: Source, options: ReadOptions) -> Iterator[ReadResult]:
    fixed_block_size(options, BLOCK_SIZE, "Qwen/Bailian")
    tenant_field = options.tenant_field or "type"
    roots: dict[int, int] = {}  # chat id -> its conversation's root chat id (one entry per request, not token)

    def parse(obj: dict, line_no: int) -> Row:
        chat = require(obj, "chat_id", (int,), "an integer chat id")
        parent = require(obj, "parent_chat_id", (int,), "an integer chat id (-1 at a conversation's start)")
        t = seconds(require(obj, "timestamp", (int, float), "seconds"), "timestamp")
        prompt = count(obj, "input_length", positive=True)
        output = count(obj, "output_length", required=False)
        ids = int_list(obj, "hash_ids", 2**64 - 1)
        check_block_count(len(ids), prompt, BLOCK_SIZE)
        if tenant_field not in obj:
            raise TraceError("missing (the tenant field)", field=tenant_field)
        tenant = label(obj, tenant_field)
        root = chat if parent < 0 else roots.get(parent, parent)
        roots[chat] = root
        return Row(t=t, values=ids, prompt_tokens=prompt, output_tokens=output, tenant=tenant, session=root)

    return json_batches(source, options, Columns("blocks", BLOCK_SIZE), parse)
