"""A small model of a node-compressed radix-tree prefix cache with SGLang's bookkeeping, written from its
documented behaviour (ENGINES.md §2, not from its code), to test whether whole-leaf eviction explains the sglang
preset's gaps.

A node holds a run of tokens (page-aligned). A request matches its prompt cut to len - 1 (stamping the path, and
splitting the node where the match ends inside it), locks the path, takes slots for the rest of its prompt from a
pool of ``pool_tokens`` (page size > 1: one page more is asked for), evicting when the pool is short: leaves
unlocked, least recently stamped first, each freed *whole*, a parent that becomes a leaf joining the candidates,
until at least the shortfall is freed. On finish the page-aligned prompt is inserted (what was already there is
freed as duplicate slots, the unaligned tail too) and the path unlocked. ``whole_leaves=False`` frees only as many
tokens of a leaf (from its end) as still needed, which is the token-by-token eviction of the sglang preset.

    PYTHONPATH=src python bench/conformance/radix_model.py [--partial-leaves] [--no-extra-page] [--streams a,b]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import compare  # noqa: E402


class Node:
    __slots__ = ("key", "children", "parent", "lock", "stamp")

    def __init__(self, key, parent, stamp):
        self.key, self.parent, self.stamp = key, parent, stamp
        self.children: dict = {}
        self.lock = 0


def _common(a: np.ndarray, b: np.ndarray, page: int) -> int:
    m = min(len(a), len(b))
    diff = np.flatnonzero(a[:m] != b[:m])
    n = int(diff[0]) if len(diff) else m
    return n // page * page


class RadixModel:
    def __init__(self, pool_tokens: int, page: int = 1, whole_leaves: bool = True, extra_page: bool = True):
        self.clock = itertools.count()
        self.root = Node(np.zeros(0, np.int64), None, next(self.clock))
        self.root.lock = 1
        self.page, self.whole, self.extra_page = page, whole_leaves, extra_page
        self.capacity = pool_tokens // page * page
        self.tree_tokens = 0

    def _child_key(self, key):
        return tuple(key[:self.page].tolist())

    def _split(self, node: Node, at: int) -> Node:
        upper = Node(node.key[:at], node.parent, next(self.clock))
        upper.lock = node.lock
        node.parent.children[self._child_key(node.key)] = upper
        node.key = node.key[at:]
        node.parent = upper
        upper.children[self._child_key(node.key)] = node
        return upper

    def _walk(self, key: np.ndarray, insert: bool):
        stamp = next(self.clock)
        node, matched = self.root, 0
        while len(key) and self._child_key(key) in node.children:
            child = node.children[self._child_key(key)]
            child.stamp = stamp
            n = _common(child.key, key, self.page)
            if n < len(child.key):
                node = self._split(child, n)
                matched += n
                key = key[n:]
                if not insert:
                    return node, matched
                break
            node, matched, key = child, matched + n, key[n:]
        if insert and len(key):
            leaf = Node(key.copy(), node, next(self.clock))
            node.children[self._child_key(key)] = leaf
            self.tree_tokens += len(key)
            node = leaf
        return node, matched

    def _lock(self, node: Node, delta: int):
        while node is not self.root:
            node.lock += delta
            node = node.parent

    def _evict(self, num_tokens: int):
        heap = []
        stack = [self.root]
        while stack:
            n = stack.pop()
            stack.extend(n.children.values())
            if n is not self.root and not n.children and n.lock == 0:
                heap.append((n.stamp, id(n), n))
        heapq.heapify(heap)
        freed = 0
        while freed < num_tokens and heap:
            _, _, x = heapq.heappop(heap)
            cut = -(-(num_tokens - freed) // self.page) * self.page
            if not self.whole and cut < len(x.key):
                x.key = x.key[:len(x.key) - cut]
                freed += cut
                self.tree_tokens -= cut
                break
            freed += len(x.key)
            self.tree_tokens -= len(x.key)
            del x.parent.children[self._child_key(x.key)]
            p = x.parent
            if p is not self.root and not p.children and p.lock == 0:
                heapq.heappush(heap, (p.stamp, id(p), p))

    def serve(self, prompt: np.ndarray) -> int:
        n, page = len(prompt), self.page
        cut = (n - 1) // page * page
        node, cached = self._walk(prompt[:cut], insert=False) if cut else (self.root, 0)
        self._lock(node, +1)
        need = -(-n // page) * page - cached
        demand = (n - cached) + (page if page > 1 and self.extra_page else 0)
        available = self.capacity - self.tree_tokens
        if available < demand:
            self._evict(demand - available)
        if self.capacity - self.tree_tokens < need:
            raise RuntimeError("out of memory")
        self._walk(prompt[:n // page * page], insert=True)
        self._lock(node, -1)
        return cached


def replay(tokens, offsets, pool_tokens: int, page: int = 1, whole_leaves: bool = True,
           extra_page: bool = True) -> list[int]:
    model = RadixModel(pool_tokens, page, whole_leaves, extra_page)
    return [model.serve(tokens[offsets[i]:offsets[i + 1]].astype(np.int64)) for i in range(len(offsets) - 1)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partial-leaves", action="store_true", help="evict only what is needed, from a leaf's end")
    ap.add_argument("--no-extra-page", action="store_true", help="ask for exactly the slots needed (page size > 1)")
    ap.add_argument("--streams", default=None)
    args = ap.parse_args(argv)
    for name, tokens, offsets, golden, run in compare.recorded_runs("sglang", args.streams):
        compare.report_run(name, run, replay(tokens, offsets, run["capacity_used"], golden["page_size"],
                                                  not args.partial_leaves, not args.no_extra_page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
