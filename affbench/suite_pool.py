"""`affbench suite --jobs N`: how many runs of a suite train side by side on this machine, and the worker pool
that trains them.

A run's stage 3 is small and its torch threads are fixed by ``train.threads``: on a CPU with more cores than
that, runs one after another leave cores idle. The caller fills the shared stages first, in its own process
(their caches have one writer), then hands each run to this pool as soon as its stages are ready.
Workers start with *spawn*: a process forked after torch has started its thread pools can hang. They are
fresh interpreters, so they see the plugins installed as packages (entry points), as a cluster job does, and
not components registered in the parent at run time.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

JOBS_AUTO = "auto"


class JobsError(ValueError):
    """A --jobs value that is not a positive integer or 'auto'."""


def parse_jobs(value: Any) -> int | str:
    """A --jobs request: a positive integer, or 'auto' (also for None)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == JOBS_AUTO):
        return JOBS_AUTO
    try:
        jobs = 0 if isinstance(value, bool) else int(str(value).strip())
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise JobsError(f"--jobs: expected a positive integer or '{JOBS_AUTO}', got {value!r}")
    return jobs


def auto_jobs(*, cores: int, threads: Sequence[int | None], runs: int, device: str) -> int:
    """How many runs train at once under ``--jobs auto``: one on a GPU (the runs share one device); on a CPU as
    many as fit beside each other, each with the largest ``train.threads`` of the runs (None: every core),
    never more than there are runs."""
    if device != "cpu" or runs <= 1:
        return 1
    widest = max((t or cores for t in threads), default=cores)
    return max(1, min(runs, cores // max(1, widest)))


def resolve_jobs(jobs: Any, configs: Sequence[Mapping[str, Any]]) -> int:
    """The worker count for the planned runs' configs: `jobs` itself, or what 'auto' makes of them here."""
    request = parse_jobs(jobs)
    if request != JOBS_AUTO:
        return int(request)
    from affbench.devices import resolve_device
    from affbench.stages.finetune import cpu_cores

    devices = {resolve_device(c.get("device")).type for c in configs}
    return auto_jobs(cores=cpu_cores(), threads=[c["train"]["threads"] for c in configs], runs=len(configs),
                     device="cpu" if devices <= {"cpu"} else "cuda")


def run_in_pool(func: Callable[..., Any], calls: Iterable[Mapping[str, Any]], *, jobs: int,
                on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``func(**call)`` for every call in `jobs` spawned worker processes; the results in call order.

    `calls` may be a generator that still prepares the later calls (the suite fills a run's stages, then
    yields it): each call is submitted as soon as it is produced, so workers train while the caller prepares.
    `on_done(index, result)` runs here as each call finishes. When a call fails (or producing one does), the
    calls not started are dropped, the running ones are let finish (what they write stays), and the first
    failure is raised here as the call raised it, with the worker's traceback as its cause.
    """
    import concurrent.futures as futures
    import multiprocessing

    results: dict[int, Any] = {}
    with futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=leave_with_parent, initargs=(os.getpid(),)) as pool:
        pending: dict[futures.Future, int] = {}
        try:
            for index, call in enumerate(calls):
                pending[pool.submit(_call, func, dict(call))] = index
                _collect(pending, results, on_done, wait=False)
            _collect(pending, results, on_done, wait=True)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return [results[i] for i in range(len(results))]


def leave_with_parent(parent: int, period: float = 1.0) -> None:
    """A worker's initializer: the worker exits once `parent` (the launching process) is gone.

    A launcher killed outright (SIGKILL, or SIGTERM, which Python does not turn into cleanup) never tells its
    workers to stop; they would wait for work forever, each holding a loaded torch. A daemon thread checks the
    worker's parent every `period` seconds (a worker whose parent died is adopted by another process).
    """
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        os._exit(1)

    threading.Thread(target=watch, name="affbench-leave-with-parent", daemon=True).start()


def _collect(pending: dict, results: dict[int, Any], on_done: Callable[[int, Any], None] | None, *,
             wait: bool) -> None:
    """Move finished calls from `pending` to `results` (all of them, waiting, when `wait`); report each."""
    import concurrent.futures as futures

    finished = futures.as_completed(list(pending)) if wait else [f for f in list(pending) if f.done()]
    for future in finished:
        index = pending.pop(future)
        results[index] = future.result()
        if on_done is not None:
            on_done(index, results[index])


def _call(func: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """A worker's call; an exception that could not travel back to the parent as itself travels as a
    RuntimeError with its type and message (otherwise the pool would break and name none of it)."""
    try:
        return func(**kwargs)
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - any failure to travel: send what can travel
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
        raise
