"""Write a synthetic Mooncake-format JSONL of a given size, for streaming and throughput measurements.

    python bench/gen_mooncake.py /tmp/big.jsonl 1.1G

Conversations grow turn by turn: each request re-sends its conversation's blocks and adds a few new ones,
behind one shared system block, so a cache finds real prefix hits. Deterministic for a given seed.
"""

from __future__ import annotations

import sys

import numpy as np

BLOCK = 512


def generate(path: str, target_bytes: int, seed: int = 0, conversations: int = 20_000) -> int:
    rng = np.random.default_rng(seed)
    next_id = 1
    history: dict[int, list[int]] = {}
    written = lines = 0
    t_ms = 0
    with open(path, "w") as out:
        while written < target_bytes:
            buf = []
            for conv in rng.integers(0, conversations, size=10_000).tolist():
                ids = history.get(conv)
                if ids is None or len(ids) > 60:
                    ids = [0]
                grow = int(rng.integers(1, 6))
                ids = ids + list(range(next_id, next_id + grow))
                next_id += grow
                history[conv] = ids
                tokens = (len(ids) - 1) * BLOCK + int(rng.integers(1, BLOCK + 1))
                t_ms += int(rng.integers(0, 40))
                output = int(rng.integers(1, 800))
                buf.append(f'{{"timestamp": {t_ms}, "input_length": {tokens}, "output_length": {output}, '
                           f'"hash_ids": [{", ".join(map(str, ids))}]}}\n')
            text = "".join(buf)
            out.write(text)
            written += len(text)
            lines += len(buf)
    return lines


if __name__ == "__main__":
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}
    size = sys.argv[2].lower()
    n = float(size[:-1]) * scale[size[-1]] if size[-1] in scale else float(size)
    print(generate(sys.argv[1], int(n)), "lines")
