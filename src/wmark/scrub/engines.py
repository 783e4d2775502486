"""Engines: what runs the :class:`~wmark.scrub.scrubber.Scrubber` over a stream of batches.

An engine is built as ``Engine(jobs=..., device=...)`` and used as a context manager; its
``run(scrubber, tasks)`` takes an iterator of ``(tag, batch)`` pairs (a batch as the scrubber takes
it, or None: a mark, the end of a unit) and yields ``(tag, result)`` pairs in the order given (result
None for a None batch), reading ``tasks`` only as far ahead as it has work in flight. A result may
carry an empty placeholder as the ``data_out`` of an unchanged sample (``echo_unchanged=False``). The pipeline does
the reading, writing and journaling; an engine only maps batches, so every engine gives the same
rows.

:data:`ENGINES` maps a name to its class (``"module:attr"``); ``--engine`` chooses among them:
``local`` (this machine, :class:`LocalEngine`) and ``ray`` (Ray Data, :mod:`wmark.scrub.ray_engine`).
"""
from __future__ import annotations

import collections
import os
from typing import Any, Iterable, Iterator

#: engine name -> "module:attr" of its class
ENGINES: dict[str, str] = {
    "local": "wmark.scrub.engines:LocalEngine",
    "ray": "wmark.scrub.ray_engine:RayEngine",  # Ray Data; extra wmark[ray]
}

_WORKER: dict[str, Any] = {}


def _init_worker() -> None:
    """A worker process: torch and the tokenizers library on one thread each (``jobs`` workers share
    the cores), its scrubber arriving with the first batch."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from wmark.runtime.threads import set_threads

    set_threads(1)


def _ready() -> int:
    """The warm-up task: the heavy imports done before the first batch arrives."""
    import wmark.image.model  # noqa: F401
    import wmark.scrub.scrubber  # noqa: F401

    return os.getpid()


def _work(token: int, scrubber, batch: dict) -> dict:
    """One batch in a worker; the scrubber (settings only) is rebuilt once per ``token``, so its
    model loads once per worker and pass."""
    if _WORKER.get("token") != token:
        _WORKER["token"], _WORKER["scrubber"] = token, scrubber
    return _WORKER["scrubber"](batch)


def _start_method(device: str | None) -> str:
    """fork on CPU where it is safe (Linux, this process has not started CUDA): the workers start in
    milliseconds, sharing the imports already done; spawn otherwise (CUDA, macOS, Windows)."""
    import multiprocessing as mp
    import sys

    if str(device or "cpu").startswith("cuda") or "fork" not in mp.get_all_start_methods() or sys.platform != "linux":
        return "spawn"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "spawn"
    import threading

    # other threads may hold locks a forked child would inherit held; tqdm's monitor (a daemon that
    # sleeps on an event and touches only tqdm's own lock, which workers never use) is harmless
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    return "fork" if all(t.daemon and t.name == "tqdm_monitor" for t in others) else "spawn"


class LocalEngine:
    """This machine: the scrubber in-process (``jobs=1``) or in ``jobs`` worker processes (``jobs>1``),
    torch pinned to one CPU thread per worker so results do not depend on ``jobs``. The workers start
    when the engine is entered (forked on CPU, spawned for CUDA), live for the whole run (every pass)
    and keep their model loaded; at most ``2 * jobs`` batches are in flight, and an unchanged
    sample's bytes are not sent back (the driver has them)."""

    name = "local"

    def __init__(self, jobs: int = 1, device: str | None = None) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
        self.jobs = jobs
        self.device = device
        self._pool = None
        self._restore = None
        self._token = 0
        self.start_method: str | None = None

    def __enter__(self) -> "LocalEngine":
        if self.jobs > 1:
            self._start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._restore is not None:
            self._restore()
            self._restore = None

    def _start(self):
        """The worker pool, started now (every worker forked or spawned, and warming up)."""
        import concurrent.futures as cf
        import multiprocessing as mp

        if self._pool is None:
            self.start_method = _start_method(self.device)
            self._pool = cf.ProcessPoolExecutor(self.jobs, mp_context=mp.get_context(self.start_method),
                                                initializer=_init_worker)
            for _ in range(self.jobs):
                self._pool.submit(_ready)
        return self._pool

    def run(self, scrubber, tasks: Iterable[tuple[Any, dict | None]]) -> Iterator[tuple[Any, dict | None]]:
        if self.jobs == 1:
            if self._restore is None:
                from wmark.runtime.threads import set_threads

                self._restore = set_threads(1)
            for tag, batch in tasks:
                yield tag, (None if batch is None else scrubber(batch))
            return
        pool = self._start()
        self._token += 1
        token, worker = self._token, _copy(scrubber, threads=1, echo_unchanged=False)
        window: collections.deque = collections.deque()
        it = iter(tasks)
        done = False
        busy = 0  # batches in flight (the window also holds the end-of-unit marks)
        while True:
            while not done and busy < 2 * self.jobs:
                try:
                    tag, batch = next(it)
                except StopIteration:
                    done = True
                    break
                window.append((tag, None if batch is None else pool.submit(_work, token, worker, batch)))
                busy += batch is not None
            if not window:
                return
            tag, fut = window.popleft()
            busy -= fut is not None
            yield tag, (None if fut is None else fut.result())


def _copy(scrubber, **changes):
    """A copy of ``scrubber`` (settings only) with some settings changed."""
    import copy

    new = copy.copy(scrubber)
    new._state = {}
    for k, v in changes.items():
        setattr(new, k, v)
    return new


def make_engine(name: str, jobs: int = 1, device: str | None = None):
    """The engine registered as ``name`` (ValueError listing the engines otherwise)."""
    from wmark._lazy import import_attr

    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    return import_attr(ENGINES[name])(jobs=jobs, device=device)
