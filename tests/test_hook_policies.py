"""Custom policies with the hook protocol (cachesim.HookPolicy): a Python LRU and a Python FIFO written with it
replay exactly as the built-in lru and fifo on both engines; the hooks come in the documented order; a failing
policy stops the replay with a PolicyError that says where."""

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cachesim
from cachesim.requests import TokenRequests
from cachesim.testing import PythonLru
from strategies import token_request_streams


class PythonFifo(cachesim.HookPolicy):
    """The oldest insertion among the leaves: a heap by insertion number, entries dropped when stale."""

    name = "python-fifo"

    def __init__(self):
        self.inserted_as: dict[int, int] = {}
        self.leaves: set[int] = set()
        self.heap: list[tuple[int, int]] = []
        self.count = 0

    def inserted(self, key, depth):
        self.count += 1
        self.inserted_as[key] = self.count
        self.leaves.add(key)
        heapq.heappush(self.heap, (self.count, key))

    def gained_child(self, key):
        self.leaves.discard(key)

    def became_leaf(self, key):
        self.leaves.add(key)
        heapq.heappush(self.heap, (self.inserted_as[key], key))

    def removed(self, key, evicted):
        del self.inserted_as[key]
        self.leaves.discard(key)

    def victim(self, is_candidate):
        passed = []   # leaves this request uses: back in the heap afterwards
        try:
            while self.heap:
                number, key = self.heap[0]
                if self.inserted_as.get(key) != number or key not in self.leaves:
                    heapq.heappop(self.heap)   # stale: removed, re-inserted since, or not a leaf now
                elif is_candidate(key):
                    return key
                else:
                    passed.append(heapq.heappop(self.heap))
            return None
        finally:
            for item in passed:
                heapq.heappush(self.heap, item)


def replay(requests, policy, impl, **options):
    return cachesim.replay(requests, policy=policy, impl=impl, **options)


def assert_same(got, want):
    for name, column in want.per_request.items():
        assert np.array_equal(got.per_request[name], column), name
    assert np.array_equal(got.tenant_stats, want.tenant_stats)
    assert got.orphaned_blocks == want.orphaned_blocks


@settings(deadline=None, max_examples=60)
@given(requests=token_request_streams(max_requests=25), capacity=st.sampled_from([1, 2, 3, 5, 8, 13]),
       victims=st.sampled_from(["leaves", "any"]), ttl_s=st.sampled_from([None, 2.0]), block_size=st.integers(1, 3))
def test_python_lru_and_fifo_replay_as_the_builtins_on_both_engines(requests, capacity, victims, ttl_s, block_size):
    options = dict(capacity_blocks=capacity, victims=victims, ttl_s=ttl_s, block_size=block_size)
    for impl in ("core", "reference"):
        for make, builtin in ((PythonLru, "lru"), (PythonFifo, "fifo")):
            assert_same(replay(requests, make(), impl, **options), replay(requests, builtin, impl, **options))


@pytest.mark.core
def test_python_lru_on_the_mooncake_prefix_trace_equals_lru(mooncake_head):
    for capacity in (500, 4_000):
        assert_same(replay(mooncake_head, PythonLru(), "core", capacity_blocks=capacity),
                    replay(mooncake_head, "lru", "core", capacity_blocks=capacity))


@pytest.fixture(scope="module")
def mooncake_head():
    from conftest import MOONCAKE_CONVERSATION, require_shared

    return cachesim.read_trace(require_shared(MOONCAKE_CONVERSATION)).slice(0, 2_000)


class Recorder(PythonLru):
    """A Python LRU that logs every call, naming keys A, B, C... in the order they are first inserted."""

    def __init__(self):
        super().__init__()
        self.events, self.labels = [], {}

    def label(self, key):
        return self.labels.setdefault(key, "ABCDEFGH"[len(self.labels)])

    def inserted(self, key, depth):
        self.events.append(("inserted", self.label(key), depth))

    def used(self, key, inserted_now):
        self.events.append(("used", self.label(key), inserted_now))
        super().used(key, inserted_now)

    def removed(self, key, evicted):
        self.events.append(("removed", self.label(key), evicted))
        super().removed(key, evicted)

    def gained_child(self, key):
        self.events.append(("gained_child", self.label(key)))

    def became_leaf(self, key):
        self.events.append(("became_leaf", self.label(key)))

    def victim(self, is_candidate):
        self.events.append(("victim", {self.labels[k] for k in self.order if is_candidate(k)}))
        return super().victim(is_candidate)


def test_hooks_come_in_the_documented_order(impl):
    # block_size 1, capacity 2: [1, 2] caches "1" (A) and "12" (B, A's child); [3] must evict, and only the leaf
    # B may go (A has a child); A then becomes a leaf, and "3" (C) is inserted
    sim = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=2, policy=Recorder()), impl=impl)
    sim.run(cachesim.compile_trace(TokenRequests.from_lists([[1, 2], [3]]), 1))
    assert sim.policy.events == [
        ("inserted", "A", 0), ("inserted", "B", 1), ("gained_child", "A"), ("used", "B", True), ("used", "A", True),
        ("victim", {"B"}), ("removed", "B", True), ("became_leaf", "A"), ("inserted", "C", 0), ("used", "C", True)]


def test_a_block_this_request_uses_is_not_a_candidate(impl):
    # capacity 2: [1] then [1, 5]: "1" is hit (in use), so the new "15" finds no candidate and stays uncached
    sim = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=2, policy=Recorder()), impl=impl)
    r = sim.run(cachesim.compile_trace(TokenRequests.from_lists([[1], [7], [1, 5]]), 1))
    assert ("victim", {"B"}) in sim.policy.events   # "7" (B) is the one candidate when "15" needs room
    assert r.per_request["hit_blocks"].tolist() == [0, 0, 1]
    assert r.per_request["evicted_blocks"].tolist() == [0, 0, 1]


class Declines(PythonLru):
    def victim(self, is_candidate):
        return None


def test_a_victim_of_none_leaves_the_new_block_uncached(impl):
    r = cachesim.replay(TokenRequests.from_lists([[1], [2], [1]]), block_size=1, capacity_blocks=1, policy=Declines(),
                        impl=impl)
    assert r.per_request["uncached_blocks"].tolist() == [0, 1, 0]
    assert r.per_request["hit_blocks"].tolist() == [0, 0, 1]   # "1" stayed


class EvictsWhatItUses(PythonLru):
    """Returns the most recent block, which the request that needs room is using."""

    def victim(self, is_candidate):
        return next(reversed(self.order))


def test_choosing_a_block_that_may_not_go_stops_the_replay_where_it_happened(impl):
    sim = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=2, policy=EvictsWhatItUses()), impl=impl)
    trace = cachesim.compile_trace(TokenRequests.from_lists([[1], [2], [2, 3]]), 1)
    with pytest.raises(cachesim.PolicyError, match=r"policy 'python-lru' chose block \d+, which may not be evicted "
                                                   r"now") as caught:
        sim.feed(trace)
    assert caught.value.request == 2
    assert caught.value.partial["hit_blocks"].tolist() == [0, 0]
    with pytest.raises(cachesim.PolicyError, match="stopped at a policy's error"):
        sim.feed(cachesim.compile_trace(TokenRequests.from_lists([[9]], t=[5.0]), 1))


class FailsOnThirdUse(PythonLru):
    def __init__(self):
        super().__init__()
        self.uses = 0

    def used(self, key, inserted_now):
        self.uses += 1
        if self.uses == 3:
            raise ZeroDivisionError("third use")
        super().used(key, inserted_now)


def test_an_exception_in_a_hook_stops_the_replay_and_is_the_cause(impl):
    sim = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=4, policy=FailsOnThirdUse()), impl=impl)
    with pytest.raises(cachesim.PolicyError, match="raised ZeroDivisionError: third use") as caught:
        sim.feed(cachesim.compile_trace(TokenRequests.from_lists([[1], [2], [3], [4]]), 1))
    assert caught.value.request == 2
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_each_cache_gets_its_own_copy_of_the_policy(impl):
    # one config, two replays: the second must not start from the first's state (which would be stale keys)
    template = PythonLru()
    config = cachesim.CacheConfig(capacity_blocks=2, policy=template)
    trace = cachesim.compile_trace(TokenRequests.from_lists([[1], [2], [3], [1]]), 1)
    first, second = (cachesim.Simulator(config, impl=impl) for _ in range(2))
    assert first.run(trace).per_request["hit_blocks"].tolist() == second.run(trace).per_request["hit_blocks"].tolist()
    assert len(first.policy.order) == len(second.policy.order) == 2 and not template.order


class HoldsALock(PythonLru):
    def __init__(self):
        super().__init__()
        import threading

        self.lock = threading.Lock()


def test_a_policy_that_cannot_be_copied_says_what_to_do(impl):
    with pytest.raises(ValueError, match=r"every cache gets its own copy of a HookPolicy \(copy.deepcopy\), which "
                                         r"failed \(TypeError: .*lock.*\); give the class a __deepcopy__"):
        cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=2, policy=HoldsALock()), impl=impl)


class ChoosesOnly(cachesim.Policy):
    name = "chooser"

    def choose(self, candidates):
        return candidates[0].key


def test_a_choose_policy_is_refused_by_the_core_and_says_what_to_do():
    with pytest.raises(ValueError, match=r"choose\(candidates\) policy runs on the reference engine only"):
        cachesim.replay(TokenRequests.from_lists([[1]]), capacity_blocks=1, policy=ChoosesOnly(), impl="core")
    r = cachesim.replay(TokenRequests.from_lists([[1], [2], [1]]), block_size=1, capacity_blocks=1,
                        policy=ChoosesOnly(), impl="reference")
    assert r.per_request["hit_blocks"].tolist() == [0, 0, 0]


def test_an_object_without_victim_or_choose_is_not_a_policy(impl):
    with pytest.raises(ValueError, match=r"a policy is a name .*, an object with a victim\(is_candidate\)"):
        cachesim.replay(TokenRequests.from_lists([[1]]), capacity_blocks=1, policy=object(), impl=impl)


# -- a policy of your own in a file: FILE.py:CLASS[:key=value,...] ---------------------------------------------

PLUGIN = '''
import cachesim
from cachesim.testing import PythonLru


class Lru(PythonLru):
    name = "lru-from-a-file"

    def __init__(self, label="x", spare=0):
        super().__init__()
        self.label, self.spare = label, spare


class Broken(cachesim.HookPolicy):
    def __init__(self):
        raise RuntimeError("no")


class NotAPolicy:
    pass
'''


@pytest.fixture
def plugin(tmp_path):
    path = tmp_path / "my_policies.py"
    path.write_text(PLUGIN)
    return path


def test_a_policy_in_a_file_replays_as_its_class_on_both_engines(plugin, impl):
    trace = cachesim.compile_trace(TokenRequests.from_lists([[1, 2], [3], [1, 2, 4], [5], [1, 2]]), 1)
    sim = cachesim.Simulator(cachesim.CacheConfig(capacity_blocks=3, policy=f"{plugin}:Lru:label=ab,spare=2"),
                             impl=impl)
    got = sim.run(trace)
    assert (sim.policy.label, sim.policy.spare) == ("ab", 2)   # parameters as keyword arguments, numbers as numbers
    assert_same(got, cachesim.replay(trace, capacity_blocks=3, policy="lru", impl=impl))


def test_a_sweep_runs_a_policy_file_in_its_worker_processes(plugin):
    trace = cachesim.compile_trace(TokenRequests.from_lists([[1, 2], [3], [1, 2, 4], [5], [1, 2]] * 4), 1)
    table = cachesim.sweep(trace, {"capacity": [2, 4], "policy": ["lru", f"{plugin}:Lru"]}, workers=2)
    rows = {(row.capacity_blocks, row.policy): row.hit_blocks for row in table.itertuples()}
    for capacity in (2, 4):
        assert rows[capacity, f"{plugin}:Lru"] == rows[capacity, "lru"]


@pytest.mark.parametrize("spec, message", [
    ("missing.py:Lru", r"missing\.py is not a file"),
    ("{plugin}:Lruu", r"no class 'Lruu' in it \(its policies: Broken, Lru\)"),
    ("{plugin}:Lru:spare", r"parameter 'spare' is not key=value"),
    ("{plugin}:Lru:colour=red", r"Lru\(colour=red\) raised TypeError"),
    ("{plugin}:Broken", r"Broken\(\) raised RuntimeError: no"),
    ("{plugin}:NotAPolicy", r"NotAPolicy has neither victim\(is_candidate\)"),
])
def test_a_bad_policy_file_is_a_one_line_cli_error(plugin, spec, message):
    import re
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "cachesim", "replay", "--capacity", "1k", "--policy",
                           spec.format(plugin=plugin)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
