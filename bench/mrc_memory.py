"""Peak memory of `cachesim mrc` and `cachesim replay` streaming the same big trace, measured in one run.

    python bench/mrc_memory.py [--blocks 2e8] [--dir /tmp/cachesim-mrc-memory] [--capacity 1M]
                               [--baseline SRC --baseline-blocks 2e7]

Writes a Mooncake-format JSONL with bench/gen_mooncake.py (conversations that grow a few blocks a turn behind a
shared first block; about 10% of the blocks are distinct) cut at exactly --blocks blocks, and its first half,
then runs `mrc` (default grid, the no-TTL and a 5-minute curve) and `replay --capacity` on each in a child
process and reads that child's peak RSS (os.wait4). Issue 16's acceptance: mrc below 2 GB on 2e8 blocks.
With --baseline SRC (the src/ of another checkout, e.g. the commit before mrc streamed) its mrc runs too, on a
--baseline-blocks prefix (an mrc that loads the whole trace needs ~83 B a block: keep it small). Needs about
12 bytes of disk per block in --dir; the 2e8-block run takes 10-20 minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))

from gen_mooncake import generate  # noqa: E402

BYTES_PER_BLOCK = 12   # what gen_mooncake writes per block id at this scale, with room to spare


def cut(source: Path, target: Path, blocks: int) -> int:
    """The first lines of ``source`` holding ``blocks`` blocks (the last line may go past), written to ``target``."""
    total = 0
    with source.open("rb") as src, target.open("wb") as out:
        for line in src:
            if total >= blocks:
                break
            total += line[line.index(b"[", line.index(b'"hash_ids"')):].count(b",") + 1
            out.write(line)
    if total < blocks:
        raise SystemExit(f"{source} holds only {total:,} blocks; delete it and run again")
    return total


def measure(args: list[str], src: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "cachesim", *args], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cachesim {' '.join(args)} failed with exit code {os.waitstatus_to_exitcode(status)}")
    return seconds, usage.ru_maxrss * 1024   # ru_maxrss is in KiB on Linux


def run_mrc(path: Path, out: Path, src: Path) -> dict:
    quiet = ["--no-progress"] if src == SRC else []   # the mrc before streaming had no progress bar
    seconds, rss = measure(["mrc", str(path), "--ttl", "300", *quiet, "--json", str(out)], src)
    data = json.loads(out.read_text())
    return {"command": "mrc", "seconds": seconds, "peak_rss": rss, "requests": data["requests"],
            "blocks": data["curves"][0]["blocks"], "distinct_blocks": data["distinct_blocks"],
            "pass_state_bytes": data.get("pass_state_bytes")}


def run_replay(path: Path, out: Path, capacity: str, src: Path) -> dict:
    seconds, rss = measure(["replay", str(path), "--capacity", capacity, "--no-progress", "--json", str(out)], src)
    summary = json.loads(out.read_text())["summary"]
    return {"command": f"replay --capacity {capacity}", "seconds": seconds, "peak_rss": rss,
            "requests": summary["requests_seen"], "blocks": summary["blocks"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blocks", type=float, default=2e8)
    p.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "cachesim-mrc-memory")
    p.add_argument("--capacity", default="1M", help="the replay's capacity in blocks")
    p.add_argument("--baseline", type=Path, help="src/ of another checkout whose mrc to measure beside this one")
    p.add_argument("--baseline-blocks", type=float, default=2e7)
    args = p.parse_args()
    blocks = int(args.blocks)
    args.dir.mkdir(parents=True, exist_ok=True)
    big = args.dir / "generated.jsonl"
    if not big.exists() or big.stat().st_size < blocks * BYTES_PER_BLOCK:
        print(f"writing {big} ({blocks * BYTES_PER_BLOCK / 1e9:.1f} GB) ...", flush=True)
        generate(str(big), blocks * BYTES_PER_BLOCK)
    files = {n: args.dir / f"blocks-{n:.0e}.jsonl".replace("+", "") for n in (blocks // 2, blocks)}
    if args.baseline:
        files[int(args.baseline_blocks)] = args.dir / f"blocks-{args.baseline_blocks:.0e}.jsonl".replace("+", "")
    for n, path in sorted(files.items()):
        if not path.exists():
            cut(big, path, n)
    rows = []
    out = args.dir / "out.json"

    def show(row: dict, path: Path, tree: str) -> None:
        row.update(trace=path.name, bytes=path.stat().st_size, tree=tree)
        rows.append(row)
        distinct = f", {row['distinct_blocks']:,.0f} distinct" if "distinct_blocks" in row else ""
        state = f", pass state {row['pass_state_bytes'] / 1e6:,.0f} MB" if row.get("pass_state_bytes") else ""
        print(f"{tree:>8} {row['command']:<22} {path.name}: {row['blocks']:,} blocks{distinct}: "
              f"{row['seconds']:,.1f} s, peak RSS {row['peak_rss'] / 1e6:,.0f} MB{state}", flush=True)

    if args.baseline:
        path = files[int(args.baseline_blocks)]
        show(run_mrc(path, out, args.baseline), path, "baseline")
        show(run_mrc(path, out, SRC), path, "this")
    for n in (blocks // 2, blocks):
        show(run_mrc(files[n], out, SRC), files[n], "this")
        show(run_replay(files[n], out, args.capacity, SRC), files[n], "this")
    (args.dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
