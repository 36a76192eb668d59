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

import numpy as np

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
    seconds,
)
from cachesim.requests import TraceError

NAME = "qwen"
_KEYS = (b"timestamp", b"input_length", b"output_length")
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
        if tenant_field not in obj:
            raise TraceError("missing (the tenant field)", field=tenant_field)
        tenant = label(obj, tenant_field)
        prompt = mooncake.block_prompt(ids, prompt, BLOCK_SIZE, options)  # last: the row is read from here on
        root = chat if parent < 0 else roots.get(parent, parent)
        roots[chat] = root
        return Row(t=t, values=ids, prompt_tokens=prompt, output_tokens=output, tenant=tenant, session=root)

    columns = Columns("blocks", BLOCK_SIZE)
    label_keys = (b"chat_id", b"parent_chat_id", tenant_field.encode())

    def fast(data, first_line: int) -> ReadResult | None:
        if tenant_field in ("timestamp", "input_length", "output_length", "hash_ids", "chat_id", "parent_chat_id"):
            return None
        found = mooncake.scan_chunk(data, first_line, source.path, _KEYS, BLOCK_SIZE, 1.0, label_keys,
                                    lengths=options.lengths)
        if not found:
            return None
        result, labels, raw = found[:3]
        if np.any(labels[:, :2, 0] != 2) or np.any(labels[:, 2, 0] == 0):  # integer ids and a tenant on every line
            return None
        try:
            tenants = [raw[a:b].decode("utf-8") if kind == 1 else int(raw[a:b]) for kind, a, b in labels[:, 2].tolist()]
        except UnicodeDecodeError:
            return None
        chats = [int(raw[a:b]) for _, a, b in labels[:, 0].tolist()]
        parents = [int(raw[a:b]) for _, a, b in labels[:, 1].tolist()]
        sessions = []
        for chat, parent in zip(chats, parents, strict=True):  # one step per request
            root = chat if parent < 0 else roots.get(parent, parent)
            roots[chat] = root
            sessions.append(columns.sessions.code(root))
        requests = result.requests
        requests.tenant = np.asarray([columns.tenants.code(x) for x in tenants], dtype=np.int32)
        requests.tenant_names = list(columns.tenants.names)
        requests.session = np.asarray(sessions, dtype=np.int64)
        return mooncake.counted(found, options)

    return json_batches(source, options, columns, parse, fast=fast)
