"""Where sweep tasks run: one interface over local processes, Dask and Ray.

An executor takes a picklable module-level function and a list of picklable tasks and yields each result as
its task finishes (completion order). The sweep never learns which executor ran it: the tasks carry a path to
a memory-mapped trace, not the trace, so every back end ships the same few hundred bytes per task.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Executor as FuturesExecutor
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterator, Protocol, runtime_checkable

__all__ = ["SweepExecutor", "SerialExecutor", "ProcessExecutor", "FuturesAdapter", "DaskExecutor", "RayExecutor",
           "make_executor", "EXECUTOR_NAMES"]

EXECUTOR_NAMES = ("processes", "serial", "dask", "ray")


@runtime_checkable
class SweepExecutor(Protocol):
    """What the sweep needs from a back end."""

    name: str

    def run(self, fn: Callable[[Any], Any], tasks: list) -> Iterator[Any]:
        """fn(task) for every task, yielded as each finishes."""
        ...

    def close(self) -> None:
        ...


class SerialExecutor:
    """In this process, one task after another (debugging, tiny sweeps, and the baseline in benchmarks)."""

    name = "serial"

    def run(self, fn, tasks):
        for task in tasks:
            yield fn(task)

    def close(self) -> None:
        pass


class FuturesAdapter:
    """Any concurrent.futures executor (the caller's own pool, which the sweep leaves open)."""

    def __init__(self, pool: FuturesExecutor, name: str | None = None, owned: bool = False):
        self.pool, self.owned = pool, owned
        self.name = name or type(pool).__name__

    def run(self, fn, tasks):
        futures = [self.pool.submit(fn, task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        if self.owned:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _noop() -> None:
    return None


def _process_context():
    # fork while this process has one thread: the workers start at once with cachesim already imported (a
    # forkserver costs a fresh interpreter and imports, ~0.5 s a sweep). With other threads alive (a Dask client,
    # a GUI) a forked child could inherit a held lock, so then a forkserver, or spawn where that does not exist.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["cachesim", "cachesim.sweep"])
        return ctx
    return multiprocessing.get_context("spawn")


class ProcessExecutor(FuturesAdapter):
    """Local worker processes (the default): one per core unless told."""

    def __init__(self, workers: int | None = None):
        workers = workers or os.cpu_count() or 1
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        super().__init__(ProcessPoolExecutor(max_workers=workers, mp_context=_process_context()),
                         name=f"processes({workers})", owned=True)
        # start the workers now, before the caller starts threads of its own (the progress bar)
        self.pool.submit(_noop).result()


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
        remote = ray.remote(num_cpus=1)(fn)
        pending = [remote.remote(task) for task in tasks]
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


def make_executor(spec: Any = None, workers: int | None = None) -> tuple[SweepExecutor, bool]:
    """An executor from a name, an address or an object; and whether the caller must close it.

    ``None``/``"processes"`` local processes; ``"serial"``; ``"dask"`` a local Dask cluster; ``"tcp://..."`` a
    Dask scheduler; ``"ray"`` or ``"ray://..."`` Ray; a ``distributed.Client``; a concurrent.futures executor;
    or any object with ``run(fn, tasks)`` and ``close()``.
    """
    if spec is None or spec == "processes":
        return ProcessExecutor(workers), True
    if isinstance(spec, str):
        if spec == "serial":
            return SerialExecutor(), True
        if spec == "dask":
            return DaskExecutor(None, workers), True
        if spec.startswith(("tcp://", "tls://", "dask://")):
            return DaskExecutor(spec.replace("dask://", "tcp://", 1), workers), True
        if spec == "ray" or spec.startswith("ray://"):
            return RayExecutor(None if spec == "ray" else spec, workers), True
        raise ValueError(f"unknown executor {spec!r}; choose one of {', '.join(EXECUTOR_NAMES)}, "
                         "a Dask scheduler address tcp://HOST:PORT, or ray://HOST:PORT")
    if isinstance(spec, FuturesExecutor):
        return FuturesAdapter(spec), False
    if type(spec).__name__ == "Client" and type(spec).__module__.startswith("distributed"):
        return DaskExecutor(spec), False
    if isinstance(spec, SweepExecutor):
        return spec, False
    raise ValueError(f"cannot run a sweep on {spec!r}: expected an executor name, an address, a "
                     "concurrent.futures executor, a distributed.Client, or an object with run() and close()")
