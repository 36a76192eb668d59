"""Replay the engine goldens through cachesim's presets and measure agreement, request by request.

``agreement(golden, offset)`` is what tests/test_engine_conformance.py checks; run as a script it prints the
agreement of every golden under each capacity mapping (a Markdown table for docs/engines.md) and the pinned
numbers the test asserts where cachesim does not agree exactly:

    PYTHONPATH=src python bench/conformance/compare.py [--offsets 0,1,2] [--pins]

Each cell is "requests agreeing · cachesim hit tokens / engine hit tokens".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import streams  # noqa: E402

GOLDENS = HERE.parents[1] / "tests" / "data" / "engines"
# how many blocks the vllm preset is given below vLLM's num_gpu_blocks: the null block (block 0 of the pool,
# never cached) and the running request's partial last block, which takes a slot at admission; it agrees best of
# 0..3 (docs/engines.md, "Which capacity mapping")
VLLM_OFFSET = 2   # = the vllm preset's reserved_blocks (tests/test_engine_conformance.py checks they agree)


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def recorded_runs(prefix: str, streams: str | None = None):
    """``(name, tokens, offsets, golden, run)`` for every run of the goldens whose file name starts with ``prefix``
    (only the comma-separated ``streams``, if given): what the engine models replay and compare."""
    for path in goldens():
        if not path.stem.startswith(prefix):
            continue
        golden = load(path)
        if streams and golden["stream"] not in streams.split(","):
            continue
        tokens, offsets = build(golden)
        for run in golden["runs"]:
            yield path.stem, tokens, offsets, golden, run


def report_run(name: str, run: dict, ours) -> None:
    """One line: how many requests a model's cached tokens agree on with the engine's, and both hit totals."""
    engine = np.asarray(run["cached_tokens"])
    ours = np.asarray(ours)
    print(f"{name} {run['capacity']}: {(ours == engine).mean():.2%} agree, "
          f"hits {int(ours.sum()):,} vs {int(engine.sum()):,}")


def goldens() -> list[Path]:
    return sorted(GOLDENS.glob("*.json"))


def build(golden: dict, cache: dict | None = None):
    """The golden's token stream, rebuilt from its recipe (and checked against its digest)."""
    key = json.dumps(golden["recipe"], sort_keys=True)
    if cache is not None and key in cache:
        return cache[key]
    tokens, offsets = streams.build(golden["recipe"])
    digest = streams.digest(tokens, offsets)
    if digest != golden["digest"]:
        raise AssertionError(f"stream {golden['stream']} rebuilt with digest {digest}, the golden has "
                             f"{golden['digest']}: its generator changed; re-record (bench/conformance/README.md)")
    if cache is not None:
        cache[key] = (tokens, offsets)
    return tokens, offsets


def cachesim_capacity(golden: dict, run: dict, offset: int = VLLM_OFFSET) -> int | None:
    """The capacity in cachesim blocks for an engine's own capacity, as the preset maps it
    (EnginePreset.capacity_blocks: vLLM num_gpu_blocks minus its reserved blocks, SGLang pool tokens / page
    size), or vLLM's minus another ``offset`` to compare mappings. None (unbounded) for the runs recorded with
    'none'."""
    from cachesim.presets import get_preset

    if run["capacity"] is None:
        return None
    if golden["engine"] == "vllm" and offset != VLLM_OFFSET:
        return run["capacity"] - offset
    return get_preset(golden["engine"]).capacity_blocks(run["capacity"], golden.get("page_size"))


def cachesim_hits(golden: dict, tokens, offsets, capacity: int | None, trace_cache: dict | None = None):
    import cachesim
    from cachesim.requests import TokenRequests
    from cachesim.trace import compile_trace

    size = golden["block_size"] if golden["engine"] == "vllm" else golden["page_size"]
    key = (golden["digest"], size)
    trace = trace_cache.get(key) if trace_cache is not None else None
    if trace is None:
        # numbered once (Trace.dense: identical results, replays 2x as fast), as each trace replays 5-7 times
        trace = compile_trace(TokenRequests.from_arrays(tokens, offsets), size).dense()
        if trace_cache is not None:
            trace_cache[key] = trace
    result = cachesim.replay(trace, preset=golden["engine"], capacity_blocks=capacity, block_size=size)
    return np.asarray(result.per_request["hit_tokens"], dtype=np.int64)


def agreement(golden: dict, offset: int = VLLM_OFFSET, stream_cache=None, trace_cache=None) -> list[dict]:
    """Per run: capacity, requests agreeing, cachesim's and the engine's total hit tokens."""
    tokens, offsets = build(golden, stream_cache)
    out = []
    for run in golden["runs"]:
        engine = np.asarray(run["cached_tokens"], dtype=np.int64)
        ours = cachesim_hits(golden, tokens, offsets, cachesim_capacity(golden, run, offset), trace_cache)
        out.append({"capacity": run["capacity"], "agree": int((ours == engine).sum()), "n": len(engine),
                    "cachesim_hits": int(ours.sum()), "engine_hits": int(engine.sum()),
                    "prompt_tokens": int(np.diff(offsets).sum()),
                    "diff_blocks": sorted(set(((ours - engine) // (golden.get("block_size") or 1)).tolist()))})
    return out


def _cell(r: dict) -> str:
    ratio = r["cachesim_hits"] / r["engine_hits"] if r["engine_hits"] else 1.0
    return f"{100 * r['agree'] / r['n']:.1f}% · {ratio:.4f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--offsets", default="0,1,2", help="vLLM mappings to tabulate: num_gpu_blocks - k")
    ap.add_argument("--pins", action="store_true", help="also print the PINNED dict of the test (at VLLM_OFFSET)")
    args = ap.parse_args(argv)
    stream_cache, trace_cache = {}, {}
    pins = {}
    offsets = [int(k) for k in args.offsets.split(",")]
    tables: dict[str, list[str]] = {}
    for path in goldens():
        golden = load(path)
        kind = path.stem.rsplit("-", 1)[0] if golden["engine"] == "sglang" else "vllm"
        kind = "sglang-p16" if path.stem.startswith("sglang-p16") else kind
        ks = offsets if golden["engine"] == "vllm" else [0]
        per_k = {k: agreement(golden, k, stream_cache, trace_cache) for k in set(ks) | {VLLM_OFFSET}}
        for i, run in enumerate(golden["runs"]):
            cap = "unbounded" if run["capacity"] is None else f"{run['capacity']:,}"
            cells = " | ".join(_cell(per_k[k][i]) for k in ks)
            tables.setdefault(kind, []).append(f"| {golden['stream']} | {cap} | {cells} |")
            r = per_k[VLLM_OFFSET if golden["engine"] == "vllm" else 0][i]
            if r["agree"] != r["n"]:
                pins[(path.stem, r["capacity"])] = (r["agree"], r["cachesim_hits"], r["engine_hits"])
    for kind, rows in tables.items():
        if kind == "vllm":
            head = " | ".join(f"num_gpu_blocks − {k}" for k in offsets)
            print(f"\n| stream | num_gpu_blocks | {head} |\n|---|---:|" + "---:|" * len(offsets))
        else:
            print(f"\n{kind}\n\n| stream | pool tokens | agree · hit ratio |\n|---|---:|---:|")
        print("\n".join(rows))
    if args.pins:
        print("\nPINNED = {")
        for key, value in pins.items():
            print(f"    {key!r}: {value!r},")
        print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
