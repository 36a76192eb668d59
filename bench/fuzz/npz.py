"""Kind "npz": compiled traces (``cachesim convert``) damaged at the byte and the member level, then given to every
command that takes a trace."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import checks
import mutate
import numpy as np
import proc

SOURCES = [("mooncake.jsonl", []), ("native_blocks16.jsonl", []), ("native_tokens.jsonl", []), ("qwen.jsonl", []),
           ("native_tokens.jsonl", ["--dense"]), ("mooncake.jsonl", ["--dense"])]


def _replace(name, fn, expect="error"):
    return (name, fn, expect)


def _interior(a, value):
    a = a.copy()
    a[min(1, len(a) - 2) if len(a) > 2 else 0] = value
    return a


# (member, how its array is changed, what a command must do with it)
MEMBER_CHANGES = [
    _replace("t", lambda a: a[:-1]), _replace("t", lambda a: _interior(a, np.nan)),
    _replace("t", lambda a: a[::-1] + 0), _replace("t", lambda a: a - 1e9),
    _replace("t", lambda a: a.astype(np.float32), "either"),
    _replace("t", lambda a: _interior(a, np.inf)),
    _replace("block_offsets", lambda a: _interior(a, 2**62)), _replace("block_offsets", lambda a: _interior(a, -3)),
    _replace("block_offsets", lambda a: a[:-1]), _replace("block_offsets", lambda a: a[::-1] + 0),
    _replace("block_offsets", lambda a: a.astype(np.float64), "either"),
    _replace("block_offsets", lambda a: np.concatenate([a[:-1], [a[-1] + 5]])),
    _replace("tenant", lambda a: _interior(a, -1)), _replace("tenant", lambda a: a + 10),
    _replace("tenant", lambda a: a.astype(np.int64), "either"), _replace("tenant", lambda a: a[:-1]),
    _replace("tenant_names", lambda a: a[:0]),
    _replace("prompt_tokens", lambda a: _interior(a, 0)), _replace("prompt_tokens", lambda a: _interior(a, -5)),
    _replace("prompt_tokens", lambda a: _interior(a, 2**62)), _replace("prompt_tokens", lambda a: a[:-1]),
    _replace("tail_tokens", lambda a: a + 10_000), _replace("tail_tokens", lambda a: a * 0),
    _replace("tail_tokens", lambda a: a[:-1]),
    _replace("header", lambda a: np.array([99, a[1]])), _replace("header", lambda a: np.array([a[0], 0])),
    _replace("header", lambda a: np.array([a[0], -16])), _replace("header", lambda a: np.array([a[0], 2**40])),
    _replace("header", lambda a: a[:1]), _replace("header", lambda a: np.array([3, a[1]])),
    _replace("block_keys", lambda a: a[:-1]), _replace("block_keys", lambda a: a.astype(np.float32)),
    _replace("block_keys", lambda a: np.stack([a, a], axis=1)),
    _replace("block_keys", lambda a: np.array(a[0] if len(a) else 0)),
    _replace("block_source", lambda a: np.array("xyz"), "either"), _replace("block_source", lambda a: np.arange(3)),
    _replace("session", lambda a: a[:-1]), _replace("output_tokens", lambda a: a[:-1]),
    _replace("distinct_keys", lambda a: a[: len(a) // 2]), _replace("distinct_keys", lambda a: a[:0]),
    _replace("*", None),   # a member dropped
]
COMMANDS = ["replay", "mrc", "sweep", "fleet", "interference", "convert"]


def _argv(cmd: str, path: Path, work: Path) -> list[str]:
    return {"replay": ["replay", str(path), "--json", "-"], "mrc": ["mrc", str(path), "--json", "-"],
            "sweep": ["sweep", str(path), "--capacity", "10,100", "--executor", "serial",
                      "-o", str(work / "sweep.json")],
            "fleet": ["fleet", str(path), "--replicas", "2", "--json", "-"],
            "interference": ["interference", str(path), "--json", "-"],
            "convert": ["convert", str(path), str(work / "again.npz")]}[cmd]


def _members(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def _rewrite(members, path: Path) -> None:
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for info, data in members:
            zf.writestr(info.filename, data, compress_type=info.compress_type)


def damage(rng: random.Random, base: Path, out: Path) -> tuple[str, str]:
    """Write a damaged copy of ``base`` to ``out``; (what was done, expectation)."""
    raw = base.read_bytes()
    r = rng.random()
    if r < 0.15:
        cut = rng.randrange(len(raw))
        out.write_bytes(raw[:cut])
        return f"truncated at byte {cut} of {len(raw)}", "either"
    if r < 0.35:
        with zipfile.ZipFile(base) as zf:
            info = rng.choice(zf.infolist())
        b = bytearray(raw)   # flip inside the member's local header + data
        lo = info.header_offset
        hi = min(len(b), lo + 30 + len(info.filename) + len(info.extra) + info.compress_size)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(lo, hi)
            b[i] ^= 1 << rng.randrange(8)
        out.write_bytes(bytes(b))
        return f"bytes flipped in {info.filename}", "either"
    members = _members(base)
    names = [i.filename[:-4] for i, _ in members]
    options = [c for c in MEMBER_CHANGES if c[0] in names or c[0] == "*"]
    name, fn, expect = rng.choice(options)
    if name == "*":
        victim = rng.choice(names)
        _rewrite([(i, d) for i, d in members if i.filename != f"{victim}.npy"], out)
        # without its manifest a file is exactly one written before manifests existed, which still loads
        return f"member {victim} dropped", "either" if victim == "members" else "error"
    new = []
    unchanged = False
    for info, data in members:
        if info.filename == f"{name}.npy":
            array = np.load(io.BytesIO(data), allow_pickle=False)
            changed = fn(array)
            # some changes are no-ops on some bases (tail*0 where every tail is 0, a[:-1] of an empty column):
            # the file is then undamaged and may well be accepted
            unchanged = changed.dtype == array.dtype and changed.shape == array.shape and np.array_equal(
                changed, array)
            buf = io.BytesIO()
            np.save(buf, changed, allow_pickle=False)
            data = buf.getvalue()
        new.append((info, data))
    _rewrite(new, out)
    what = f"member {name} replaced ({MEMBER_CHANGES.index((name, fn, expect))})"
    return (what + ", a no-op on this base", "either") if unchanged else (what, expect)


def _bases(work: Path) -> list[tuple[Path, int]]:
    """Compiled fixtures and their request counts."""
    out = []
    for i, (src, flags) in enumerate(SOURCES):
        path = work / f"base{i}.npz"
        r = proc.cachesim(["convert", str(mutate.DATA / src), str(path), *flags])
        if r.returncode != 0:
            raise RuntimeError(f"cannot build the npz seed from {src}: {r.stderr[-400:]}")
        with zipfile.ZipFile(path) as zf, zf.open("t.npy") as fh:
            out.append((path, len(np.lib.format.read_array(fh))))
    return out


def run(seed: int, budget: int, work: Path, jobs: int) -> list[dict]:
    from concurrent.futures import ThreadPoolExecutor

    work.mkdir(parents=True, exist_ok=True)
    bases = _bases(work)
    rng = random.Random(f"npz:{seed}")
    plan = []
    for i in range(budget):
        base, n = bases[i % len(bases)]
        case_dir = work / f"npz-{i:05d}"
        case_dir.mkdir(exist_ok=True)
        path = case_dir / "trace.npz"
        what, expect = damage(rng, base, path)
        plan += [(i, cmd, path, what, expect, n) for cmd in COMMANDS]

    def one(item):
        i, cmd, path, what, expect, n = item
        r = proc.cachesim(_argv(cmd, path, path.parent), cwd=str(path.parent))
        cls, detail = proc.classify_cli(r)
        if cls == proc.OK:
            problems = []
            if cmd == "replay":
                data = proc.parse_json(r.stdout)
                problems = ["stdout is not JSON"] if data is None else checks.replay_problems(
                    data, requests=n if expect != "error" else None)
            if expect == "error":
                problems.append(f"damaged trace ({what}) accepted")
            if problems:
                cls, detail = proc.INVARIANT, "; ".join(problems)[:400]
        return {"kind": "npz", "case": i, "command": cmd, "argv": ["python", "-m", "cachesim", *r.argv[3:]],
                "input": str(path), "damage": what, "class": cls, "detail": detail, "returncode": r.returncode,
                "seconds": round(r.seconds, 2),
                "stderr_tail": proc.tail(r.stderr)}

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, plan))
