"""Kind "readers": mutated trace files of every format through the CLI (replay, and convert/mrc/cost on a sample)."""

from __future__ import annotations

import random
from pathlib import Path

import checks
import mutate
import proc


def _commands(rng: random.Random, seed: mutate.Seed, path: Path, work: Path) -> list[tuple[str, list[str]]]:
    cmds = [("replay", ["replay", str(path), *seed.args, "--json", "-"])]
    if rng.random() < 0.15:   # the other readers of a file, on a sample (each run costs a process start)
        extra = rng.choice(["convert", "mrc", "cost"])
        if extra == "convert":
            cmds.append(("convert", ["convert", str(path), str(work / "out.npz"),
                                  *[a for a in seed.args if a != "--synthesize"]]))  # convert cannot synthesize
        elif extra == "mrc":
            cmds.append(("mrc", ["mrc", str(path), *seed.args, "--json", "-"]))
        elif seed.fmt in mutate.TOKEN_FORMATS:
            cmds.append(("cost", ["cost", str(path), "--provider", rng.choice(["anthropic", "openai"]),
                                  "--json", "-"]))
    if rng.random() < 0.05:   # a bounded cache and tenants: eviction and attribution paths
        cmds.append(("replay", ["replay", str(path), *seed.args, "--capacity", "3", "--interference",
                                "--policy", rng.choice(["lru", "s3fifo", "sieve", "lfu"]), "--json", "-"]))
    return cmds


def cases(seed: int, budget: int, work: Path):
    """Yield (case id, seed, mutant path, description, expected counts); deterministic for ``seed``."""
    rng = random.Random(f"readers:{seed}")
    pool = mutate.seeds(rng)
    for i in range(budget):
        s = pool[i % len(pool)] if i < len(pool) else rng.choice(pool)
        data, ops = mutate.mutate(rng, s.data)
        packed, how, damaged = mutate.compress(rng, data)
        if how:
            ops.append(how)
        case_dir = work / f"readers-{i:05d}"
        case_dir.mkdir(parents=True, exist_ok=True)
        path = case_dir / f"{s.name}{s.suffix}{'.gz' if how.startswith('gzip') else '.zst' if how else ''}"
        path.write_bytes(packed)
        want = {} if damaged else mutate.expected(s.fmt, data)
        yield i, s, path, ops, want, _commands(rng, s, path, case_dir)


def run_case(i, s, path, ops, want, cmds) -> list[dict]:
    out = []
    for name, args in cmds:
        r = proc.cachesim(args, cwd=str(path.parent))
        cls, detail = proc.classify_cli(r)
        if cls == proc.OK and name == "replay":
            data = proc.parse_json(r.stdout)
            problems = ["stdout is not JSON"] if data is None else checks.replay_problems(
                data, requests=want.get("requests"),
                prompt_tokens=want.get("prompt_tokens") if "--capacity" not in args else None)
            if problems:
                cls, detail = proc.INVARIANT, "; ".join(problems[:4])
        out.append({"kind": "readers", "case": i, "seed_file": s.name, "format": s.fmt, "command": name,
                    "argv": ["python", "-m", "cachesim", *args], "input": str(path), "mutations": ops,
                    "class": cls, "detail": detail, "returncode": r.returncode, "seconds": round(r.seconds, 2),
                    "stderr_tail": proc.tail(r.stderr)})
    return out
