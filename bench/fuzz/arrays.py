"""Kind "arrays": valid small Traces broken with dataclasses.replace, replayed by the core and the reference model.

The parent never imports cachesim: each case is rebuilt from (seed, index) inside a worker process
(``arrays.py --worker SEED I,J,...``), so a segfault in the core costs one case, not the run.
``python bench/fuzz/arrays.py --repro SEED I`` replays one case in the foreground.
"""

from __future__ import annotations

import json
import pickle
import random
import sys
import traceback
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checks  # noqa: E402
import chunks  # noqa: E402
import proc  # noqa: E402

# expect: "error" = must be refused by both; "valid" = must give the unbroken trace's result (or be refused by
# both); "either" = anything both engines agree on
MUTATIONS = {
    "offsets_interior_huge": "error", "offsets_interior_past_end": "error", "offsets_nonmonotone": "error",
    "offsets_negative": "error", "offsets_first_nonzero": "error", "offsets_last_short": "error",
    "tenant_minus_one": "error", "tenant_too_big": "error", "tenant_int32_max": "error",
    "tenant_names_empty": "error", "t_nan": "error", "t_inf": "error", "t_neg_inf": "error", "t_negative": "error",
    "t_decreasing": "error", "prompt_zero": "error", "prompt_negative": "error", "prompt_huge": "error",
    "prompt_below_blocks": "error", "block_tokens_zero": "error", "block_tokens_over_block_size": "error",
    "block_tokens_u32_max": "error", "block_size_zero": "error", "block_size_negative": "error",
    "repeated_key": "either", "all_keys_equal": "either",
    "offsets_float": "valid", "tenant_int64": "valid", "tenant_float": "valid", "keys_int64": "valid",
    "t_int": "valid", "prompt_int32": "valid", "non_contiguous": "valid", "fortran_2d_slice": "valid",
    "t_short": "error", "tenant_short": "error", "prompt_short": "error", "block_tokens_short": "error",
    "block_keys_short": "error", "offsets_long": "error", "session_short": "either",
    "distinct_keys_short": "error", "distinct_keys_empty": "error", "empty_trace": "valid_empty",
    "keys_max_u64": "either",
}
NAMES = sorted(MUTATIONS)
CONFIGS = [dict(), dict(capacity_blocks=3), dict(capacity_blocks=5, policy="POLICY"),
           dict(capacity_blocks=4, isolation="tenant"), dict(capacity_blocks=4, interference=True),
           dict(capacity_blocks=6, ttl_s=1.0, policy="POLICY"), dict(capacity_blocks=2, hit_cap="prompt-1")]


def base_trace(rng: random.Random):
    import cachesim

    n = rng.randint(3, 14)
    shared = [list(range(rng.randint(1, 30))) for _ in range(3)]
    tenants = [rng.randrange(3) for _ in range(n)]
    times = sorted(round(rng.uniform(0, 5), 2) for _ in range(n))
    if rng.random() < 0.5:
        prompts = [rng.choice(shared) + [rng.randint(100, 130) for _ in range(rng.randint(0, 20))] for _ in range(n)]
        prompts = [p or [1] for p in prompts]
        raw = cachesim.TokenRequests.from_lists(prompts, t=times, tenant=tenants, tenant_names=["a", "b", "c"])
        trace = cachesim.compile_trace(raw, rng.choice([1, 4, 16]))
    else:
        bs = rng.choice([4, 16])
        ids = [rng.choice(shared)[: rng.randint(1, 6)] + [rng.randint(50, 60)] for _ in range(n)]
        prompt = [(len(b) - 1) * bs + rng.randint(1, bs) for b in ids]
        raw = cachesim.BlockRequests.from_lists(ids, prompt, bs, t=times, tenant=tenants, tenant_names=["a", "b", "c"])
        trace = cachesim.compile_trace(raw)
    if rng.random() < 0.25:
        trace = trace.dense()
    return trace


def break_trace(trace, name: str, rng: random.Random):
    import numpy as np

    n, m = trace.n_requests, trace.n_blocks
    off = trace.block_offsets.copy()
    k = rng.randint(1, max(n - 1, 1))  # an interior offset
    r = rng.randrange(n)
    b = rng.randrange(m) if m else 0
    R = replace
    if name == "offsets_interior_huge":
        off[k] = 2**62
        return R(trace, block_offsets=off)
    if name == "offsets_interior_past_end":
        off[k] = m + rng.randint(1, 1000)
        return R(trace, block_offsets=off)
    if name == "offsets_nonmonotone":
        off[k] = off[k + 1] + 1 if off[k + 1] < m else off[k - 1] - 1
        return R(trace, block_offsets=off)
    if name == "offsets_negative":
        off[k] = -rng.choice([1, 5, 2**40])
        return R(trace, block_offsets=off)
    if name == "offsets_first_nonzero":
        off[0] = 1
        return R(trace, block_offsets=off)
    if name == "offsets_last_short":
        off[-1] = max(off[-2], m - 1)
        return R(trace, block_offsets=off) if off[-1] != m else R(trace, block_keys=trace.block_keys[:-1],
                                                                  block_tokens=trace.block_tokens[:-1])
    ten = trace.tenant.copy()
    if name in ("tenant_minus_one", "tenant_too_big", "tenant_int32_max"):
        ten[r] = {"tenant_minus_one": -1, "tenant_too_big": len(trace.tenant_names),
                  "tenant_int32_max": 2**31 - 1}[name]
        return R(trace, tenant=ten)
    if name == "tenant_names_empty":
        return R(trace, tenant_names=[])
    t = trace.t.copy()
    if name in ("t_nan", "t_inf", "t_neg_inf", "t_negative"):
        t[r] = {"t_nan": np.nan, "t_inf": np.inf, "t_neg_inf": -np.inf, "t_negative": -1.0}[name]
        if name == "t_negative":
            t[: r + 1] = -1.0 - np.arange(r + 1)[::-1] * 0   # non-decreasing, negative
        return R(trace, t=t)
    if name == "t_decreasing":
        t[k] = t[k - 1] - 0.5
        return R(trace, t=t)
    p = trace.prompt_tokens.copy()
    if name in ("prompt_zero", "prompt_negative", "prompt_huge"):
        p[r] = {"prompt_zero": 0, "prompt_negative": -7, "prompt_huge": 2**62}[name]
        return R(trace, prompt_tokens=p)
    if name == "prompt_below_blocks":   # fewer prompt tokens than its blocks hold
        p[:] = 1
        return R(trace, prompt_tokens=p)
    bt = trace.block_tokens.copy()
    if name in ("block_tokens_zero", "block_tokens_over_block_size", "block_tokens_u32_max"):
        bt[b] = {"block_tokens_zero": 0, "block_tokens_over_block_size": trace.block_size + 1,
                 "block_tokens_u32_max": 2**32 - 1}[name]
        return R(trace, block_tokens=bt)
    if name in ("block_size_zero", "block_size_negative"):
        return R(trace, block_size=0 if name == "block_size_zero" else -16)
    keys = trace.block_keys.copy()
    if name == "repeated_key":
        s, e = int(off[r]), int(off[r + 1])
        if e - s >= 2:
            keys[s + 1] = keys[s]
        else:
            keys[b] = keys[0]
        return R(trace, block_keys=keys)
    if name == "all_keys_equal":
        keys[:] = keys[0] if m else 0
        return R(trace, block_keys=keys)
    if name == "keys_max_u64":
        if trace.distinct_keys is not None:
            return trace
        keys[b] = np.uint64(2**64 - 1)
        return R(trace, block_keys=keys)
    if name == "offsets_float":
        return R(trace, block_offsets=off.astype(np.float64))
    if name == "tenant_int64":
        return R(trace, tenant=ten.astype(np.int64))
    if name == "tenant_float":
        return R(trace, tenant=ten.astype(np.float64))
    if name == "keys_int64":
        return R(trace, block_keys=keys.view(np.int64))
    if name == "t_int":
        return R(trace, t=t.astype(np.int64))  # build_case made the base's times integral, so nothing changes
    if name == "prompt_int32":
        return R(trace, prompt_tokens=p.astype(np.int32))
    if name == "non_contiguous":
        def strided(a):
            big = np.repeat(a, 2)
            return big[::2]
        return R(trace, t=strided(t), tenant=strided(ten), prompt_tokens=strided(p), block_offsets=strided(off),
                 block_keys=strided(keys), block_tokens=strided(bt))
    if name == "fortran_2d_slice":
        return R(trace, block_keys=np.asfortranarray(np.stack([keys, keys], axis=1))[:, 0])
    shorten = {"t_short": "t", "tenant_short": "tenant", "prompt_short": "prompt_tokens",
               "block_tokens_short": "block_tokens", "block_keys_short": "block_keys", "session_short": "session"}
    if name in shorten:
        col = shorten[name]
        return R(trace, **{col: getattr(trace, col)[:-1]})
    if name == "offsets_long":
        return R(trace, block_offsets=np.append(off, m))
    if name in ("distinct_keys_short", "distinct_keys_empty"):
        dense = trace.dense()
        d = dense.distinct_keys
        return R(dense, distinct_keys=d[: len(d) // 2] if name == "distinct_keys_short" else d[:0])
    if name == "empty_trace":
        return trace.slice(0, 0)
    raise KeyError(name)


def mutation_name(seed: int, index: int, rng: random.Random | None = None) -> str:
    """Every mutation twice first, then at random (the parent calls this too, for cases whose child died)."""
    rng = rng or random.Random(f"arrays:{seed}:{index}")
    return NAMES[index % len(NAMES)] if index < 2 * len(NAMES) else rng.choice(NAMES)


def build_case(seed: int, index: int):
    """(mutation name, config, base trace, broken trace): a pure function of (seed, index)."""
    import cachesim

    rng = random.Random(f"arrays:{seed}:{index}")
    name = mutation_name(seed, index, rng)
    config = dict(rng.choice(CONFIGS))
    if config.get("policy") == "POLICY":
        config["policy"] = rng.choice(cachesim.POLICIES)
    base = base_trace(rng)
    if name == "t_int":   # integral times first, so that their int64 copy is the same trace, not a coarser one
        import numpy as np

        base = replace(base, t=np.floor(base.t))
    return name, config, base, break_trace(base, name, rng)


def _outcome(fn):
    try:
        return {"ok": fn()}
    except Exception as exc:  # noqa: BLE001 - every exception is an outcome to classify
        return {"error": type(exc).__name__, "value_error": isinstance(exc, ValueError), "message": str(exc)[:300],
                "where": traceback.extract_tb(exc.__traceback__)[-1].filename.split("/src/")[-1] + ":" +
                         str(traceback.extract_tb(exc.__traceback__)[-1].lineno)}


def _result_dict(result):
    d = result.to_dict()
    d.pop("impl", None)
    return json.loads(json.dumps(d, default=str))


def _curve(trace, capacities):
    import cachesim

    curve = cachesim.hit_ratio_curve(trace, capacities)
    profile = cachesim.stack_profile(trace)
    return {"hit_tokens": [int(x) for x in curve.hit_tokens], "hit_blocks": [int(x) for x in curve.hit_blocks],
            "prompt_tokens": int(curve.prompt_tokens), "blocks": int(curve.blocks),
            "profile_blocks": int(profile.blocks)}


def _lru_as_curve(trace, capacities, impl):
    import cachesim

    out = {"hit_tokens": [], "hit_blocks": []}
    for c in capacities:
        s = cachesim.replay(trace, capacity_blocks=c, impl=impl, keep_per_request=False).summary()
        out["hit_tokens"].append(s["hit_tokens"])
        out["hit_blocks"].append(s["hit_blocks"])
        out["prompt_tokens"], out["blocks"] = s["prompt_tokens"], s["blocks"]
    out["profile_blocks"] = out["blocks"]
    return out


def worker_case(seed: int, index: int) -> dict:
    import cachesim

    name, config, base, trace = build_case(seed, index)
    rec = {"case": index, "mutation": name, "expect": MUTATIONS[name], "config": config,
           "n_requests": int(base.n_requests)}
    for impl in ("core", "reference"):
        rec[impl] = _outcome(lambda impl=impl: _result_dict(cachesim.replay(trace, impl=impl, **config)))
    rec["baseline"] = _outcome(lambda: _result_dict(cachesim.replay(base, impl="reference", **config)))
    caps = [2, 4, None]
    rec["mrc"] = _outcome(lambda: _curve(trace, caps))          # the compiled stack pass ...
    rec["mrc_lru"] = _outcome(lambda: _lru_as_curve(trace, caps, "reference"))  # ... against LRU replays
    return rec


def _agree(a: dict, b: dict) -> bool:
    if "ok" in a and "ok" in b:
        return a["ok"] == b["ok"]
    return "error" in a and "error" in b


def classify(rec: dict) -> tuple[str, str]:
    core, ref, base = rec["core"], rec["reference"], rec["baseline"]
    for side in (core, ref, rec["mrc"], rec["mrc_lru"]):
        if side.get("error") == "MemoryError":
            return proc.MEMORY, f"MemoryError at {side['where']}: {side['message']}"
        if "error" in side and not side["value_error"]:
            return proc.OTHER_EXCEPTION, f"{side['error']} at {side['where']}: {side['message']}"
    if not _agree(core, ref):
        what = {k: (v.get("error", "ok") + (": " + v["message"][:120] if "message" in v else ""))
                for k, v in (("core", core), ("reference", ref))}
        if "ok" in core and "ok" in ref:
            what = {"differs": _diff(core["ok"], ref["ok"])}
        return proc.DISAGREEMENT, json.dumps(what)[:400]
    if not _agree(rec["mrc"], rec["mrc_lru"]):
        a, b = rec["mrc"], rec["mrc_lru"]
        return proc.DISAGREEMENT, ("stack pass vs LRU replay: " +
                                   json.dumps({"stack_profile": a.get("ok", a.get("error")),
                                               "lru replay": b.get("ok", b.get("error"))}))[:400]
    if "ok" in core:
        problems = checks.replay_problems(core["ok"])
        expect = rec["expect"]
        if expect == "error":
            problems.append(f"invalid input ({rec['mutation']}) accepted by both engines")
        elif expect == "valid" and "ok" in base and _strip(core["ok"]) != _strip(base["ok"]):
            problems.append(f"equivalent input ({rec['mutation']}) changed the result: {_diff(core['ok'], base['ok'])}")
        elif expect == "valid_empty" and core["ok"]["summary"]["requests_seen"] != 0:
            problems.append("an empty trace counted requests")
        if problems:
            return proc.INVARIANT, "; ".join(problems)[:400]
        return proc.OK, ""
    return proc.CLEAN_ERROR, core["message"][:200]


def _strip(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "config"}


def _diff(a, b, path="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return _diff(a.get(k), b.get(k), f"{path}.{k}")
        return ""
    return f"{path}: {json.dumps(a)[:80]} vs {json.dumps(b)[:80]}"


def run(seed: int, budget: int, work: Path, jobs: int) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for rec, dead, i in chunks.run_all(Path(__file__), seed, list(range(budget)), chunk=25, jobs=jobs):
        if rec is None:
            cls, detail = chunks.dead_class(dead)
            mutation, stderr = mutation_name(seed, i), dead.stderr
        else:
            cls, detail = classify(rec)
            mutation, stderr = rec["mutation"], ""
        row = {"kind": "arrays", "case": i, "mutation": mutation, "class": cls, "detail": detail,
               "command": f"python bench/fuzz/arrays.py --repro {seed} {i}"}
        if rec is not None:
            row["config"] = rec["config"]
        if cls not in proc.CLEAN:
            row["input"] = str(_save(seed, i, work))
            row["stderr_tail"] = proc.tail(stderr)
        rows.append(row)
    return rows


def _save(seed: int, index: int, work: Path) -> Path:
    """A pickle of the broken trace and its config, written by a child (the parent does not import cachesim)."""
    path = work / f"arrays-{index:05d}.pkl"
    proc.run([sys.executable, __file__, "--save", str(seed), str(index), str(path)])
    return path


def _main(argv: list[str]) -> None:
    if argv[0] == "--worker":
        seed = int(argv[1])
        for i in (int(x) for x in argv[2].split(",")):
            print(json.dumps(worker_case(seed, i), default=str), flush=True)   # flushed: a crash keeps the rest
    elif argv[0] == "--save":
        name, config, _, trace = build_case(int(argv[1]), int(argv[2]))
        Path(argv[3]).write_bytes(pickle.dumps({"mutation": name, "config": config, "trace": trace}))
    elif argv[0] == "--repro":
        rec = worker_case(int(argv[1]), int(argv[2]))
        print(json.dumps(rec, indent=1, default=str)[:4000])
        print(classify(rec))


if __name__ == "__main__":
    _main(sys.argv[1:])
