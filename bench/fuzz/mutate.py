"""Seed trace files of every format, and byte- and structure-level mutations of them (deterministic per rng)."""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from proc import ROOT

DATA = ROOT / "tests" / "data"
SHARED = ROOT.parent / "shared" / "traces"   # real traces, read only, never copied into the repository


@dataclass
class Seed:
    name: str
    fmt: str                     # the reader; decides the expected counts
    data: bytes
    args: list[str] = field(default_factory=list)   # what replay needs for this format
    suffix: str = ".jsonl"


# formats where every non-blank line is one request: the replay must count them all
LINE_FORMATS = {"mooncake", "qwen", "lmbench", "native", "apilog"}
TOKEN_FORMATS = {"native-tokens", "apilog", "claude-code"}   # what `cachesim cost` takes


def _lines(objs) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def _generated(rng: random.Random) -> list[Seed]:
    """Small files of each block-id / token format with shared prefixes, so hits (and their numbers) happen."""
    moon, qwen, lmb, blocks, tokens = [], [], [], [], []
    for i in range(40):
        n = rng.randint(1, 9)
        ids = [rng.randint(0, 5) for _ in range(2)] + list(range(n))   # a few shared roots, then shared runs
        prompt = (len(ids) - 1) * 512 + rng.randint(1, 512)
        moon.append({"timestamp": i * 100, "input_length": prompt, "output_length": rng.randint(0, 50),
                     "hash_ids": ids})
        lmb.append({"timestamp": str(i * 10**8), "input_length": prompt, "output_length": 3, "hash_ids": ids})
        q_prompt = (len(ids) - 1) * 16 + rng.randint(1, 16)
        qwen.append({"chat_id": i, "parent_chat_id": rng.choice([-1, max(i - 1, 0)]) if i else -1,
                     "timestamp": i * 0.5, "input_length": q_prompt, "output_length": 2,
                     "type": rng.choice(["text", "image", "file"]), "turn": 1, "hash_ids": ids})
        blocks.append({"t": i * 0.25, "tenant": rng.choice(["a", "b", 7]), "session": rng.randint(0, 3),
                       "block_ids": ids, "prompt_tokens": q_prompt, "block_size": 16, "output_tokens": 1})
        toks = [rng.randint(0, 20) for _ in range(rng.randint(0, 4))] + list(range(rng.randint(1, 60)))
        tokens.append({"t": i * 0.1, "tenant": rng.choice(["x", "y"]), "session": f"s{rng.randint(0, 2)}",
                       "tokens": toks, "output_tokens": 4})
    return [Seed("gen_mooncake", "mooncake", _lines(moon)), Seed("gen_qwen", "qwen", _lines(qwen)),
            Seed("gen_lmbench", "lmbench", _lines(lmb), ["--block-size", "512"]),
            Seed("gen_native_blocks", "native", _lines(blocks)),
            Seed("gen_native_tokens", "native-tokens", _lines(tokens))]


def seeds(rng: random.Random) -> list[Seed]:
    fixtures = [("mooncake.jsonl", "mooncake", []), ("qwen.jsonl", "qwen", []),
                ("lmbench512.jsonl", "lmbench", ["--block-size", "512"]),
                ("native_blocks16.jsonl", "native", []), ("native_blocks512.jsonl", "native", []),
                ("native_tokens.jsonl", "native-tokens", []), ("openai_chat.jsonl", "apilog", []),
                ("openai_responses.jsonl", "apilog", []), ("anthropic_messages.jsonl", "apilog", []),
                ("claude_code.jsonl", "claude-code", []), ("azure.csv", "azure", ["--synthesize"])]
    out = [Seed(name.split(".")[0], fmt, (DATA / name).read_bytes(), args, Path(name).suffix)
           for name, fmt, args in fixtures]
    out += _generated(rng)
    # a slice of the real traces (kept in the temp dir only)
    moon = SHARED / "mooncake" / "conversation_trace.jsonl"
    if moon.exists():
        with open(moon, "rb") as fh:
            out.append(Seed("real_mooncake", "mooncake", b"".join(fh.readline() for _ in range(200))))
    azure = SHARED / "azure" / "AzureLLMInferenceTrace_conv.csv"
    if azure.exists():
        with open(azure, "rb") as fh:
            out.append(Seed("real_azure", "azure", b"".join(fh.readline() for _ in range(60)), ["--synthesize"],
                            ".csv"))
    return out


# -- the values hostile input puts where a number, a string or a list belongs -------------------------------

HOSTILE = [2**63, 2**63 - 1, 2**64, 2**64 - 1, 2**65, -1, -(2**63), -(2**63) - 1, 0, -0.0, 1e308, -1e308, 1.5,
           2**53 + 1, 1e-320, "NaN", "Infinity", "-Infinity", "12", "", "x" * 300, None, True, False, [], {},
           [[1]], [{"a": 1}], {"nested": [1, {"x": None}]}, [2**64], [-1], [1.5], ["1"], [None], 4294967296,
           4294967295, 10**30]


def _json_text(v) -> str:
    if v in ("NaN", "Infinity", "-Infinity"):
        return v          # bare, as Python's json writes float('nan'): not JSON, but seen in the wild
    return json.dumps(v)


def _paths(obj, prefix=()):
    """Every (path, value) inside a parsed record."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    if not path:
        return value
    cur = obj
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return obj


def _mutate_record(rng: random.Random, line: bytes) -> tuple[bytes, str]:
    """One structural change to a JSON line: a hostile value, a renamed or dropped field, a duplicated key."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return _mutate_csv(rng, line)
    paths = list(_paths(obj))
    path, _ = rng.choice(paths)
    op = rng.random()
    if op < 0.6 or not path:
        value = rng.choice(HOSTILE)
        if not path:
            return (_json_text(value) + "\n").encode(), f"record -> {_json_text(value)[:40]}"
        marker = "\x00HOSTILE\x00"
        text = json.dumps(_set(obj, path, marker)).replace(json.dumps(marker), _json_text(value))
        return (text + "\n").encode(), f"{'.'.join(map(str, path))} = {_json_text(value)[:40]}"
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if isinstance(parent, dict):
        if op < 0.75:
            parent[key.upper() if rng.random() < 0.5 else key + "_x"] = parent.pop(key)
            return (json.dumps(obj) + "\n").encode(), f"rename {key}"
        if op < 0.9:
            del parent[key]
            return (json.dumps(obj) + "\n").encode(), f"drop {key}"
        text = json.dumps(obj)   # a duplicated key: JSON parsers disagree on which one wins
        dup = f'{json.dumps(key)}: {_json_text(rng.choice(HOSTILE))}, '
        return (text.replace("{", "{" + dup, 1) + "\n").encode(), f"duplicate key {key}"
    # inside a list: drop or repeat an element
    if op < 0.8:
        del parent[key]
        return (json.dumps(obj) + "\n").encode(), "drop list element"
    parent.insert(key, parent[key])
    return (json.dumps(obj) + "\n").encode(), "repeat list element"


def _mutate_csv(rng: random.Random, line: bytes) -> tuple[bytes, str]:
    cells = line.rstrip(b"\r\n").split(b",")
    i = rng.randrange(len(cells))
    value = rng.choice([b"-1", b"18446744073709551616", b"1e308", b"nan", b"inf", b"", b"abc", b"2023-13-45 99:99",
                        b"9" * 40, b"0", b"1.5", b'"4808"', b"\xff\xfe"])
    cells[i] = value
    if rng.random() < 0.2:
        cells.append(b"extra")
    return b",".join(cells) + b"\n", f"csv cell {i} = {value[:30]!r}"


def _long_line(rng: random.Random, lines: list[bytes]) -> bytes:
    """A first line longer than 64 KiB (the sniffer reads 64 KiB): a real record padded, or junk."""
    kind = rng.randrange(3)
    if kind == 0 and lines:
        try:
            obj = json.loads(lines[0])
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            obj["padding"] = "p" * 70_000
            return json.dumps(obj).encode() + b"\n"
    if kind == 1:
        return b" " * 70_000 + (lines[0] if lines else b"{}\n")
    return b"{\"hash_ids\": [" + b", ".join(str(i).encode() for i in range(15_000)) + b"]}\n"


def mutate(rng: random.Random, data: bytes, max_ops: int = 3) -> tuple[bytes, list[str]]:
    """Apply 1..max_ops mutations; returns the new bytes and what was done."""
    done = []
    for _ in range(rng.randint(1, max_ops)):
        lines = data.splitlines(keepends=True)
        op = rng.choice(["record", "record", "record", "truncate", "bitflip", "delete", "duplicate", "swap",
                         "long_first", "blank_first", "bytes", "crlf", "whole_line", "deep", "empty", "no_newline"])
        if op == "record" and lines:
            i = rng.randrange(len(lines))
            if not lines[i].strip():
                continue
            lines[i], what = _mutate_record(rng, lines[i])
            done.append(f"line {i + 1}: {what}")
        elif op == "truncate" and data:
            cut = rng.randrange(len(data))
            lines = [data[:cut]]
            done.append(f"truncate at byte {cut}")
        elif op == "bitflip" and data:
            b = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
            lines = [bytes(b)]
            done.append("bit flips")
        elif op == "delete" and lines:
            i = rng.randrange(len(lines))
            del lines[i]
            done.append(f"delete line {i + 1}")
        elif op == "duplicate" and lines:
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i] * rng.choice([1, 1, 50]))
            done.append(f"duplicate line {i + 1}")
        elif op == "swap" and len(lines) > 1:
            i, j = rng.sample(range(len(lines)), 2)
            lines[i], lines[j] = lines[j], lines[i]
            done.append(f"swap lines {i + 1},{j + 1}")
        elif op == "long_first":
            lines.insert(0, _long_line(rng, lines))
            done.append("long first line")
        elif op == "blank_first":
            lines.insert(0, rng.choice([b"\n", b"\n\n\n", b"   \n\t\n", b"\r\n"]))
            done.append("blank first lines")
        elif op == "bytes" and lines:
            i = rng.randrange(len(lines))
            junk = rng.choice([b"\x00", b"\xff\xfe", b"\xc3\x28", b"\xef\xbb\xbf", b"\x1f\x8b", b"\x28\xb5\x2f\xfd"])
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + junk + lines[i][pos:]
            done.append(f"line {i + 1}: insert {junk!r}")
        elif op == "crlf":
            lines = [ln.rstrip(b"\n") + b"\r\n" for ln in lines]
            done.append("CRLF")
        elif op == "whole_line" and lines:
            i = rng.randrange(len(lines))
            lines[i] = rng.choice([b"null\n", b"[]\n", b"1\n", b"\"x\"\n", b"{}\n", b"{\n", b"}\n", b"[1, 2\n"])
            done.append(f"line {i + 1} -> {lines[i].strip()!r}")
        elif op == "deep" and lines:
            i = rng.randrange(len(lines))
            depth = rng.choice([100, 5_000, 100_000])
            lines[i] = b'{"hash_ids": ' + b"[" * depth + b"]" * depth + b', "t": 0}\n'
            done.append(f"line {i + 1}: nesting {depth} deep")
        elif op == "empty":
            lines = [] if rng.random() < 0.5 else [b"\n"]
            done.append("empty file")
        elif op == "no_newline" and lines:
            lines[-1] = lines[-1].rstrip(b"\r\n") + rng.choice([b"", b"garbage", b"\x00"])
            done.append("last line without newline")
        data = b"".join(lines)
    return data, done or ["unchanged"]


def compress(rng: random.Random, data: bytes) -> tuple[bytes, str, bool]:
    """Sometimes gzip or zstd the mutant, sometimes damage the compressed bytes; (bytes, note, damaged)."""
    r = rng.random()
    if r < 0.8:
        return data, "", False
    if r < 0.92:
        packed, how = gzip.compress(data, mtime=0), "gzip"
    else:
        try:
            import zstandard
        except ImportError:
            return data, "", False
        packed, how = zstandard.ZstdCompressor(level=3).compress(data), "zstd"
    if rng.random() < 0.5:
        return packed, how, False
    if rng.random() < 0.5:
        cut = rng.randrange(1, len(packed))
        return packed[:cut], f"{how}, truncated at {cut}", True
    b = bytearray(packed)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b), f"{how}, bytes flipped", True


# -- what an accepted file must give -----------------------------------------------------------------------

def _int(v):
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def expected(fmt: str, data: bytes) -> dict:
    """The request count and prompt tokens a replay that accepts ``data`` must report, where they are knowable."""
    if fmt not in LINE_FORMATS | {"native-tokens", "azure"}:
        return {}
    text = data.decode("utf-8", errors="strict") if _utf8(data) else None
    if text is None:
        return {}
    rows = [ln for ln in text.splitlines() if ln.strip()]
    if fmt == "azure":
        body = rows[1:]
        try:
            return {"requests": len(body), "prompt_tokens": sum(int(r.split(",")[1]) for r in body)}
        except (ValueError, IndexError):
            return {"requests": len(body)}
    out = {"requests": len(rows)}
    if fmt == "apilog":
        return out
    total = 0
    for row in rows:
        try:
            obj = json.loads(row)
        except (ValueError, RecursionError):
            return out
        if not isinstance(obj, dict):
            return out
        if fmt == "native-tokens" or (fmt == "native" and "tokens" in obj):
            v = len(obj["tokens"]) if isinstance(obj.get("tokens"), list) else None
        elif fmt == "native":
            v = _int(obj.get("prompt_tokens"))
        else:
            v = _int(obj.get("input_length"))
        if v is None:
            return out
        total += v
    out["prompt_tokens"] = total
    return out


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
