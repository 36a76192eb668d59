"""Record the engine conformance goldens (tests/data/engines/*.json) from the real engines' own cache code.

Runs with the project's Python (it builds the streams with cachesim's generators and sizes the capacities with
cachesim's compile); each engine runs in the engines' venv through drive_vllm.py / drive_sglang.py, so neither
engine is ever a dependency of the project. See README.md for the one command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import streams  # noqa: E402

GOLDENS = HERE.parents[1] / "tests" / "data" / "engines"
ENGINE_PYTHON = os.environ.get("ENGINE_PYTHON", "/work/venv-engines/bin/python")
# capacities as fractions of what the stream would occupy unbounded (its distinct blocks), from tight (most
# requests evict) to all of it, or, when the longest request needs more than the smallest fraction, geometric
# steps from what it needs to all of it; 'none' (nothing evicted) is always added
FRACTIONS = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
ENGINES = {  # golden name -> (driver, its options, block or page size)
    "vllm": ("drive_vllm.py", ["--block-size", "16"], 16),
    "sglang": ("drive_sglang.py", ["--page-size", "1"], 1),
    "sglang-p16": ("drive_sglang.py", ["--page-size", "16"], 16),
}


def distinct_blocks(tokens: np.ndarray, offsets: np.ndarray, block_size: int) -> int:
    from cachesim.requests import TokenRequests
    from cachesim.trace import compile_trace

    trace = compile_trace(TokenRequests.from_arrays(tokens, offsets), block_size)
    return int(len(np.unique(trace.block_keys)))


def capacities(engine: str, tokens: np.ndarray, offsets: np.ndarray) -> list[int]:
    """Capacities in the engine's own units: vLLM num_gpu_blocks, SGLang pool tokens."""
    size = ENGINES[engine][2]
    longest = int(np.diff(offsets).max())
    distinct = distinct_blocks(tokens, offsets, size)
    unit = 1 if engine == "vllm" else size
    # vLLM: the longest request's blocks, the null block, one spare; SGLang: the longest prompt, the extra page
    # SGLang asks for, one spare
    least = -(-longest // size) + 2 if engine == "vllm" else -(-longest // size) * size + 2 * size
    if distinct * unit * FRACTIONS[0] >= least:
        values = [round(distinct * f) * unit for f in FRACTIONS]
    else:   # one request is a large share of the stream (agent contexts): steps from the least to all of it
        top = max(distinct * unit, 2 * least)
        values = [int(least * (top / least) ** (i / (len(FRACTIONS) - 1))) // unit * unit
                  for i in range(len(FRACTIONS))]
        values[0] = least
    values = sorted(set(values))
    while len(values) < 5:                        # a long request next to little sharing: fill in between
        gaps = np.diff(values)
        i = int(np.argmax(gaps))
        values.insert(i + 1, values[i] + int(gaps[i]) // 2)
    return values


def record(engine: str, name: str, recipe: dict, workdir: Path) -> Path:
    tokens, offsets = streams.build(recipe)
    path = workdir / f"{name}.npz"
    if not path.exists():
        np.savez(path, tokens=tokens, offsets=offsets)
    caps = capacities(engine, tokens, offsets)
    driver, options, size = ENGINES[engine]
    flag = "--num-blocks" if engine == "vllm" else "--pool-tokens"
    cmd = [ENGINE_PYTHON, str(HERE / driver), str(path), *options, flag, ",".join(map(str, caps)) + ",none"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout)
    units = ("num_gpu_blocks: KVCacheConfig.num_blocks of 16-token blocks, the null block included"
             if engine == "vllm" else f"max_total_num_tokens: the KV pool in tokens, page_size {size}")
    golden = {
        "engine": result["engine"], "version": result["version"], "stream": name, "recipe": recipe,
        "digest": streams.digest(tokens, offsets), "n_requests": len(offsets) - 1,
        "block_size" if engine == "vllm" else "page_size": size, "capacity_units": units,
        "recorded_with": f"bench/conformance/{driver} {' '.join(options)}",
        "runs": [{"capacity": r.get("num_gpu_blocks", r.get("max_total_num_tokens")),
                  "capacity_used": r.get("num_blocks_used", r.get("pool_tokens_used")),
                  "cached_tokens": r["cached_tokens"]} for r in result["runs"]],
    }
    GOLDENS.mkdir(parents=True, exist_ok=True)
    target = GOLDENS / f"{engine}-{name}.json"
    # one run per line: small diffs when a golden is re-recorded
    head = {k: v for k, v in golden.items() if k != "runs"}
    text = json.dumps(head)[:-1] + ', "runs": [\n' + ",\n".join(json.dumps(r) for r in golden["runs"]) + "\n]}\n"
    target.write_text(text)
    print(f"{target.name}: {len(golden['runs'])} capacities, {result['version']}", file=sys.stderr)
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: " + ", ".join(ENGINES))
    ap.add_argument("--streams", default=",".join(streams.STREAMS), help="comma-separated stream names")
    ap.add_argument("--jobs", type=int, default=2, help="engine processes at once")
    args = ap.parse_args(argv)
    jobs = [(e, s) for s in args.streams.split(",") for e in args.engines.split(",")]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        # streams first (one process builds each .npz), then the engines in parallel
        for s in args.streams.split(","):
            tokens, offsets = streams.build(streams.STREAMS[s])
            np.savez(Path(tmp) / f"{s}.npz", tokens=tokens, offsets=offsets)
        for future in [pool.submit(record, e, s, streams.STREAMS[s], Path(tmp)) for e, s in jobs]:
            future.result()
    return 0


if __name__ == "__main__":
    sys.exit(main())
