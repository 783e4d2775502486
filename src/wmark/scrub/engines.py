"""Engines: what runs the :class:`~wmark.scrub.scrubber.Scrubber` over a stream of batches.

An engine is built as ``Engine(jobs=..., device=...)`` and used as a context manager; its
``run(scrubber, tasks)`` takes an iterator of ``(tag, batch)`` pairs (a batch as the scrubber takes
it, or None for an empty unit) and yields ``(tag, result)`` pairs in the order given (result None
for a None batch), reading ``tasks`` only as far ahead as it has work in flight. The pipeline does
the reading, writing and journaling; an engine only maps batches, so every engine gives the same
rows.

:data:`ENGINES` maps a name to its class (``"module:attr"``); ``--engine`` chooses among them:
``local`` (this machine, :class:`LocalEngine`) and ``ray`` (Ray Data, :mod:`wmark.scrub.ray_engine`).
"""
from __future__ import annotations

import collections
from typing import Any, Iterable, Iterator

#: engine name -> "module:attr" of its class
ENGINES: dict[str, str] = {
    "local": "wmark.scrub.engines:LocalEngine",
    "ray": "wmark.scrub.ray_engine:RayEngine",  # Ray Data; extra wmark[ray]
}

_WORKER: dict[str, Any] = {}


def _init_worker(scrubber) -> None:
    """A worker process's one scrubber (torch threads pinned on its first call)."""
    _WORKER["scrubber"] = scrubber


def _work(batch: dict) -> dict:
    return _WORKER["scrubber"](batch)


class LocalEngine:
    """This machine: the scrubber in-process (``jobs=1``) or one per worker process (``jobs>1``,
    spawned, so CUDA and torch threads start clean), torch pinned to one CPU thread per worker so
    results do not depend on ``jobs``. At most ``2 * jobs`` batches are in flight."""

    name = "local"

    def __init__(self, jobs: int = 1, device: str | None = None) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
        self.jobs = jobs
        self.device = device
        self._pool = None
        self._pool_for = None
        self._restore = None

    def __enter__(self) -> "LocalEngine":
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

    def _executor(self, scrubber):
        import concurrent.futures as cf
        import multiprocessing as mp

        key = repr(sorted(scrubber.settings().items(), key=lambda kv: kv[0])) + repr(scrubber.cutoff)
        if self._pool is not None and self._pool_for != key:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._pool is None:
            worker = _copy(scrubber, threads=1)
            self._pool = cf.ProcessPoolExecutor(self.jobs, mp_context=mp.get_context("spawn"),
                                                initializer=_init_worker, initargs=(worker,))
            self._pool_for = key
        return self._pool

    def run(self, scrubber, tasks: Iterable[tuple[Any, dict | None]]) -> Iterator[tuple[Any, dict | None]]:
        if self.jobs == 1:
            if self._restore is None:
                from wmark.runtime.threads import set_threads

                self._restore = set_threads(1)
            for tag, batch in tasks:
                yield tag, (None if batch is None else scrubber(batch))
            return
        pool = self._executor(scrubber)
        window: collections.deque = collections.deque()
        it = iter(tasks)
        done = False
        while True:
            while not done and len(window) < 2 * self.jobs:
                try:
                    tag, batch = next(it)
                except StopIteration:
                    done = True
                    break
                window.append((tag, None if batch is None else pool.submit(_work, batch)))
            if not window:
                return
            tag, fut = window.popleft()
            yield tag, (None if fut is None else fut.result())


def _copy(scrubber, **changes):
    """A copy of ``scrubber`` (settings only) with some settings changed."""
    import copy

    new = copy.copy(scrubber)
    new._state = {}
    for k, v in changes.items():
        setattr(new, k, v)
    return new


def make_engine(name: str, jobs: int = 1, device: str | None = None, **options):
    """The engine registered as ``name`` (ValueError listing the engines otherwise). ``options``
    (e.g. ``batch_size``, the pass's batch size) go to the engines whose constructor takes them."""
    import inspect

    from wmark._lazy import import_attr

    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    cls = import_attr(ENGINES[name])
    params = inspect.signature(cls).parameters
    return cls(jobs=jobs, device=device, **{k: v for k, v in options.items() if k in params})
