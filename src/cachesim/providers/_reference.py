"""Plain-Python twin of ``cachesim._providers``: the same rules written for reading, one dict per cache.

The tests replay random inputs through both and require identical outputs, so this file is the executable
statement of the rules; it is slow (Python per position) and never used by default.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import xxhash

UNIT = 16
MASK = (1 << 64) - 1
FLAG_BELOW_MIN, FLAG_EXPIRED, FLAG_LOOKBACK, FLAG_OVERFLOW, FLAG_NOT_READY, FLAG_ERROR, FLAG_SERVER_MISS = (
    1, 2, 4, 8, 16, 32, 64)
FLAG_EVICTED = 128
ERR_TOO_MANY_BREAKPOINTS, ERR_TTL_ORDER = 1, 2
MODE_ANTHROPIC, MODE_OPENAI56 = 0, 1


def _fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK
    k ^= k >> 33
    k = (k * 0xC4CEB93FE53B94CF) & MASK
    k ^= k >> 33
    return k


def nskey(key: int, ns: int) -> int:
    return _fmix64(key ^ _fmix64((ns + 0x9E3779B97F4A7C15) & MASK))


class _Prompt:
    """Prefix keys of one prompt: the 16-token chain, then the tail."""

    def __init__(self, toks: np.ndarray):
        self.toks = toks
        self.data = toks.astype("<u4").tobytes()
        self.chain = [0]
        for k in range(1, len(toks) // UNIT + 1):
            self.chain.append(xxhash.xxh3_64_intdigest(self.data[(k - 1) * UNIT * 4:k * UNIT * 4],
                                                       seed=self.chain[k - 1]))

    def key(self, p: int) -> int:
        q = p // UNIT
        return xxhash.xxh3_64_intdigest(self.data[q * UNIT * 4:p * 4], seed=self.chain[q])


def _prompt(tokens, offsets, r) -> _Prompt:
    return _Prompt(tokens[offsets[r]:offsets[r + 1]])


def prefix_keys(tokens, token_offsets, positions, position_offsets) -> np.ndarray:
    out = []
    for r in range(len(token_offsets) - 1):
        pr = _prompt(tokens, token_offsets, r)
        out.extend(pr.key(int(p)) for p in positions[position_offsets[r]:position_offsets[r + 1]])
    return np.array(out, dtype=np.uint64)


class _Entry:
    __slots__ = ("expires_at", "available_at", "created_at", "ttl_s", "writer", "creator", "evicted_by")

    def __init__(self):
        self.expires_at = self.available_at = self.created_at = self.ttl_s = 0.0
        self.writer = 0
        self.creator = 0          # the request that created it: whose write a later hit reads
        self.evicted_by = -1      # the tenant whose insertion evicted it for capacity, -1 if not evicted

    def live(self, t: float) -> bool:
        return self.available_at <= t < self.expires_at


def _recall(table: dict, key: int, t: float, forget_s: float):
    """The entry of ``key``, or None when absent or expired more than ``forget_s`` before ``t``."""
    e = table.get(key)
    if e is None:
        return None
    expires = e[0] if isinstance(e, list) else e.expires_at
    return None if t >= expires + forget_s else e


def route(tokens, token_offsets, t, cache_key, prefix_tokens, per_minute, window_s, seed):
    n = len(t)
    rk = np.zeros(n, np.uint64)
    replica = np.zeros(n, np.int32)
    kk = np.zeros(n, np.int32)
    kmax = np.zeros(n, np.int32)
    ns = np.zeros(n, np.uint64)
    state: dict[int, list[int]] = {}    # routing key -> [count in window, round-robin counter, most replicas]
    keys = []
    lo = 0
    for r in range(n):
        toks = tokens[token_offsets[r]:token_offsets[r + 1]]
        p = min(len(toks), prefix_tokens)
        key = nskey(_Prompt(toks[:p]).key(p), (int(cache_key[r]) + 1) & MASK)
        keys.append(key)
        rk[r] = key
        while t[lo] <= t[r] - window_s:
            state[keys[lo]][0] -= 1
            lo += 1
        if key not in state:
            state[key] = [0, nskey(key, seed) & 0xFFFF, 0]
        s = state[key]
        s[0] += 1
        k = max(1, math.ceil(s[0] / per_minute))
        kk[r] = k
        s[2] = max(s[2], k)
        kmax[r] = s[2]
        replica[r] = s[1] % k
        ns[r] = nskey(key, int(replica[r]))
        s[1] += 1
    return rk, replica, kk, kmax, ns


def _write(table: dict, key: int, t: float, ttl_s: float, ttft_s: float, r: int) -> None:
    e = table.get(key)
    if e is None or t >= e.expires_at:
        e = table.setdefault(key, _Entry())
        e.available_at, e.expires_at, e.created_at, e.creator = t + ttft_s, t + ttl_s, t, r
    else:
        e.available_at = min(e.available_at, t + ttft_s)
        e.expires_at = max(e.expires_at, t + ttl_s)
    e.ttl_s = ttl_s
    e.writer = r


def serve_breakpoints(mode, tokens, token_offsets, t, ns, boundaries, boundary_offsets, breakpoints, bp_long,
                      bp_offsets, automatic, automatic_long, min_tokens, lookback_blocks, max_breakpoints,
                      ttl_short_s, ttl_long_s, ttft_s, refresh_path, miss_draw, miss_probability,
                      forget_s=math.inf, per_segment_minimum=False):
    n = len(t)
    read = np.zeros(n, np.int64)
    w_short = np.zeros(n, np.int64)
    w_long = np.zeros(n, np.int64)
    flags = np.zeros(n, np.int32)
    error = np.zeros(n, np.int8)
    hit_from = np.full(n, -1, np.int64)
    table: dict[int, _Entry] = {}
    use_draws = len(miss_draw) == n and miss_probability > 0
    for r in range(n):
        length = int(token_offsets[r + 1] - token_offsets[r])
        bnd = [int(x) for x in boundaries[boundary_offsets[r]:boundary_offsets[r + 1]]]
        bps = [(int(p), int(c)) for p, c in zip(breakpoints[bp_offsets[r]:bp_offsets[r + 1]],
                                                 bp_long[bp_offsets[r]:bp_offsets[r + 1]], strict=True)]
        n_explicit = len(bps)
        tr = float(t[r])
        if automatic:
            if bps and bps[-1][0] == length:
                if bps[-1][1] != automatic_long and mode == MODE_ANTHROPIC:
                    error[r], flags[r] = ERR_TTL_ORDER, FLAG_ERROR
                    continue
            else:
                bps.append((length, automatic_long))
        if mode == MODE_ANTHROPIC:
            if len(bps) > max_breakpoints:
                error[r], flags[r] = ERR_TOO_MANY_BREAKPOINTS, FLAG_ERROR
                continue
            classes = [c for _, c in bps]
            if any(classes[i] == 0 and classes[j] == 1 for i in range(len(classes))
                   for j in range(i + 1, len(classes))):
                error[r], flags[r] = ERR_TTL_ORDER, FLAG_ERROR
                continue
        if not bps:
            continue
        ok, prev = [], 0
        for p, _ in bps:
            ok.append(p - (prev if per_segment_minimum else 0) >= min_tokens)
            prev = p if ok[-1] else prev
        if not any(ok):
            flags[r] |= FLAG_BELOW_MIN
            continue
        pr = _prompt(tokens, token_offsets, r)

        # bound now: these closures serve this request only
        def entry(q, pr=pr, namespace=int(ns[r]), tr=tr):
            return _recall(table, nskey(pr.key(q), namespace), tr, forget_s)

        hit = expired = not_ready = 0
        found: list[_Entry] = []

        def probe(q, tr=tr):
            nonlocal expired, not_ready
            e = entry(q)
            if e is None:
                return None
            if tr >= e.expires_at:
                expired = max(expired, q)
            elif e.available_at > tr:
                not_ready = max(not_ready, q)
            else:
                return e
            return None

        if use_draws and miss_draw[r] < miss_probability:
            flags[r] |= FLAG_SERVER_MISS
        elif mode == MODE_ANTHROPIC:
            for (p, _), cacheable in reversed(list(zip(bps, ok, strict=True))):
                if not cacheable:
                    continue
                j = bnd.index(p)
                for q in reversed(bnd[max(0, j - lookback_blocks + 1):j + 1]):
                    e = probe(q)
                    if e is not None:
                        found.append(e)
                        if q > hit:
                            hit, hit_from[r] = q, e.creator
                        break
            for e in found:
                e.expires_at = tr + e.ttl_s
                e.writer = r
            j = bnd.index(bps[-1][0])
            for q in reversed(bnd[:max(0, j - lookback_blocks + 1)]):
                if q <= hit:
                    break
                e = entry(q)
                if e is not None and e.live(tr):
                    flags[r] |= FLAG_LOOKBACK
                    break
        else:
            lookups = [p for i, (p, _) in enumerate(bps[:n_explicit]) if i < 2 or i >= n_explicit - 50]
            if automatic:
                j = bnd.index(length)
                lookups += bnd[max(0, j - 20):j + 1]
            if automatic and bnd:
                lookups.append(bnd[0])
            best = None
            for q in lookups:
                e = probe(q)
                if e is not None and q > hit:
                    hit, best = q, e
            if best is not None:
                best.expires_at = tr + best.ttl_s
                best.writer = r
                hit_from[r] = best.creator
        if expired > hit:
            flags[r] |= FLAG_EXPIRED
        if not_ready > hit:
            flags[r] |= FLAG_NOT_READY
        if refresh_path:
            for q in bnd:
                if q >= hit:
                    break
                e = entry(q)
                if e is not None and e.live(tr):
                    e.expires_at = tr + e.ttl_s
                    e.writer = r
        if mode == MODE_ANTHROPIC:
            b_pos = c_pos = hit
            for (p, cls), cacheable in zip(bps, ok, strict=True):
                if not cacheable or p <= hit:
                    continue
                if cls:
                    b_pos = max(b_pos, p)
                c_pos = max(c_pos, p)
                _write(table, nskey(pr.key(p), int(ns[r])), tr, ttl_long_s if cls else ttl_short_s, ttft_s, r)
            read[r], w_long[r], w_short[r] = hit, b_pos - hit, c_pos - b_pos
        else:
            c_pos = hit
            for (p, _), cacheable in list(reversed(list(zip(bps, ok, strict=True))))[:max_breakpoints]:
                if not cacheable or p <= hit:
                    continue
                c_pos = max(c_pos, p)
                _write(table, nskey(pr.key(p), int(ns[r])), tr, ttl_short_s, ttft_s, r)
            read[r], w_short[r] = hit, c_pos - hit
    return read, w_short, w_long, flags, error, hit_from


def serve_units(tokens, token_offsets, t, ns, route_key, replicas, replica_max, unit_tokens, hidden_tokens,
                round_to, token_exact, min_tokens, idle_ttl_s, max_age_s, ttft_s, miss_draw, miss_probability,
                forget_s=math.inf, tenant=None, capacity_units=0):
    n = len(t)
    read = np.zeros(n, np.int64)
    flags = np.zeros(n, np.int32)
    evicted_by = np.full(n, -1, np.int32)
    hit_from = np.full(n, -1, np.int64)
    lru: dict[int, OrderedDict] = {}     # namespace -> its resident unit keys, least recently touched first
    table: dict[int, _Entry] = {}
    routed = len(replicas) == n
    use_draws = len(miss_draw) == n and miss_probability > 0
    first = unit_tokens - hidden_tokens % unit_tokens
    for r in range(n):
        toks = tokens[token_offsets[r]:token_offsets[r + 1]]
        length = len(toks)
        tr = float(t[r])
        pr = _Prompt(toks)
        ends = list(range(first, length + 1, unit_tokens))
        matched, last = 0, None
        if use_draws and miss_draw[r] < miss_probability:
            flags[r] |= FLAG_SERVER_MISS
        else:
            for p in ends:
                e = _recall(table, nskey(pr.key(p), int(ns[r])), tr, forget_s)
                if e is not None and e.evicted_by >= 0:
                    flags[r] |= FLAG_EVICTED
                    evicted_by[r] = e.evicted_by
                    break
                if e is None or not e.live(tr):
                    if e is not None:
                        flags[r] |= FLAG_EXPIRED if tr >= e.expires_at else FLAG_NOT_READY
                    break
                matched, last = p, e
            if token_exact and last is not None:
                other = tokens[token_offsets[last.writer]:token_offsets[last.writer + 1]]
                lim = min(length, len(other), matched + unit_tokens - 1)
                while matched < lim and toks[matched] == other[matched]:
                    matched += 1
        cached = matched - matched % round_to
        if length < min_tokens or cached < min_tokens:
            if length < min_tokens:
                flags[r] |= FLAG_BELOW_MIN
            cached = 0
        read[r] = cached
        if cached:
            hit_from[r] = last.creator
        if routed and not flags[r] & FLAG_SERVER_MISS:
            for alt in range(int(replica_max[r])):
                if alt == replicas[r]:
                    continue
                x = 0
                for p in ends:
                    e = _recall(table, nskey(pr.key(p), nskey(int(route_key[r]), alt)), tr, forget_s)
                    if e is None or not e.live(tr):
                        break
                    x = p
                if x >= min_tokens and x - x % round_to > cached:
                    flags[r] |= FLAG_OVERFLOW
                    break
        if not capacity_units:
            for p in ends:
                key = nskey(pr.key(p), int(ns[r]))
                e = table.get(key)
                if e is None or tr >= e.expires_at:
                    e = table.setdefault(key, _Entry())
                    e.created_at, e.available_at, e.creator = tr, tr + ttft_s, r
                e.expires_at = min(tr + idle_ttl_s, e.created_at + max_age_s)
                e.writer = r
            continue
        resident = lru.setdefault(int(ns[r]), OrderedDict())
        for p in reversed(ends[:capacity_units]):         # deepest first: the prefix ends most recent
            key = nskey(pr.key(p), int(ns[r]))
            e = table.get(key)
            if e is None or tr >= e.expires_at or e.evicted_by >= 0:
                e = table.setdefault(key, _Entry())
                e.created_at, e.available_at, e.evicted_by, e.creator = tr, tr + ttft_s, -1, r
            if key in resident:
                resident.move_to_end(key)
            else:
                while len(resident) >= capacity_units:
                    victim_key, _ = resident.popitem(last=False)
                    victim = table[victim_key]
                    if tr < victim.expires_at:
                        victim.evicted_by = int(tenant[r])
                        victim.expires_at = tr
                resident[key] = None
            e.expires_at = min(tr + idle_ttl_s, e.created_at + max_age_s)
            e.writer = r
    return read, flags, evicted_by, hit_from


def common_prefix(tokens, token_offsets, other) -> np.ndarray:
    n = len(token_offsets) - 1
    out = np.zeros(n, np.int64)
    for r in range(n):
        if other[r] < 0:
            continue
        a = tokens[token_offsets[r]:token_offsets[r + 1]]
        b = tokens[token_offsets[other[r]]:token_offsets[other[r] + 1]]
        x = 0
        while x < min(len(a), len(b)) and a[x] == b[x]:
            x += 1
        out[r] = x
    return out


def serve_deepseek(tokens, token_offsets, t, ns, unit_tokens, interval_tokens, available_after_s, idle_ttl_s,
                   miss_draw, miss_probability, forget_s=math.inf):
    """DeepSeek units: a dict of exact-length units per namespace; a unit path (prefix node -> unit ends) for
    finding candidates and common prefixes."""
    n = len(t)
    u = unit_tokens
    read = np.zeros(n, np.int64)
    flags = np.zeros(n, np.int32)
    hit_from = np.full(n, -1, np.int64)
    units: dict[int, _Entry] = {}
    path: dict[int, list] = {}     # node key -> [expires_at, set of offsets of unit ends inside the node]
    use_draws = len(miss_draw) == n and miss_probability > 0

    def write(pr, nsr, p, t_avail, expires, r):
        key = nskey(pr.key(p), nsr)
        e = units.get(key)
        if e is None or t_avail >= e.expires_at:
            e = units.setdefault(key, _Entry())
            e.available_at, e.expires_at, e.creator = t_avail, expires, r
        else:
            e.available_at = min(e.available_at, t_avail)
            e.expires_at = max(e.expires_at, expires)
        e.writer = r
        for k in range(1, p // u + 1):
            node = path.setdefault(nskey(pr.key(k * u), nsr), [0.0, set()])
            if t_avail >= node[0]:
                node[1] = set()
            node[0] = max(node[0], expires)
            if k == p // u:
                node[1].add(p - k * u)

    for r in range(n):
        toks = tokens[token_offsets[r]:token_offsets[r + 1]]
        length = len(toks)
        nsr = int(ns[r])
        tr = float(t[r])
        if length < u:
            flags[r] |= FLAG_BELOW_MIN
            continue
        pr = _Prompt(toks)
        nodes = []
        for k in range(1, length // u + 1):
            node = _recall(path, nskey(pr.key(k * u), nsr), tr, forget_s)
            if node is None:
                break
            nodes.append(node)
        k_live = 0
        for node in nodes:
            if tr >= node[0]:
                break
            k_live += 1
        hit = 0
        if use_draws and miss_draw[r] < miss_probability:
            flags[r] |= FLAG_SERVER_MISS
        else:
            candidates = sorted((k * u + off for k, node in enumerate(nodes, start=1) for off in node[1]
                                 if k * u + off <= length), reverse=True)
            for p in candidates:
                e = _recall(units, nskey(pr.key(p), nsr), tr, forget_s)
                if e is None:
                    continue
                if tr >= e.expires_at:
                    flags[r] |= FLAG_EXPIRED
                elif e.available_at > tr:
                    flags[r] |= FLAG_NOT_READY
                else:
                    hit, hit_from[r] = p, e.creator
                    e.expires_at = max(e.expires_at, tr + idle_ttl_s)
                    break
            for node in nodes[:hit // u]:
                node[0] = max(node[0], tr + idle_ttl_s)
        read[r] = hit
        t_avail = tr + available_after_s
        expires = t_avail + idle_ttl_s
        write(pr, nsr, length, t_avail, expires, r)
        for p in range(interval_tokens, length, interval_tokens):
            if p >= u:
                write(pr, nsr, p, t_avail, expires, r)
        if k_live >= 1 and hit < k_live * u < length:
            write(pr, nsr, k_live * u, t_avail, expires, r)
    return read, flags, hit_from
