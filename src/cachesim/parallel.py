"""Where replays run: one interface over this process, threads, local processes, Dask and Ray.

An executor takes a picklable module-level function and a list of picklable tasks and yields each result as its
task finishes (completion order); :func:`map` puts them back in the order of the items. Sweeps, remedies,
counterfactuals and fleets all go through :func:`make_executor`, so a name means the same thing everywhere.

The defaults differ on purpose. Remedies and fleets default to threads: each task carries its (sub)trace, which
threads share for free and processes would pickle, and the compiled core releases the GIL while it replays.
Sweeps default to processes: each task carries only the path of a memory-mapped trace, so processes cost a few
hundred bytes per task, and they also parallelise what holds the GIL (the reference model, result building).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor as FuturesExecutor
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["EXECUTOR_NAMES", "DaskExecutor", "Executor", "FuturesAdapter", "ProcessExecutor", "RayExecutor",
           "SerialExecutor", "Terminated", "ThreadExecutor", "abort", "executor_name", "make_executor", "map", "run",
           "shared_threads"]

EXECUTOR_NAMES = ("serial", "thread", "process", "dask", "ray")
# older spellings, still accepted (the sweep CLI and its tests say "processes")
_ALIASES = {"processes": "process", "threads": "thread"}
_LOCAL = ("serial", "thread", "process")  # run here: a pool of one worker would only add overhead

_T = TypeVar("_T")
_R = TypeVar("_R")


@runtime_checkable
class Executor(Protocol):
    """What sweeps, remedies and fleets need from a back end."""

    name: str

    def run(self, fn: Callable[[Any], Any], tasks: list) -> Iterator[Any]:
        """fn(task) for every task, yielded as each finishes."""
        ...

    def close(self) -> None:
        ...


def executor_name(name: str) -> str:
    """The canonical name of an executor (``"processes"`` -> ``"process"``); ValueError for an unknown one."""
    name = _ALIASES.get(name, name)
    if name not in EXECUTOR_NAMES:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTOR_NAMES)}, "
                         "a Dask scheduler address tcp://HOST:PORT, or ray://HOST:PORT")
    return name


class SerialExecutor:
    """In this process, one task after another (debugging, tiny jobs, and the baseline in benchmarks)."""

    name = "serial"

    def run(self, fn, tasks):
        for task in tasks:
            yield fn(task)

    def close(self) -> None:
        pass


class FuturesAdapter:
    """Any concurrent.futures executor (the caller's own pool is left open: ``owned=False``)."""

    def __init__(self, pool: FuturesExecutor, name: str | None = None, owned: bool = False):
        self.pool, self.owned = pool, owned
        self.name = name or type(pool).__name__

    def run(self, fn, tasks):
        futures = [self.pool.submit(fn, task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            if not all(future.done() for future in futures):
                self._abandon(futures)

    def _abandon(self, futures) -> None:
        # on an error or an abandoned generator, what has not started never starts
        for future in futures:
            future.cancel()

    def close(self) -> None:
        if self.owned:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop now (a signal, an error): nothing queued starts; what runs is not waited for."""
        if self.owned:
            self.pool.shutdown(wait=False, cancel_futures=True)


def abort(runner: Any) -> None:
    """Stop ``runner`` without waiting for its running tasks, where it can (else close it)."""
    getattr(runner, "abort", runner.close)()


def _workers(workers: int | None) -> int:
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return workers


class ThreadExecutor(FuturesAdapter):
    """Threads of this process: one per core unless told (the compiled core releases the GIL as it replays)."""

    def __init__(self, workers: int | None = None):
        self.workers = _workers(workers)
        super().__init__(ThreadPoolExecutor(max_workers=self.workers), name=f"threads({self.workers})", owned=True)


def _noop() -> None:
    return None


def _only_thread() -> bool:
    # threads marked fork-safe (the progress lines') hold no lock across a fork
    return sum(not getattr(t, "cachesim_fork_safe", False) for t in threading.enumerate()) == 1


def _process_context():
    # fork while this process has one thread: the workers start at once with cachesim already imported (a
    # forkserver costs a fresh interpreter and imports, ~0.5 s a sweep). With other threads alive (a Dask client,
    # a GUI) a forked child could inherit a held lock, so then a forkserver, or spawn where that does not exist.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and _only_thread():
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["cachesim", "cachesim.sweep"])
        return ctx
    return multiprocessing.get_context("spawn")


def _end_with(parent: int) -> None:
    # a pool's workers hold both ends of its queues (and, under a forkserver, are not the parent's children), so
    # a parent killed outright (kill -9) would leave them waiting forever: they watch it instead
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
        except OSError:
            pass


def _worker_started(parent: int) -> None:
    # Ctrl-C signals the terminal's whole process group: the parent alone decides, and ends the workers itself
    # (a worker interrupted mid-task would send KeyboardInterrupt back as its result, or hang the pool)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_end_with, args=(parent,), name="cachesim-parent-watch", daemon=True).start()


class ProcessExecutor(FuturesAdapter):
    """Local worker processes: one per core unless told."""

    def __init__(self, workers: int | None = None):
        self.workers = _workers(workers)
        super().__init__(ProcessPoolExecutor(max_workers=self.workers, mp_context=_process_context(),
                                             initializer=_worker_started, initargs=(os.getpid(),)),
                         name=f"processes({self.workers})", owned=True)
        # start the workers now, before the caller starts threads of its own (the progress bar)
        self.pool.submit(_noop).result()

    def _abandon(self, futures) -> None:
        # workers first: CPython 3.11's pool, finding them gone, fails every queued future, and raises (in its own
        # thread, a traceback on stderr) for one that was cancelled before
        self._end_workers()
        super()._abandon(futures)

    def _end_workers(self) -> None:
        """SIGTERM to every worker, rather than waiting for the tasks they run; then the pool's own thread, which
        marks what they ran as failed, is let finish."""
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        for process in processes:
            with contextlib.suppress(OSError, ValueError):
                process.terminate()
        for process in processes:
            with contextlib.suppress(OSError, ValueError, AssertionError):
                process.join(timeout=10)  # a guard: SIGTERM ends a worker at once
                if process.is_alive():
                    process.kill()
        manager = getattr(self.pool, "_executor_manager_thread", None)
        if manager is not None and manager is not threading.current_thread():
            manager.join(timeout=10)

    def abort(self) -> None:
        """End the workers now, then release the pool."""
        if self.owned:
            self._end_workers()
            self.pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Dask distributed: a scheduler address (``tcp://host:port``), a Client, or a local cluster of processes."""

    def __init__(self, address: Any = None, workers: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("the dask executor needs the 'dask' extra: pip install 'cachesim[dask]'") from None
        self._cluster = None
        if isinstance(address, Client):
            self.client, self._owned = address, False
        elif address:
            self.client, self._owned = Client(address), True
        else:
            self._cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                         processes=True, host="127.0.0.1", dashboard_address=None)
            self.client, self._owned = Client(self._cluster), True
        self.name = f"dask({self.client.scheduler.address})"

    def run(self, fn, tasks):
        from distributed import as_completed as dask_completed

        futures = self.client.map(fn, tasks, pure=False)
        try:
            for future in dask_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        if self._owned:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def _apply(fn, task):
    return fn(task)


class RayExecutor:
    """Ray: a cluster address (``ray://host:port`` or ``auto``) or a local Ray started on demand."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise ValueError("the ray executor needs the 'ray' extra: pip install 'cachesim[ray]'") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False)
        self.name = f"ray({address or 'local'})"

    def run(self, fn, tasks):
        ray = self._ray
        # ray.remote takes functions and classes only; through _apply any picklable callable runs (map's _Indexed)
        remote = ray.remote(num_cpus=1)(_apply)
        pending = [remote.remote(fn, task) for task in tasks]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def make_executor(spec: Any = None, workers: int | None = None, *,
                  default: str = "process") -> tuple[Executor, bool]:
    """An executor from a name, an address or an object; and whether the caller must close it.

    ``None`` is ``default``; ``"serial"``, ``"thread"``, ``"process"`` (or ``"processes"``) run here; ``"dask"`` a
    local Dask cluster; ``"tcp://..."`` a Dask scheduler; ``"ray"`` or ``"ray://..."`` Ray; a
    ``distributed.Client``; a concurrent.futures executor; or any object with ``run(fn, tasks)`` and ``close()``.
    """
    if spec is None:
        spec = default
    if isinstance(spec, str):
        if spec.startswith(("tcp://", "tls://", "dask://")):
            return DaskExecutor(spec.replace("dask://", "tcp://", 1), workers), True
        if spec.startswith("ray://"):
            return RayExecutor(spec, workers), True
        name = executor_name(spec)
        if name == "serial":
            return SerialExecutor(), True
        if name == "thread":
            return ThreadExecutor(workers), True
        if name == "process":
            return ProcessExecutor(workers), True
        if name == "dask":
            return DaskExecutor(None, workers), True
        return RayExecutor(None, workers), True
    if isinstance(spec, FuturesExecutor):
        return FuturesAdapter(spec), False
    if type(spec).__name__ == "Client" and type(spec).__module__.startswith("distributed"):
        return DaskExecutor(spec), False
    if isinstance(spec, Executor):
        return spec, False
    raise ValueError(f"cannot run on {spec!r}: expected an executor name, an address, a concurrent.futures "
                     "executor, a distributed.Client, or an object with run() and close()")


def run(fn: Callable[[Any], _R], tasks: Sequence[Any], executor: Any = None, *, workers: int | None = None,
        default: str = "process") -> Iterator[_R]:
    """``fn(task)`` for every task on ``executor`` (see :func:`make_executor`), yielded as each finishes; an
    executor made here is closed when the generator ends, is closed, or raises."""
    runner, owned = make_executor(executor, workers, default=default)
    try:
        yield from runner.run(fn, list(tasks))
    except BaseException:
        if owned:
            abort(runner)
        raise
    if owned:
        runner.close()


class _Indexed:
    """fn with the task's position carried along, so completion-order results can be put back in order."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, item):
        i, task = item
        return i, self.fn(task)


def map(fn: Callable[[_T], _R], items: Sequence[_T], executor: Any = "thread", *,
        workers: int | None = None) -> list[_R]:
    """``[fn(x) for x in items]`` on ``executor`` (see :func:`make_executor`), in the order of ``items``.

    With a local executor (serial, thread, process) the pool has at most one worker per item, and one item or
    one worker runs here, in this thread: a pool would only add its start-up.
    """
    items = list(items)
    if isinstance(executor, str) and "://" not in executor and executor_name(executor) in _LOCAL:
        workers = workers if workers is not None else min(len(items), os.cpu_count() or 1)
        if workers <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
    out: list[Any] = [None] * len(items)
    for i, result in run(_Indexed(fn), list(enumerate(items)), executor, workers=workers):
        out[i] = result
    return out


class Terminated(SystemExit):
    """SIGTERM (or another terminating signal) turned into an exception, so that clean-up runs; its code is the
    status the signal's default action gives as a shell shows it (143)."""


class _StopOnSignals:
    """While inside, SIGTERM and SIGINT unwind the program instead of ending the process on the spot (SIGTERM's
    default action), so clean-up runs (a sweep's shared directory, its workers): SIGTERM raises Terminated(143),
    and SIGINT KeyboardInterrupt, as Python's own handler does. Handlers someone else installed are kept, and
    only the main thread may install any. Nested, the inner one is the outer one (one set of handlers, one
    deferral). A second signal while the first unwinds is only noted: it would cut the clean-up short."""

    _OURS_TO_REPLACE = (signal.SIG_DFL, signal.default_int_handler)
    _active: _StopOnSignals | None = None  # the one whose handlers are installed (in the main thread)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferred = False
        self._replaced: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            if _StopOnSignals._active is not None:
                return _StopOnSignals._active
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) in self._OURS_TO_REPLACE:
                    self._replaced[signum] = signal.signal(signum, self._received)
            if self._replaced:
                _StopOnSignals._active = self
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._replaced.items():
            signal.signal(signum, previous)
        self._replaced = {}
        if _StopOnSignals._active is self:
            _StopOnSignals._active = None

    @classmethod
    def _leave_in_forked_child(cls) -> None:
        # a forked worker would inherit handlers that (deferred while the pool starts) never act: give it back
        # the ones it would have had, so SIGTERM still ends it
        if cls._active is not None:
            cls._active.__exit__()

    def _received(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        if not self._deferred:
            self.raise_if_signalled()

    @contextlib.contextmanager
    def deferred(self):
        """Inside, a signal is only noted, for work that an exception would leave in a worse state than the
        signal's: saving a file, starting worker processes (their at-fork hooks swallow the exception, printing it
        as "ignored", and are left half done). Call raise_if_signalled after."""
        was, self._deferred = self._deferred, True
        try:
            yield
        finally:
            self._deferred = was

    def raise_if_signalled(self) -> None:
        # also the net for an exception swallowed where Python ignores them (a finalizer), which would let the
        # program run on
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is not None:
            raise Terminated(128 + self.signum)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_StopOnSignals._leave_in_forked_child)


_shared_pool: ThreadPoolExecutor | None = None
_shared_pool_lock = threading.Lock()


def shared_threads() -> ThreadPoolExecutor:
    """This process's one pool of threads, one per core, for short compiled loops that release the GIL (the check
    of a trace, cut into parts): a pool started per call would cost as much as the loop it runs."""
    global _shared_pool
    with _shared_pool_lock:
        if _shared_pool is None:
            _shared_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="cachesim")
        return _shared_pool


_END = object()


def prefetched(items, depth: int = 1) -> Iterator:
    """``items`` produced ``depth`` ahead in a background thread: a streaming replay reads, parses and compiles the
    next batch while the core serves this one (both release the GIL), which makes the two overlap instead of add.

    Items and any exception come in the order the producer met them; closing the generator (or an exception in the
    consumer) stops the producer at its next item. ``depth`` 0 is the plain iterator.
    """
    if depth <= 0:
        yield from items
        return
    import queue

    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            outcome = (_END, None)
        except BaseException as exc:   # handed to the consumer, raised there in order
            outcome = (_END, exc)
        while not stop.is_set():
            try:
                handoff.put(outcome, timeout=0.1)
                return
            except queue.Full:
                continue

    worker = threading.Thread(target=produce, name="cachesim-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = handoff.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
