"""Synthetic agent workloads: how LLM agent harnesses send requests, as :class:`~cachesim.requests.TokenRequests`.

An *agent harness* answers each user query with a loop of model calls: the model emits a tool call, the harness runs
the tool and appends the result, and the full context goes back to the model until it answers. Every request
therefore re-sends ``system + tools + conversation so far``; what a prompt cache can save depends on how stable
that prefix is. Two harness styles are modelled:

- ``native``: a cache-friendly harness. The system prompt and tool list are byte-stable for the whole deployment
  (the same token ids for every user), the history is append-only, and cache markers sit at the end of the stable
  prefix and at the end of the last message. Each request extends the previous request of its session exactly.
- ``chatty``: a cache-hostile harness. Each tool round is split into several small, low-value calls; a timestamp
  line near the top of the system prompt changes on every request, and the tool list is reshuffled per query, so
  the prefix breaks a few hundred tokens in. It places a single marker at the end of the prompt.

Both styles replay the *same* plan for a given seed (user turns, tool rounds, result sizes, think times, sub-tasks
are drawn from a style-independent stream), so the two can be compared like for like. Users draw from independent
streams (``SeedSequence.spawn``), so adding users does not change the requests of existing ones.

Token ids are random (``Generator.integers``); a segment is drawn once and its ids reused wherever it appears again,
which is what makes prefixes shareable. Prompts are assembled from views of per-session buffers and joined with a
single ``np.concatenate``: no Python object per token.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from cachesim.requests import TokenRequests, offsets_from_lengths

__all__ = ["AgentWorkload", "AgentWorkloadConfig", "agent_workload", "summary"]

_STYLES = ("native", "chatty")


@dataclass(frozen=True)
class AgentWorkloadConfig:
    """Parameters of :func:`agent_workload`. Sizes are in tokens, times in seconds; lognormals are given by median
    and sigma (of the underlying normal)."""

    n_users: int = 8                        # concurrent users, each its own tenant ("user-0", ...)
    queries_per_user: int = 4               # user queries per user; each query spawns several requests
    style: str = "native"                   # "native" (cache-friendly) or "chatty" (volatile prefix, many calls)
    seed: int = 0
    # deployment (shared by all users)
    system_tokens: int = 3000               # stable system prompt
    tools_tokens: int = 6000                # tool definitions, split into n_tools definitions
    n_tools: int = 24
    vocab_size: int = 100_000               # token ids are drawn from 0..vocab_size-1
    # user turns
    user_tokens_median: float = 200.0
    user_tokens_sigma: float = 1.0
    user_tokens_max: int = 8_000            # a pasted file at most
    # tool rounds: geometric number of rounds per query (support 1.., mean tool_rounds_mean), capped
    tool_rounds_mean: float = 5.0
    tool_rounds_max: int = 40
    tool_call_tokens_median: float = 100.0  # assistant tool call (the model's output for that round)
    tool_call_tokens_sigma: float = 0.6
    tool_result_tokens_median: float = 400.0
    tool_result_tokens_sigma: float = 1.2   # heavy tail: most results are small, a few are whole files
    tool_result_max_tokens: int = 25_000    # harnesses truncate tool output
    answer_tokens_median: float = 400.0     # final assistant answer of a query
    answer_tokens_sigma: float = 0.8
    # time
    start_spread_s: float = 300.0           # users start uniformly in [0, start_spread_s)
    think_time_median_s: float = 120.0      # gap between a query's answer and the next query; ~18% exceed 300 s
    think_time_sigma: float = 1.0
    model_overhead_s: float = 1.0           # per model call: queueing + prefill + time to first token
    output_tokens_per_s: float = 60.0       # decode speed: model latency grows with output tokens
    tool_time_median_s: float = 2.0        # running one tool
    tool_time_sigma: float = 1.0
    # compaction: when a prompt would exceed the limit, the harness asks the model for a summary (one request that
    # re-sends the context plus an instruction) and continues from system + tools + summary
    compaction_limit_tokens: int = 120_000
    summary_tokens: int = 2_000
    compaction_instruction_tokens: int = 60
    # sub-agents: a tool call that fans out to parallel sub-agents, each its own session sharing system + tools;
    # the parent waits for all of them and receives their answers as the tool result
    subtask_probability: float = 0.25       # per query
    max_parallel_subtasks: int = 3          # 1..max sub-agents, uniformly
    subtask_rounds_mean: float = 4.0
    subtask_prompt_tokens_median: float = 300.0
    # chatty harness
    chatty_round_factor: int = 3            # each tool round becomes this many calls, the result split between them
    timestamp_offset_tokens: int = 100      # where the volatile timestamp line sits inside the system prompt
    timestamp_tokens: int = 8

    def __post_init__(self) -> None:
        if self.style not in _STYLES:
            raise ValueError(f"style must be one of {_STYLES}, not {self.style!r}")
        for name in ("n_users", "queries_per_user", "system_tokens", "tools_tokens", "n_tools", "vocab_size",
                     "tool_rounds_max", "tool_result_max_tokens", "user_tokens_max", "summary_tokens",
                     "compaction_instruction_tokens", "max_parallel_subtasks", "chatty_round_factor",
                     "timestamp_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("user_tokens_median", "tool_call_tokens_median", "tool_result_tokens_median",
                     "answer_tokens_median", "think_time_median_s", "tool_time_median_s", "output_tokens_per_s",
                     "subtask_prompt_tokens_median"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if self.tool_rounds_mean < 1 or self.subtask_rounds_mean < 1:
            raise ValueError("tool_rounds_mean and subtask_rounds_mean must be >= 1")
        if not 0.0 <= self.subtask_probability <= 1.0:
            raise ValueError("subtask_probability must be in [0, 1]")
        if self.n_tools > self.tools_tokens:
            raise ValueError("n_tools must not exceed tools_tokens (each tool needs a token)")
        if not 0 <= self.timestamp_offset_tokens <= self.system_tokens - self.timestamp_tokens:
            raise ValueError("the timestamp line must fit inside the system prompt")
        # after compaction the context must be back under the limit, or every request would compact again
        if self.compaction_limit_tokens <= self.system_tokens + self.tools_tokens + self.summary_tokens:
            raise ValueError("compaction_limit_tokens must exceed system_tokens + tools_tokens + summary_tokens")


@dataclass
class AgentWorkload:
    """A generated workload: the requests plus what the harness knew about them."""

    requests: TokenRequests
    query: np.ndarray                 # int64 [n_requests]: global id of the user query each request serves
    breakpoints: np.ndarray           # int64 [total]: cache-marker positions (exclusive end offsets in the prompt)
    breakpoint_offsets: np.ndarray    # int64 [n_requests+1]: CSR into `breakpoints`
    config: AgentWorkloadConfig
    # content-block ends (exclusive token offsets: system, tools, each message), CSR like the breakpoints; provider
    # rules such as Anthropic's 20-block lookback count these positions
    boundaries: np.ndarray | None = None
    boundary_offsets: np.ndarray | None = None

    @property
    def n_requests(self) -> int:
        return self.requests.n_requests

    def prompt(self, i: int) -> np.ndarray:
        """Token ids of request ``i`` (a view)."""
        off = self.requests.token_offsets
        return self.requests.tokens[off[i]:off[i + 1]]

    def request_breakpoints(self, i: int) -> np.ndarray:
        """Cache-marker positions of request ``i`` (a view)."""
        return self.breakpoints[self.breakpoint_offsets[i]:self.breakpoint_offsets[i + 1]]

    def request_boundaries(self, i: int) -> np.ndarray:
        """Content-block end positions of request ``i`` (a view)."""
        return self.boundaries[self.boundary_offsets[i]:self.boundary_offsets[i + 1]]


def agent_workload(config: AgentWorkloadConfig | None = None, **overrides) -> AgentWorkload:
    """Generate a seeded agent workload; ``overrides`` replace fields of ``config`` (or of the default config)."""
    if config is None:
        config = AgentWorkloadConfig(**overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    root = np.random.SeedSequence(config.seed)
    # child 0 is the deployment; child 1+u is user u (independent of n_users)
    children = root.spawn(1 + config.n_users)
    deployment = _Deployment(config, np.random.default_rng(children[0]))
    sink = _Sink()
    next_session = [config.n_users]   # sub-agent sessions are numbered after the users' main sessions
    for u in range(config.n_users):
        plan_ss, content_ss = children[1 + u].spawn(2)
        _User(u, config, deployment, sink, np.random.default_rng(plan_ss), np.random.default_rng(content_ss),
              next_session).run()
    return sink.build(config)


def summary(workload: AgentWorkload) -> dict:
    """Plain request and token counts of a workload (no caching involved)."""
    req = workload.requests
    n = req.n_requests
    queries = int(np.unique(workload.query).size)
    prompt_tokens = int(req.token_offsets[-1])
    lengths = np.diff(req.token_offsets)
    return {
        "style": workload.config.style,
        "users": len(req.tenant_names),
        "sessions": int(np.unique(req.session).size),
        "requests": n,
        "queries": queries,
        "requests_per_query": n / queries if queries else 0.0,
        "prompt_tokens": prompt_tokens,
        "prompt_tokens_per_query": prompt_tokens / queries if queries else 0.0,
        "mean_prompt_tokens": float(lengths.mean()) if n else 0.0,
        "max_prompt_tokens": int(lengths.max()) if n else 0,
        "output_tokens": int(req.output_tokens.sum()),
        "duration_s": float(req.t[-1] - req.t[0]) if n else 0.0,
    }


# --------------------------------------------------------------------------------------------------------------
# internals


def _lognormal(rng: np.random.Generator, median: float, sigma: float, size=None, cap: int | None = None):
    """Lognormal token counts, rounded, at least 1 (and at most ``cap``)."""
    x = np.rint(rng.lognormal(math.log(median), sigma, size))
    return np.clip(x, 1, cap if cap is not None else np.inf).astype(np.int64)


def _rounds(rng: np.random.Generator, mean: float, cap: int) -> int:
    """Tool rounds of one query: geometric on 1.. with the given mean (many short queries, a long tail)."""
    return int(min(cap, rng.geometric(1.0 / mean)))


class _Deployment:
    """What every user of one deployment shares: system prompt, tool definitions, compaction instruction."""

    def __init__(self, cfg: AgentWorkloadConfig, rng: np.random.Generator):
        self.vocab = cfg.vocab_size
        self.system = self.ids(rng, cfg.system_tokens)
        # tool definitions of uneven sizes summing to tools_tokens (a chatty harness reorders them)
        cuts = np.sort(rng.choice(np.arange(1, cfg.tools_tokens), cfg.n_tools - 1, replace=False))
        self.tool_bounds = np.concatenate([[0], cuts, [cfg.tools_tokens]]).astype(np.int64)
        self.tools = self.ids(rng, cfg.tools_tokens)
        self.prefix = np.concatenate([self.system, self.tools])   # the native stable prefix
        self.compaction_instruction = self.ids(rng, cfg.compaction_instruction_tokens)
        # the chatty harness splits the system prompt around its timestamp line
        ts_at = cfg.timestamp_offset_tokens
        self.system_head = self.system[:ts_at]
        self.system_tail = self.system[ts_at + cfg.timestamp_tokens:]

    def ids(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, self.vocab, size=int(n), dtype=np.uint32)

    def shuffled_tools(self, rng: np.random.Generator) -> np.ndarray:
        order = rng.permutation(len(self.tool_bounds) - 1)
        b = self.tool_bounds
        return np.concatenate([self.tools[b[k]:b[k + 1]] for k in order])


class _History:
    """Append-only token buffer of one conversation. Views handed out stay valid: data before ``n`` never changes
    and growth reallocates rather than moving data under a view."""

    def __init__(self, capacity: int = 4096):
        self.buf = np.empty(capacity, dtype=np.uint32)
        self.n = 0
        self.ends: list[int] = []   # end offset of each appended message (one entry per message, not per token)

    def append(self, ids: np.ndarray) -> None:
        end = self.n + len(ids)
        if end > len(self.buf):
            grown = np.empty(max(end, 2 * len(self.buf)), dtype=np.uint32)
            grown[:self.n] = self.buf[:self.n]
            self.buf = grown
        self.buf[self.n:end] = ids
        self.n = end
        self.ends.append(end)

    def view(self) -> np.ndarray:
        return self.buf[:self.n]


class _Sink:
    """Collects requests in generation order; :meth:`build` sorts them by time (stably) and packs the arrays."""

    def __init__(self):
        self.t: list[float] = []
        self.tenant: list[int] = []
        self.session: list[int] = []
        self.query: list[int] = []
        self.output: list[int] = []
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.length: list[int] = []
        self.breakpoints: list[tuple[int, ...]] = []
        self.boundaries: list[np.ndarray] = []

    def add(self, t, tenant, session, query, output, parts, breakpoints, boundaries=None) -> None:
        self.t.append(t)
        self.tenant.append(tenant)
        self.session.append(session)
        self.query.append(query)
        self.output.append(output)
        self.parts.append(parts)
        self.length.append(sum(len(p) for p in parts))
        self.breakpoints.append(breakpoints)
        self.boundaries.append(np.zeros(0, np.int64) if boundaries is None else boundaries)

    def build(self, cfg: AgentWorkloadConfig) -> AgentWorkload:
        t = np.asarray(self.t, dtype=np.float64)
        order = np.argsort(t, kind="stable")   # users interleave; equal times keep generation order
        idx = order.tolist()
        tokens = np.concatenate([p for i in idx for p in self.parts[i]] or [np.zeros(0, np.uint32)])
        lengths = np.asarray(self.length, dtype=np.int64)[order]
        bp_lists = [self.breakpoints[i] for i in idx]
        bp_counts = np.fromiter((len(b) for b in bp_lists), dtype=np.int64, count=len(idx))
        breakpoints = np.fromiter((x for b in bp_lists for x in b), dtype=np.int64, count=int(bp_counts.sum()))
        requests = TokenRequests.from_arrays(
            tokens, offsets_from_lengths(lengths), t=t[order],
            tenant=np.asarray(self.tenant, dtype=np.int32)[order],
            session=np.asarray(self.session, dtype=np.int64)[order],
            output_tokens=np.asarray(self.output, dtype=np.int64)[order],
            tenant_names=[f"user-{u}" for u in range(cfg.n_users)])
        bd_lists = [self.boundaries[i] for i in idx]
        boundaries = np.concatenate(bd_lists or [np.zeros(0, np.int64)]).astype(np.int64, copy=False)
        bd_counts = np.fromiter((len(b) for b in bd_lists), dtype=np.int64, count=len(idx))
        return AgentWorkload(requests=requests, query=np.asarray(self.query, dtype=np.int64)[order],
                             breakpoints=breakpoints, breakpoint_offsets=offsets_from_lengths(bp_counts),
                             config=cfg, boundaries=boundaries, boundary_offsets=offsets_from_lengths(bd_counts))


class _Session:
    """One conversation (a user's main session or a sub-agent) as its harness renders it."""

    def __init__(self, sid: int, user: _User):
        self.sid = sid
        self.user = user
        self.history = _History()
        self.tools: np.ndarray = user.dep.tools   # current tool list rendering (reshuffled per query if chatty)

    def new_query(self) -> None:
        if self.user.chatty:
            self.tools = self.user.dep.shuffled_tools(self.user.content)

    def append(self, n: int) -> np.ndarray:
        ids = self.user.dep.ids(self.user.content, n)
        self.history.append(ids)
        return ids

    def _prefix(self) -> tuple[np.ndarray, ...]:
        dep = self.user.dep
        if not self.user.chatty:
            return (dep.prefix,)
        # a fresh timestamp on every request breaks the prefix ~timestamp_offset_tokens in
        stamp = dep.ids(self.user.content, self.user.cfg.timestamp_tokens)
        return (dep.system_head, stamp, dep.system_tail, self.tools)

    def _emit(self, t: float, query: int, output: int, extra: tuple[np.ndarray, ...] = ()) -> None:
        parts = (*self._prefix(), self.history.view(), *extra)
        length = sum(len(p) for p in parts)
        cfg = self.user.cfg
        # native: marker after system + tools and at the end of the last message; chatty: end of prompt only
        bps = (length,) if self.user.chatty else (cfg.system_tokens + cfg.tools_tokens, length)
        # content blocks: the system prompt, the tool list, each message, the extra instruction (if any)
        stable = cfg.system_tokens + cfg.tools_tokens
        ends = [cfg.system_tokens, stable, *(stable + e for e in self.history.ends)]
        if extra:
            ends.append(length)
        self.user.sink.add(t, self.user.u, self.sid, query, output, parts, bps, np.asarray(ends, dtype=np.int64))

    def request(self, t: float, query: int, output: int) -> float:
        """Send the context at ``t`` (compacting first if it is over the limit); returns when the response is done."""
        cfg = self.user.cfg
        if cfg.system_tokens + cfg.tools_tokens + self.history.n > cfg.compaction_limit_tokens:
            self._emit(t, query, cfg.summary_tokens, (self.user.dep.compaction_instruction,))
            t += self.user.latency(cfg.summary_tokens)
            self.history = _History()
            self.append(cfg.summary_tokens)
        self._emit(t, query, output)
        return t + self.user.latency(output)


@dataclass
class _Query:
    """The style-independent plan of one query (or of one sub-agent task)."""

    prompt: int                       # user turn (or sub-agent task) tokens
    calls: np.ndarray                 # [rounds] tool call tokens
    results: np.ndarray               # [rounds] tool result tokens
    tool_times: np.ndarray            # [rounds] seconds
    answer: int
    spawn_round: int = -1             # round whose tool call fans out to sub-agents, -1 for none
    subtasks: tuple[_Query, ...] = ()
    think_s: float = 0.0              # gap after this query's answer


class _User:
    def __init__(self, u: int, cfg: AgentWorkloadConfig, dep: _Deployment, sink: _Sink,
                 plan: np.random.Generator, content: np.random.Generator, next_session: list[int]):
        self.u, self.cfg, self.dep, self.sink = u, cfg, dep, sink
        self.plan, self.content = plan, content
        self.next_session = next_session
        self.chatty = cfg.style == "chatty"

    def latency(self, output_tokens: int) -> float:
        return self.cfg.model_overhead_s + output_tokens / self.cfg.output_tokens_per_s

    def _draw(self, prompt_median: float, rounds_mean: float, subtasks: bool) -> _Query:
        # always the same draws in the same order, whatever the style, so native and chatty share a plan
        c, rng = self.cfg, self.plan
        prompt = int(_lognormal(rng, prompt_median, c.user_tokens_sigma, cap=c.user_tokens_max))
        r = _rounds(rng, rounds_mean, c.tool_rounds_max)
        calls = _lognormal(rng, c.tool_call_tokens_median, c.tool_call_tokens_sigma, r)
        results = _lognormal(rng, c.tool_result_tokens_median, c.tool_result_tokens_sigma, r, c.tool_result_max_tokens)
        tool_times = rng.lognormal(math.log(c.tool_time_median_s), c.tool_time_sigma, r)
        answer = int(_lognormal(rng, c.answer_tokens_median, c.answer_tokens_sigma))
        q = _Query(prompt, calls, results, tool_times, answer)
        if subtasks and rng.random() < c.subtask_probability:
            q.spawn_round = int(rng.integers(0, r))
            n = int(rng.integers(1, c.max_parallel_subtasks + 1))
            q.subtasks = tuple(self._draw(c.subtask_prompt_tokens_median, c.subtask_rounds_mean, False)
                               for _ in range(n))
        q.think_s = float(rng.lognormal(math.log(c.think_time_median_s), c.think_time_sigma))
        return q

    def run(self) -> None:
        c = self.cfg
        main = _Session(self.u, self)
        t = float(self.plan.uniform(0.0, c.start_spread_s))
        for k in range(c.queries_per_user):
            q = self._draw(c.user_tokens_median, c.tool_rounds_mean, True)
            t, _ = self._run_query(main, q, k + self.u * c.queries_per_user, t)
            t += q.think_s

    def _run_query(self, sess: _Session, q: _Query, query_id: int, t: float) -> tuple[float, np.ndarray]:
        """Play one query in ``sess`` from ``t``; returns when its answer is complete, and the answer's ids."""
        c = self.cfg
        sess.new_query()
        sess.append(q.prompt)
        for r in range(len(q.calls)):
            if r == q.spawn_round:
                t = sess.request(t, query_id, int(q.calls[r]))
                sess.append(int(q.calls[r]))
                t, answers = self._run_subtasks(q.subtasks, query_id, t)
                sess.history.append(answers)   # the sub-agents' answers come back verbatim as the tool result
                continue
            if self.chatty:
                # many small calls instead of one: extra call sizes from the content stream keep the plan shared
                f = c.chatty_round_factor
                calls = np.concatenate([q.calls[r:r + 1], _lognormal(self.content, c.tool_call_tokens_median,
                                                                     c.tool_call_tokens_sigma, f - 1)])
                base = int(q.results[r]) // f
                results = [max(1, base)] * (f - 1) + [max(1, int(q.results[r]) - base * (f - 1))]
                tool_time = float(q.tool_times[r]) / f
            else:
                calls, results, tool_time = q.calls[r:r + 1], [int(q.results[r])], float(q.tool_times[r])
            for call, result in zip(calls.tolist(), results, strict=True):
                t = sess.request(t, query_id, call) + tool_time
                sess.append(call)
                sess.append(result)
        t = sess.request(t, query_id, q.answer)
        return t, sess.append(q.answer)

    def _run_subtasks(self, tasks: tuple[_Query, ...], query_id: int, t: float) -> tuple[float, np.ndarray]:
        """Run sub-agents in parallel from ``t``; returns when the last finishes and their concatenated answers."""
        done, answers = t, []
        for task in tasks:
            sub = _Session(self.next_session[0], self)
            self.next_session[0] += 1
            end, answer = self._run_query(sub, task, query_id, t)
            done = max(done, end)
            answers.append(answer)
        return done, np.concatenate(answers)
